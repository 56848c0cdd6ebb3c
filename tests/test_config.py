"""Settings: ARTDAG_* variables and the optional YAML file, validated at start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from node.config import ConfigError, Settings
from node.identity import node_id_for

PEER = node_id_for(bytes(range(32)))  # a trusted peer's node id: its public key
IPNS_NAME = "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8"


def test_defaults_listen_on_loopback_with_embedded_daemons() -> None:
    """With nothing set the node listens on 127.0.0.1:8100 and embeds Redis and IPFS."""
    settings = Settings.from_env({})
    assert settings.host == "127.0.0.1"
    assert settings.port == 8100
    assert settings.data_dir == Path.home() / ".artdag"
    assert settings.redis_url is None
    assert settings.ipfs_api is None
    assert settings.redis_prefix == "artdag:"
    assert settings.public_url == "http://127.0.0.1:8100"
    assert settings.workers >= 1
    assert settings.peers == ()
    assert settings.l2_trusted == ()
    assert settings.import_roots == ()


def test_every_variable_is_read(tmp_path: Path) -> None:
    """Each ARTDAG_* variable of docs/operations.md "Settings" reaches its field, parsed to its type."""
    root_a, root_b = tmp_path / "a", tmp_path / "b"
    root_a.mkdir()
    root_b.mkdir()
    settings = Settings.from_env(
        {
            "ARTDAG_HOST": "0.0.0.0",
            "ARTDAG_PORT": "9000",
            "ARTDAG_DATA_DIR": str(tmp_path / "data"),
            "ARTDAG_REDIS_URL": "redis://127.0.0.1:6379/5",
            "ARTDAG_IPFS_API": "/ip4/127.0.0.1/tcp/5001",
            "ARTDAG_WORKERS": "3",
            "ARTDAG_PEERS": f"{PEER}@https://b.example/ ,{PEER}@/ipns/{IPNS_NAME}",
            "ARTDAG_PEER_POLL": "5",
            "ARTDAG_STATE_DEBOUNCE": "0.5",
            "ARTDAG_PUBLIC_URL": "https://l1.example/",
            "ARTDAG_L2_TRUSTED": "https://l2.example, https://other-l2.example",
            "ARTDAG_IMPORT_ROOTS": f"{root_a}:{root_b}",
            "ARTDAG_MAX_UPLOAD": "512MiB",
        }
    )
    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    assert settings.data_dir == tmp_path / "data"
    assert settings.redis_url == "redis://127.0.0.1:6379/5"
    assert settings.ipfs_api == "http://127.0.0.1:5001"
    assert settings.workers == 3
    assert settings.peers == (
        f"{PEER}@https://b.example",
        f"{PEER}@{IPNS_NAME}",
    )
    assert settings.peer_poll == 5.0
    assert settings.state_debounce == 0.5
    assert settings.public_url == "https://l1.example"
    assert settings.l2_trusted == ("https://l2.example", "https://other-l2.example")
    assert settings.import_roots == (root_a, root_b)
    assert settings.max_upload == 512 * 1024**2


def test_log_format_and_metrics_access() -> None:
    """Text logs and admin-only metrics unless asked; the values are read in any case."""
    assert (Settings().log_format, Settings().metrics) == ("text", "admin")
    chosen = Settings.from_env({"ARTDAG_LOG_FORMAT": "JSON", "ARTDAG_METRICS": "public"})
    assert (chosen.log_format, chosen.metrics) == ("json", "public")


def test_public_url_defaults_to_host_and_port() -> None:
    """Without ARTDAG_PUBLIC_URL the node names itself by its listening address."""
    assert Settings.from_env({"ARTDAG_PORT": "8200"}).public_url == "http://127.0.0.1:8200"
    assert Settings.from_env({"ARTDAG_HOST": "::1"}).public_url == "http://[::1]:8100"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ARTDAG_HOST", "bad host"),
        ("ARTDAG_PORT", "http"),
        ("ARTDAG_PORT", "70000"),
        ("ARTDAG_PORT", "0"),
        ("ARTDAG_DATA_DIR", " "),
        ("ARTDAG_REDIS_URL", "http://127.0.0.1:6379"),
        ("ARTDAG_REDIS_URL", "redis://127.0.0.1:6379/five"),
        ("ARTDAG_REDIS_PREFIX", "has space"),
        ("ARTDAG_IPFS_API", "ftp://127.0.0.1:5001"),
        ("ARTDAG_IPFS_TIMEOUT", "0"),
        ("ARTDAG_WORKERS", "0"),
        ("ARTDAG_WORKERS", "two"),
        ("ARTDAG_PUBLIC_URL", "l1.example"),
        ("ARTDAG_PUBLIC_URL", "https://l1.example/?x=1"),
        ("ARTDAG_L2_TRUSTED", "https://l2.example,notaurl"),
        ("ARTDAG_IMPORT_ROOTS", "/no/such/directory/anywhere"),
        ("ARTDAG_MAX_UPLOAD", "lots"),
        ("ARTDAG_MAX_UPLOAD", "5 parsecs"),
        ("ARTDAG_MAX_UPLOAD", "0"),
        ("ARTDAG_LOG_LEVEL", "LOUD"),
        ("ARTDAG_LOG_FORMAT", "xml"),
        ("ARTDAG_METRICS", "open"),
        ("ARTDAG_PEERS", "https://b.example"),
        ("ARTDAG_PEERS", "z6MkNotAKey@https://b.example"),
        ("ARTDAG_PEERS", f"{PEER}@"),
        ("ARTDAG_PEERS", f"{PEER}@ftp://b.example"),
        ("ARTDAG_PEER_POLL", "0"),
        ("ARTDAG_STATE_DEBOUNCE", "never"),
    ],
)
def test_invalid_value_is_refused_naming_the_variable(name: str, value: str) -> None:
    """A bad value raises ConfigError whose one problem names the variable and what it got."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    [problem] = caught.value.problems
    assert problem.startswith(f"{name}: ")
    assert "got '" in problem or "not found: " in problem or "empty" in problem


def test_all_problems_are_reported_together() -> None:
    """Several bad variables are listed in one error, so one restart fixes them all."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"ARTDAG_PORT": "x", "ARTDAG_WORKERS": "-1", "ARTDAG_LOG_LEVEL": "?"})
    named = [problem.split(":")[0] for problem in caught.value.problems]
    assert named == ["ARTDAG_PORT", "ARTDAG_WORKERS", "ARTDAG_LOG_LEVEL"]


def test_yaml_file_supplies_values_and_environment_wins(tmp_path: Path) -> None:
    """Values come from the YAML file; the same setting in the environment overrides it."""
    config = tmp_path / "node.yaml"
    config.write_text(
        f"port: 8300\nworkers: 2\npeers: [{PEER}@https://a.example, {PEER}@https://b.example]\n"
    )
    settings = Settings.from_env({"ARTDAG_CONFIG": str(config), "ARTDAG_WORKERS": "5"})
    assert settings.port == 8300
    assert settings.workers == 5
    assert settings.peers == (f"{PEER}@https://a.example", f"{PEER}@https://b.example")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prot: 8100\n", "prot (in config file): unknown setting"),
        ("port: [1, 2]\n", "port (in config file): must be a single value"),
        ("port: 8100\n  bad: indent: here\n", "is not valid YAML"),
        ("- port\n", "must hold a mapping of settings"),
    ],
)
def test_bad_yaml_file_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    """A config file with unknown keys, wrong types or broken YAML is refused, saying where."""
    config = tmp_path / "node.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({}, config_file=config)
    assert expected in str(caught.value)


def test_missing_config_file_names_the_variable(tmp_path: Path) -> None:
    """ARTDAG_CONFIG naming a file that does not exist is an error, not silently ignored."""
    with pytest.raises(ConfigError, match="ARTDAG_CONFIG: cannot read"):
        Settings.from_env({"ARTDAG_CONFIG": str(tmp_path / "missing.yaml")})


def test_node_exits_2_on_bad_settings_naming_the_variable(tmp_path: Path) -> None:
    """`python -m node` with a bad variable prints it on stderr and exits 2 before starting."""
    result = subprocess.run(
        [sys.executable, "-m", "node"],
        env={"ARTDAG_PORT": "eighty", "ARTDAG_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "ARTDAG_PORT: must be an integer from 1 to 65535, got 'eighty'" in result.stderr
    assert not (tmp_path / "redis").exists()
