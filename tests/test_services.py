"""The embedded default: real daemons own_redis, probed, stopped, and reported when they fail."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
import redis

from node import kubo
from node.config import Settings
from node.services import EmbeddedServices, ServiceError, redis_process
from tests.helpers import pid_alive, wait_until


def _client(settings: Settings) -> redis.Redis:
    assert settings.redis_url is not None
    return redis.Redis.from_url(settings.redis_url, socket_timeout=5, decode_responses=True)


def test_embedded_redis_answers_on_loopback_with_appendonly(own_redis: EmbeddedServices) -> None:
    """The embedded redis-server listens on 127.0.0.1 with append-only files in the data dir."""
    url = own_redis.settings.redis_url
    assert url is not None and url.startswith("redis://127.0.0.1:")
    client = _client(own_redis.settings)
    try:
        assert client.ping()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        assert Path(str(client.config_get("dir")["dir"])) == own_redis.settings.data_dir / "redis"
    finally:
        client.close()


def test_state_file_names_each_daemon_and_is_private(own_redis: EmbeddedServices) -> None:
    """services.json (0600) tells operators each embedded daemon's pid, URL and log file."""
    state = json.loads(own_redis.state_file.read_text())
    proc = own_redis.processes["redis"]
    assert state == {
        "redis": {"pid": proc.pid, "url": own_redis.settings.redis_url, "log": str(proc.log_path)}
    }
    assert own_redis.state_file.stat().st_mode & 0o777 == 0o600


def test_redis_data_survives_a_restart(redis_only: Settings) -> None:
    """What was written before a stop is there after the next start (append-only file)."""
    with EmbeddedServices(redis_only) as first:
        client = _client(first.settings)
        client.set("artdag:test:survives", "yes")
        client.close()
    with EmbeddedServices(redis_only) as second:
        client = _client(second.settings)
        assert client.get("artdag:test:survives") == "yes"
        client.close()


def test_stop_ends_every_daemon_and_removes_the_state_file(redis_only: Settings) -> None:
    """After stop() no daemon process is left and services.json is gone."""
    embedded = EmbeddedServices(redis_only)
    embedded.start()
    pid = embedded.processes["redis"].pid
    assert pid is not None and pid_alive(pid)
    embedded.stop()
    assert not pid_alive(pid)
    assert not embedded.state_file.exists()
    embedded.stop()  # a second stop is harmless


def test_settings_with_both_urls_start_nothing(daemons: EmbeddedServices, tmp_path: Path) -> None:
    """With ARTDAG_REDIS_URL and ARTDAG_IPFS_API set, no daemon is own_redis and no lock taken."""
    external = daemons.settings.replace(data_dir=tmp_path / "data")
    with EmbeddedServices(external) as embedded:
        assert embedded.processes == {}
        assert embedded.settings == external
    assert not (tmp_path / "data").exists()


def test_missing_redis_binary_is_a_clear_error(redis_only: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """No redis-server on PATH: one error saying what to install or set."""
    monkeypatch.setenv("PATH", str(redis_only.data_dir))
    with pytest.raises(ServiceError, match=r"redis-server not found on PATH.*ARTDAG_REDIS_URL"):
        EmbeddedServices(redis_only).start()


def test_missing_ipfs_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither Kubo on PATH nor the pinned build: one error naming every way out."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(kubo, "BUILT_BINARY", tmp_path / "no-ipfs")
    settings = Settings(data_dir=tmp_path / "data", redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(ServiceError, match=r"no Kubo .*make setup.*Go.*PATH.*ARTDAG_IPFS_API"):
        EmbeddedServices(settings).start()


def test_daemon_that_fails_to_start_names_its_log_file(tmp_path: Path) -> None:
    """A daemon that exits while starting (its port is taken) raises an error naming its log."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = redis_process(tmp_path / "redis", port, tmp_path / "logs")
        proc.launch()
        with pytest.raises(ServiceError) as caught:
            proc.wait_ready(10)
    message = str(caught.value)
    assert "redis-server exited with code 1 while starting" in message
    assert f"see its log file {tmp_path / 'logs' / 'redis.log'}" in message
    assert "Address already in use" in message  # the log's tail comes with the error


def test_daemon_that_dies_while_running_is_reported(own_redis: EmbeddedServices) -> None:
    """A daemon killed under the node shows up in problems() with its exit code and log file."""
    assert own_redis.problems() == {}
    pid = own_redis.processes["redis"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    problems = wait_until(own_redis.problems)
    log_path = own_redis.processes["redis"].log_path
    assert problems == {"redis": f"embedded redis-server exited with code -9; see its log file {log_path}"}


def test_second_node_on_the_same_data_dir_is_refused(
    own_redis: EmbeddedServices, redis_only: Settings
) -> None:
    """Two nodes must not share a data directory: the second start fails, the first runs on."""
    with pytest.raises(
        ServiceError, match=rf"data directory {redis_only.data_dir} is in use .*pid {os.getpid()}"
    ):
        EmbeddedServices(redis_only).start()
    assert own_redis.problems() == {}
    assert own_redis.state_file.exists()
