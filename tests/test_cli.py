"""The `artdag` command against a running node, in subprocesses as a person would run it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from node.pixels.imaging import png_bytes
from node.services import EmbeddedServices
from node.testing import NodeProcess

ARTDAG = str(Path(sys.executable).parent / "artdag")
PIXELS = np.random.default_rng(5).integers(0, 256, (32, 48, 3), dtype=np.uint8)


def artdag(
    node: NodeProcess, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        "ARTDAG_URL": node.url,
        "ARTDAG_TOKEN": node.token(),
        "PATH": "/usr/bin:/bin",
        **(env or {}),
    }
    return subprocess.run(
        [ARTDAG, *args], capture_output=True, text=True, env=environment, cwd=cwd, timeout=120, check=False
    )


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def api_bytes(node: NodeProcess, cid: str) -> bytes:
    with urllib.request.urlopen(f"{node.url}/cache/{cid}") as response:
        return bytes(response.read())


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "cat.png"
    path.write_bytes(png_bytes(PIXELS))
    return path


def test_render_sync_round_trip(running_node: NodeProcess, image: Path, tmp_path: Path) -> None:
    """render --sync uploads the file, follows the run on a progress bar and saves the output:
    the same bytes as the API serves for the run's output."""
    out = tmp_path / "dog.png"
    done = artdag(running_node, "render", "dog", str(image), "--sync", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr  # tqdm's bar, fed by the run's event stream
    assert "completed" in done.stdout and f"saved to: {out}" in done.stdout
    cid = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("output:"))
    assert out.read_bytes() == api_bytes(running_node, cid)


def test_render_sync_json_and_default_name(running_node: NodeProcess, image: Path, tmp_path: Path) -> None:
    record = as_json(
        artdag(
            running_node,
            "--json",
            "render",
            "invert",
            str(image),
            "--sync",
            "--name",
            "flipped",
            cwd=tmp_path,
        )
    )
    assert record["status"] == "completed" and record["saved_to"] == "flipped.png"
    assert (tmp_path / "flipped.png").read_bytes() == api_bytes(running_node, record["output"]["cid"])


def test_render_without_sync_returns_the_queued_run(running_node: NodeProcess, image: Path) -> None:
    uploaded = as_json(artdag(running_node, "--json", "upload", str(image), "--name", "cli-cat"))
    run = as_json(artdag(running_node, "--json", "render", "grayscale", "cli-cat"))
    assert run["status"] == "queued" and run["inputs"][0]["content_id"] == uploaded["content_id"]
    status = as_json(artdag(running_node, "--json", "status", run["run_id"]))
    assert status["run_id"] == run["run_id"]
    listed = as_json(artdag(running_node, "--json", "runs"))
    assert run["run_id"] in {item["run_id"] for item in listed["items"]}


def test_fetch_through_the_node_and_from_the_daemon(
    running_node: NodeProcess, daemons: EmbeddedServices, image: Path, tmp_path: Path
) -> None:
    cid = as_json(artdag(running_node, "--json", "upload", str(image)))["cid"]
    via_node = tmp_path / "node.png"
    assert artdag(running_node, "fetch", cid, "-o", str(via_node)).returncode == 0
    via_daemon = tmp_path / "daemon.png"
    ipfs_api = str(daemons.settings.ipfs_api)
    done = artdag(
        running_node, "--json", "fetch", cid, "-o", str(via_daemon), env={"ARTDAG_IPFS_API": ipfs_api}
    )
    assert as_json(done)["source"] == ipfs_api
    assert via_node.read_bytes() == via_daemon.read_bytes() == image.read_bytes()
    to_stdout = subprocess.run(
        [ARTDAG, "fetch", cid],
        capture_output=True,
        env={"ARTDAG_URL": running_node.url, "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=True,
    )
    assert to_stdout.stdout == image.read_bytes()


def test_verify_a_run_s_provenance(running_node: NodeProcess, image: Path, tmp_path: Path) -> None:
    record = as_json(
        artdag(running_node, "--json", "render", "sepia", str(image), "--sync", "-o", str(tmp_path / "s.png"))
    )
    unsure = artdag(running_node, "verify", record["provenance_cid"])
    assert unsure.returncode == 2 and "--trust NODE_ID" in unsure.stderr and "--any-signer" in unsure.stderr
    node_id = json.loads(urllib.request.urlopen(f"{running_node.url}/identity").read())["node_id"]
    for trust in (("--trust", node_id), ("--any-signer",)):
        done = artdag(running_node, "verify", record["provenance_cid"], *trust)
        assert done.returncode == 0 and done.stdout.startswith("verified:"), done.stdout
    stranger = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    refused = artdag(running_node, "verify", record["provenance_cid"], "--trust", stranger)
    assert refused.returncode == 1 and refused.stdout.startswith("NOT verified")


def test_catalogue_commands(running_node: NodeProcess) -> None:
    """`artdag effects` shows each effect's parameters with their type, range and default."""
    effects = artdag(running_node, "effects")
    assert effects.returncode == 0 and "dog" in effects.stdout
    assert (
        "--param sigma=  number, from 0.1 to 50 px, default 2.0: Gaussian standard deviation"
        in effects.stdout
    )
    assert "--param block=  integer, from 2 to 256 px, default 8" in effects.stdout
    assert artdag(running_node, "recipes").returncode == 0


def test_render_with_params(running_node: NodeProcess, image: Path, tmp_path: Path) -> None:
    """--param sets a built-in effect's parameter: blur with sigma 5 is the plan the API makes
    of params {"sigma": 5}, and another output than the default blur."""
    cid = as_json(artdag(running_node, "--json", "upload", str(image)))["cid"]
    record = as_json(
        artdag(running_node, "--json", "render", "blur", cid, "--param", "sigma=5", "--sync", "-o",
               str(tmp_path / "b.png"))
    )  # fmt: skip
    default = as_json(
        artdag(running_node, "--json", "render", "blur", cid, "--sync", "-o", str(tmp_path / "d.png"))
    )
    assert record["output"]["cid"] != default["output"]["cid"]
    status = artdag(running_node, "status", record["run_id"])
    assert "time: queued " in status.stdout and " in all" in status.stdout
    step = next(line for line in status.stdout.splitlines() if line.startswith("  blur"))
    assert "EFFECT" in step and "done" in step and step.endswith("sigma=5.0")
    listed = artdag(running_node, "runs").stdout.splitlines()
    assert any(line.startswith(record["run_id"]) and " 100% " in line for line in listed)
    body = json.dumps({"recipe": "blur", "inputs": [cid], "params": {"sigma": 5}}).encode()
    headers = {"Authorization": f"Bearer {running_node.token()}", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(f"{running_node.url}/runs", body, headers)) as answer:
        assert json.loads(answer.read())["plan_id"] == record["plan_id"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (("sigma",), "artdag: --param 'sigma': write NAME=VALUE, e.g. --param sigma=5"),
        (("radius=3",), "artdag: --param radius: blur has no parameter 'radius'; its parameters are sigma"),
        (("sigma=wide",), "artdag: --param sigma=wide: must be a number"),
        (("sigma=500",), "artdag: --param sigma=500: must be from 0.1 to 50 px"),
        (("sigma=1", "sigma=2"), "artdag: --param sigma is given twice"),
    ],
)
def test_param_errors_name_what_the_effect_takes(
    running_node: NodeProcess, image: Path, params: tuple[str, ...], message: str
) -> None:
    """A wrong --param is one line naming it and what is allowed, before anything is sent."""
    arguments = [item for param in params for item in ("--param", param)]
    done = artdag(running_node, "render", "blur", str(image), *arguments)
    assert done.returncode == 1 and done.stderr.strip() == message, done.stderr


def test_params_of_a_recipe_that_is_no_effect(running_node: NodeProcess, image: Path) -> None:
    done = artdag(running_node, "render", "no-such-effect", str(image), "--param", "sigma=2")
    assert done.returncode == 1
    assert done.stderr.startswith("artdag: --param works with a built-in effect (blur, brightness")


def test_help_and_a_401_name_the_variables(running_node: NodeProcess) -> None:
    """The token and the URL are named where a person looks: --help, and the 401."""
    helped = artdag(running_node, "--help")
    assert "ARTDAG_URL" in helped.stdout and "ARTDAG_TOKEN" in helped.stdout
    refused = artdag(running_node, "upload", __file__, env={"ARTDAG_TOKEN": "wrong"})
    assert refused.returncode == 1 and "set ARTDAG_TOKEN to a token this node accepts" in refused.stderr


def test_a_missing_local_file_is_file_not_found(running_node: NodeProcess, tmp_path: Path) -> None:
    done = artdag(running_node, "render", "blur", "nothere.png", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "artdag: nothere.png: file not found (and the node has no content or asset of that name)"
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("status", "run-0000000000000000"), {}, "artdag: 404 run_not_found: no run"),
        (("render", "melt", "x"), {}, "artdag: 404 not_found"),
        (("upload", "/no/such/file"), {}, "artdag: /no/such/file: no such file"),
        (
            ("runs",),
            {"ARTDAG_URL": "http://127.0.0.1:9"},
            "artdag: cannot reach the node at http://127.0.0.1:9",
        ),
        (("upload", __file__), {"ARTDAG_TOKEN": "wrong"}, "artdag: 401 unauthorized"),
    ],
)
def test_errors_are_one_readable_line(
    running_node: NodeProcess, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    done = artdag(running_node, *args, env=env)
    assert done.returncode == 1
    assert done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_failed_download_leaves_no_file_behind(running_node: NodeProcess, tmp_path: Path) -> None:
    """fetch into an existing file from a daemon that is not there: one line, old file intact."""
    kept = tmp_path / "kept.png"
    kept.write_bytes(b"old")
    done = artdag(
        running_node, "fetch", "bafkqaaa", "-o", str(kept), env={"ARTDAG_IPFS_API": "http://127.0.0.1:9"}
    )
    assert done.returncode == 1 and done.stderr.startswith("artdag: IPFS daemon at http://127.0.0.1:9")
    assert len(done.stderr.strip().splitlines()) == 1
    assert kept.read_bytes() == b"old" and sorted(path.name for path in tmp_path.iterdir()) == ["kept.png"]


def test_unwritable_output_is_one_line(running_node: NodeProcess, image: Path) -> None:
    done = artdag(running_node, "fetch", "bafkqaaa", "-o", "/nonexistent/dir/x.png")
    assert done.returncode == 1 and done.stderr.startswith("artdag: ") and "Traceback" not in done.stderr


@pytest.mark.parametrize("name", [".", "..", ".hidden"])
def test_odd_output_names_fall_back_to_the_run_id(
    running_node: NodeProcess, image: Path, tmp_path: Path, name: str
) -> None:
    record = as_json(
        artdag(running_node, "--json", "render", "invert", str(image), "--sync", "--name", name, cwd=tmp_path)
    )
    assert record["saved_to"] == f"{record['run_id']}.png"
    assert (tmp_path / record["saved_to"]).is_file()


def test_an_uploaded_recipe_runs_by_name(running_node: NodeProcess, image: Path, tmp_path: Path) -> None:
    """A recipe file uploaded once is then run by its name; `artdag recipes` shows each upload
    with its date, so two of one name can be told apart."""
    recipe = tmp_path / "by-name.yaml"
    recipe.write_text(RECIPE_TEXT)
    assert artdag(running_node, "render", str(recipe), str(image), str(image)).returncode == 0
    listed = artdag(running_node, "recipes")
    line = next(line for line in listed.stdout.splitlines() if " by-name v" in line)
    assert line.rstrip().endswith("UTC  admin") and line.split()[3].startswith("20")
    record = as_json(
        artdag(running_node, "--json", "render", "by-name", str(image), str(image), "--sync", "-o",
               str(tmp_path / "o.png"))
    )  # fmt: skip
    assert record["status"] == "completed" and record["recipe"]["name"] == "by-name"


RECIPE_TEXT = """
name: by-name
dag:
  nodes:
    - {id: base, type: SOURCE, config: {input: true, name: base}}
    - {id: top, type: SOURCE, config: {input: true, name: top}}
    - {id: out, type: BLEND, config: {mode: screen}, inputs: [base, top]}
  output: out
"""


def test_retry_a_cancelled_run(running_node: NodeProcess, image: Path) -> None:
    """artdag retry: a cancelled run runs again as a new run, which completes."""
    run = as_json(artdag(running_node, "--json", "render", "wait", str(image), "--param", "seconds=5"))
    assert artdag(running_node, "cancel", run["run_id"]).returncode == 0
    retried = as_json(artdag(running_node, "--json", "retry", run["run_id"]))
    assert retried["retry_of"] == run["run_id"] and retried["status"] == "queued"
    done = artdag(running_node, "status", retried["run_id"])
    assert done.returncode == 0 and retried["run_id"] in done.stdout
