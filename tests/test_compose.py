"""The production-like deployment: docker-compose.yml (Kubo, Redis, three nodes) and the Dockerfile.

`docker-compose config` validates and resolves the file without a Docker engine; `make test`
installs Debian's docker-compose through scripts/system-deps.sh.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.kubo import pinned_version
from node.services import LOOPBACK_NETWORKS

REPO = Path(__file__).resolve().parent.parent
NODES = ("node1", "node2", "node3")
KUBO_INIT = REPO / "docker" / "kubo-init.sh"
# Daemon flags Kubo deprecated for the Pubsub.Enabled and Ipns.UsePubsub config keys.
DEPRECATED_FLAGS = ("--enable-pubsub-experiment", "--enable-namesys-pubsub")
# One `ipfs config [--json] KEY VALUE` line of the init script; a quoted VALUE may span lines.
IPFS_CONFIG = re.compile(r"^ipfs config (?P<json>--json )?(?P<key>\S+) (?P<value>'[^']*'|\S+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as `docker-compose config` resolves it."""
    if shutil.which("docker-compose") is None:
        pytest.fail(
            "docker-compose is not installed: run scripts/system-deps.sh as root "
            "or `sudo apt-get install docker-compose`"
        )
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_compose_runs_kubo_redis_and_three_nodes(compose: dict[str, Any]) -> None:
    """The stack has one Kubo, one Redis and three nodes."""
    assert set(compose["services"]) == {"ipfs", "redis", *NODES}


def test_compose_redis_persists_with_appendonly(compose: dict[str, Any]) -> None:
    """Redis keeps its data in a named volume with appendonly on, and has a healthcheck."""
    redis = compose["services"]["redis"]
    assert redis["command"][-2:] == ["--appendonly", "yes"]
    assert "redis-data:/data:rw" in redis["volumes"]
    assert "ping" in redis["healthcheck"]["test"]
    assert "ports" not in redis


def init_script_config() -> dict[str, Any]:
    """The keys docker/kubo-init.sh sets with `ipfs config`, and their values."""
    text = KUBO_INIT.read_text()
    config: dict[str, Any] = {}
    for match in IPFS_CONFIG.finditer(text):
        (value,) = shlex.split(match["value"])
        config[match["key"]] = json.loads(value) if match["json"] else value
    assert len(config) == text.count("\nipfs config "), "an `ipfs config` line the pattern misses"
    return config


def test_compose_kubo_keeps_its_api_private(compose: dict[str, Any]) -> None:
    """Kubo keeps its repository in a volume and publishes only its swarm port."""
    ipfs = compose["services"]["ipfs"]
    assert "ipfs-data:/data/ipfs:rw" in ipfs["volumes"]
    assert "id" in ipfs["healthcheck"]["test"]
    assert {(port["target"], port["protocol"]) for port in ipfs["ports"]} == {(4001, "tcp"), (4001, "udp")}


def test_compose_kubo_is_the_pinned_version(compose: dict[str, Any]) -> None:
    """The image is the Kubo tools/kubo/go.mod pins, which the embedded daemon runs too."""
    assert compose["services"]["ipfs"]["image"] == f"ipfs/kubo:v{pinned_version()}"


def test_compose_kubo_daemon_migrates_without_deprecated_flags(compose: dict[str, Any]) -> None:
    """The daemon migrates its repository and takes pubsub from config, not deprecated flags."""
    command = compose["services"]["ipfs"]["command"]
    assert command[0] == "daemon"
    assert "--migrate=true" in command
    assert not set(DEPRECATED_FLAGS) & set(command)


def test_compose_kubo_mounts_its_init_script_read_only(compose: dict[str, Any]) -> None:
    """The image runs docker/kubo-init.sh from /container-init.d, which needs a *.sh name."""
    mount = f"{KUBO_INIT}:/container-init.d/artdag.sh:ro"
    assert mount in compose["services"]["ipfs"]["volumes"]
    result = subprocess.run(["sh", "-n", KUBO_INIT], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_kubo_init_enables_pubsub_and_ipns_over_pubsub() -> None:
    """The init script sets in config what the deprecated daemon flags used to switch on."""
    config = init_script_config()
    assert config["Pubsub.Enabled"] is True
    assert config["Ipns.UsePubsub"] is True
    assert config["Pubsub.Router"] == "gossipsub"
    assert config["Plugins.Plugins.telemetry.Config.Mode"] == "off"


def test_kubo_init_allowlists_loopback_only() -> None:
    """The public daemon's resource manager allowlist is loopback only, as the embedded daemon's
    is when it joins the public network (LOOPBACK_NETWORKS)."""
    assert init_script_config()["Swarm.ResourceMgr.Allowlist"] == list(LOOPBACK_NETWORKS)


def test_kubo_init_migrates_before_configuring() -> None:
    """`ipfs config` refuses a repository that needs migrating, so the script migrates first."""
    lines = [line for line in KUBO_INIT.read_text().splitlines() if line.startswith("ipfs ")]
    assert lines[0] == "ipfs repo migrate"


@pytest.mark.parametrize("name", NODES)
def test_compose_node_uses_shared_services_and_its_own_volume(compose: dict[str, Any], name: str) -> None:
    """Each node is built from the Dockerfile, shares Redis and Kubo, and keeps its own /data."""
    node = compose["services"][name]
    number = name.removeprefix("node")
    assert node["build"] == {"context": str(REPO), "dockerfile": "Dockerfile"}
    assert node["environment"]["ARTDAG_REDIS_URL"] == "redis://redis:6379/5"
    assert node["environment"]["ARTDAG_IPFS_API"] == "http://ipfs:5001"
    assert node["environment"]["ARTDAG_PUBLIC_URL"] == f"http://127.0.0.1:810{number}"
    assert "ARTDAG_PEERS" not in node["environment"]
    assert node["volumes"] == [f"{name}-data:/data:rw"]
    assert node["ports"] == [f"127.0.0.1:810{number}:8100/tcp"]
    assert "/health" in " ".join(node["healthcheck"]["test"])
    assert node["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "ipfs": {"condition": "service_healthy"},
    }
    assert node["restart"] == "unless-stopped"


def test_compose_declares_every_named_volume(compose: dict[str, Any]) -> None:
    """Every volume a service mounts by name is declared at the top level."""
    declared = set(compose["volumes"])
    mounted = {
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service["volumes"]
        if not volume.startswith("/")  # a bind mount, which `config` resolves to an absolute path
    }
    assert mounted == declared == {"ipfs-data", "redis-data", *(f"{name}-data" for name in NODES)}


def test_dockerfile_runs_a_console_script_of_the_package() -> None:
    """The image's CMD is a console script that pyproject installs."""
    lines = (REPO / "Dockerfile").read_text().splitlines()
    cmd = json.loads(next(line for line in lines if line.startswith("CMD ")).removeprefix("CMD "))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert cmd[0] in scripts
