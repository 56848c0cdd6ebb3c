"""The production-like deployment: docker-compose.yml (Kubo, Redis, three nodes) and the Dockerfile.

`docker-compose config` validates and resolves the file without a Docker engine; `make test`
installs Debian's docker-compose through scripts/system-deps.sh.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
NODES = ("node1", "node2", "node3")


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


def test_compose_kubo_enables_pubsub_and_keeps_its_api_private(compose: dict[str, Any]) -> None:
    """Kubo runs with pubsub and IPNS over pubsub, publishes only its swarm port."""
    ipfs = compose["services"]["ipfs"]
    assert ipfs["command"][0] == "daemon"
    assert "--enable-pubsub-experiment" in ipfs["command"]
    assert "--enable-namesys-pubsub" in ipfs["command"]
    assert "ipfs-data:/data/ipfs:rw" in ipfs["volumes"]
    assert "id" in ipfs["healthcheck"]["test"]
    assert {(port["target"], port["protocol"]) for port in ipfs["ports"]} == {(4001, "tcp"), (4001, "udp")}


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
        volume.split(":")[0] for service in compose["services"].values() for volume in service["volumes"]
    }
    assert mounted == declared == {"ipfs-data", "redis-data", *(f"{name}-data" for name in NODES)}


def test_dockerfile_runs_a_console_script_of_the_package() -> None:
    """The image's CMD is a console script that pyproject installs."""
    lines = (REPO / "Dockerfile").read_text().splitlines()
    cmd = json.loads(next(line for line in lines if line.startswith("CMD ")).removeprefix("CMD "))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert cmd[0] in scripts
