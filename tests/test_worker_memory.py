"""Bounded workers (#21 item 3): every step worker runs under a kernel memory limit that what it
starts inherits; image work is refused before decoding when its estimate will not fit; work
that hits the limit is reported as ``out_of_memory``; and each estimate covers what the work
really uses (measured here, in a fresh process per step)."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from node.config import ConfigError, Settings
from node.executor.errors import StepOutOfMemory
from node.executor.pool import WorkerPool
from node.memory import MIN_DEFAULT, default_limit
from node.pixels.effects import EFFECTS
from node.pixels.footprint import FIXED, Size, image_step_bytes
from node.pixels.params import normalize_params
from tests.helpers import Client, NodeClient, poll_async, upload

MIB = 1024**2
SMALL_LIMIT = 512 * MIB  # room for a worker's Python and numpy (about 100 MiB), not for big work
MEASURE = """
import json, sys
from node.executor.worker import compute

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmPeak:"):
            return int(line.split()[1]) * 1024

job = json.loads(sys.argv[1])
before = peak()
compute(job)
print(peak() - before)
"""


def _data_limit(pid: int) -> tuple[str, str]:
    """(soft, hard) of a process's 'Max data size', as the kernel reports them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max data size"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError(f"no data limit listed for {pid}")


def _peak_resident(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _flat_png(path: Path, width: int, height: int) -> Path:
    """A one-colour PNG: megapixels in a few kilobytes."""
    Image.new("RGB", (width, height), (40, 90, 160)).save(path)
    return path


def _noise_png(path: Path, width: int, height: int, seed: int) -> Path:
    """Random pixels: the worst case for every buffer, PNG encoding included."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB").save(path)
    return path


def _job(kind: str, config: dict[str, Any], inputs: list[Path], output: Path) -> dict[str, Any]:
    return {"type": kind, "config": config, "inputs": [str(path) for path in inputs], "output": str(output)}


def _measured(job: dict[str, Any]) -> int:
    """The most memory ``job`` mapped, run as a worker runs it, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(job)], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def _effect(name: str, **given: Any) -> dict[str, Any]:
    params, problems = normalize_params(EFFECTS[name].params, given)
    assert not problems
    return {"effect": name, "effect_version": EFFECTS[name].version, "params": params}


async def test_every_worker_runs_under_the_memory_limit() -> None:
    """The kernel lists the limit, soft and hard (so nothing the worker starts can raise it)."""
    pool = WorkerPool(2, memory_limit=SMALL_LIMIT)
    try:
        await pool.prestart()
        assert len(pool.idle_pids) == 2
        for pid in pool.idle_pids:
            assert _data_limit(pid) == (str(SMALL_LIMIT), str(SMALL_LIMIT))
    finally:
        await pool.close()


async def test_an_image_too_large_for_the_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    """A 6000 x 6000 image under blur needs about 5 GiB: refused with both figures and what to
    do, while the worker's resident memory never grew by the 108 MB its pixels would take; the
    worker lives on and takes the next job."""
    source = _flat_png(tmp_path / "big.png", 6000, 6000)
    pool = WorkerPool(1, memory_limit=SMALL_LIMIT)
    try:
        await pool.prestart()
        (pid,) = pool.idle_pids
        resident_before = _peak_resident(pid)
        job = _job("EFFECT", _effect("blur"), [source], tmp_path / "o")
        with pytest.raises(StepOutOfMemory) as refused:
            await pool.run(job, timeout_s=60)
        message = refused.value.message
        assert message.startswith("out_of_memory: blur on 6000x6000 pixels needs about ")
        assert "GiB" in message and "ARTDAG_WORKER_MEMORY" in message and "RESIZE" in message
        assert refused.value.code == "out_of_memory"
        assert pool.idle_pids == [pid]
        assert _peak_resident(pid) - resident_before < 6000 * 6000 * 3 // 2
        small = _flat_png(tmp_path / "small.png", 64, 48)
        answer = await pool.run({**job, "inputs": [str(small)]}, timeout_s=60)
        assert answer["media_type"] == "image/png"
    finally:
        await pool.close()


async def test_ffmpeg_inherits_the_limit_and_a_failed_allocation_is_out_of_memory(tmp_path: Path) -> None:
    """A 4K frame into a lossless intermediate: FFV1 maps a 1.2 GB packet buffer, which the
    worker's ffmpeg cannot have under 512 MiB; the step is out_of_memory, naming the setting."""
    clip = tmp_path / "4k.mkv"
    await asyncio.to_thread(
        subprocess.run,
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=1",
         "-frames:v", "1", "-c:v", "ffv1", str(clip)],
        check=True,
    )  # fmt: skip
    job = {
        "type": "EFFECT",
        "config": {**_effect("invert"), "encode": "lossless"},
        "inputs": [str(clip)],
        "media_types": ["video/x-matroska"],
        "output": str(tmp_path / "out.mkv"),
    }
    pool = WorkerPool(1, memory_limit=SMALL_LIMIT)
    try:
        with pytest.raises(StepOutOfMemory) as stopped:
            await pool.run(job, timeout_s=120)
        assert stopped.value.message.startswith("out_of_memory: ffmpeg needed more memory than the 512 MiB")
        assert "ARTDAG_WORKER_MEMORY" in stopped.value.message
        assert stopped.value.details["log"].startswith("$ ffmpeg ")  # the step's log, kept with its error
        assert not (tmp_path / "out.mkv").exists()
    finally:
        await pool.close()
    unlimited = WorkerPool(1)  # the same job fits without the limit: it was the limit
    try:
        assert (await unlimited.run(job, timeout_s=120))["media_type"] == "video/x-matroska"
    finally:
        await unlimited.close()


ESTIMATED = [
    *[
        pytest.param("EFFECT", _effect(name, **({"seconds": 0} if name == "wait" else {})), id=name)
        for name, effect in EFFECTS.items()
        if not effect.zero_copy
    ],
    pytest.param("EFFECT", _effect("blur", sigma=12), id="blur-wide"),
    pytest.param("RESIZE", {"width": 4000, "height": 0, "fit": "contain", "filter": "lanczos"}, id="resize"),
    pytest.param("LAYER", {"x": 100, "y": 50, "scale": 1.0, "opacity": 0.5}, id="layer"),
    pytest.param("BLEND", {"mode": "overlay", "opacity": 0.7}, id="blend"),
]


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    where = tmp_path_factory.mktemp("noise")
    return [_noise_png(where / f"{seed}.png", 2000, 1500, seed) for seed in (1, 2)]


@pytest.mark.parametrize(("kind", "config"), ESTIMATED)
def test_the_estimate_covers_what_the_step_uses(
    kind: str, config: dict[str, Any], noise: list[Path], tmp_path: Path
) -> None:
    """The step, run as a worker runs it in a fresh process on random 2000 x 1500 images: the
    most memory it mapped beyond what the process held before is within the estimate, and the
    estimate is not more than three times that (it would refuse work that fits)."""
    inputs = noise[:2] if kind in ("LAYER", "BLEND") else noise[:1]
    used = _measured(_job(kind, config, inputs, tmp_path / "o"))
    sizes: list[Size] = [(2000, 1500)] * len(inputs)
    estimate = image_step_bytes(kind, config, sizes)
    assert used <= estimate, f"{kind} {config}: used {used / MIB:.0f} MiB, estimated {estimate / MIB:.0f} MiB"
    assert estimate <= 3 * used + FIXED, f"estimated {estimate / MIB:.0f} MiB for {used / MIB:.0f} MiB used"


def test_a_thin_image_under_a_wide_blur_is_estimated_by_its_padding(tmp_path: Path) -> None:
    """20000 x 2 pixels under sigma 50 pads to 20000 x 302, more than the fixed allowance: the
    estimate counts the padding."""
    source = _noise_png(tmp_path / "thin.png", 20000, 2, seed=3)
    config = _effect("blur", sigma=50)
    used = _measured(_job("EFFECT", config, [source], tmp_path / "o"))
    assert used <= image_step_bytes("EFFECT", config, [(20000, 2)])


def test_the_limit_is_a_setting_with_a_default_for_the_machine() -> None:
    """ARTDAG_WORKER_MEMORY takes a size; below 256 MiB is refused naming the variable; unset,
    it is three quarters of the machine's memory split between the workers, at least 2 GiB."""
    assert Settings.from_env({"ARTDAG_WORKER_MEMORY": "3GiB"}).worker_memory == 3 * 1024**3
    with pytest.raises(ConfigError, match="ARTDAG_WORKER_MEMORY: must be at least 256MiB"):
        Settings.from_env({"ARTDAG_WORKER_MEMORY": "100MiB"})
    defaults = Settings.from_env({"ARTDAG_WORKERS": "3"})
    assert defaults.worker_memory == default_limit(3) >= MIN_DEFAULT


async def test_a_run_whose_image_does_not_fit_fails_as_out_of_memory(
    settings: Settings, node_client: NodeClient
) -> None:
    """Through the API: the run fails (it is the run's own error, not an outage) and its error
    starts with out_of_memory and says what to do."""
    client: Client = await node_client(settings.replace(worker_memory=SMALL_LIMIT))
    auth = {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 6000), (10, 20, 30)).save(buffer, format="PNG")
    source = await upload(client, auth, buffer.getvalue())
    response = await client.post("/runs", json={"recipe": "blur", "inputs": [source["cid"]]}, headers=auth)
    assert response.status == 202, await response.text()
    run_id = (await response.json())["run_id"]

    async def final() -> dict[str, Any] | None:
        record = dict(await (await client.get(f"/runs/{run_id}")).json())
        return record if record["status"] in ("completed", "failed", "cancelled") else None

    record = await poll_async(final, timeout_s=60)
    assert record["status"] == "failed"
    assert record["error"].startswith("out_of_memory: blur on 6000x6000 pixels needs about ")
