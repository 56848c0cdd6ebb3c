"""Node settings: one frozen dataclass, read once at start-up from ``ARTDAG_*`` variables.

An optional YAML file (``ARTDAG_CONFIG`` or ``artdag-node --config``) supplies values under the
same names in lower case without the prefix (``port: 8100``); the environment wins over the
file. Every problem is collected and reported together, each naming the variable it came from.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from node.identity import public_key_from_node_id
from node.logs import LOG_FORMATS
from node.memory import default_limit as default_memory_limit

MIN_WORKER_MEMORY = 256 * 1024**2
BATCH_CEILING = 10_000  # the most ARTDAG_MAX_BATCH may be (the document's bound on a batch's items)

ENV_PREFIX = "ARTDAG_"
CONFIG_FILE_VAR = "ARTDAG_CONFIG"
_SWARM_ADDRESS = re.compile(r"/(ip4|ip6)/[0-9A-Fa-f.:]+/(tcp/\d{1,5}(/ws)?|udp/\d{1,5}/quic-v1)")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
METRICS_ACCESS = ("admin", "public")  # who may read GET /metrics
_SIZE_UNITS = {
    "": 1, "B": 1,
    "K": 1000, "KB": 1000, "KIB": 1024,
    "M": 1000**2, "MB": 1000**2, "MIB": 1024**2,
    "G": 1000**3, "GB": 1000**3, "GIB": 1024**3,
    "T": 1000**4, "TB": 1000**4, "TIB": 1024**4,
}  # fmt: skip


_RATE = re.compile(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)")
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
RATE_COUNT_MAX = 10_000  # requests a rate may let through per period (each is remembered that long)


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` requests in any ``period_s`` seconds (``ARTDAG_RATE_LIMIT``)."""

    count: int
    period_s: float
    text: str  # as the setting wrote it: what error messages and ``GET /`` show


class ConfigError(ValueError):
    """Raised when settings are invalid; the message names every offending variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))


def default_workers() -> int:
    """One worker per CPU the process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """Everything the node reads from its environment; see docs/operations.md "Settings"."""

    host: str = "127.0.0.1"
    port: int = 8100
    data_dir: Path = field(default_factory=lambda: Path.home() / ".artdag")
    redis_url: str | None = None  # None: start an embedded redis-server
    redis_prefix: str = "artdag:"
    ipfs_api: str | None = None  # None: start an embedded IPFS daemon
    ipfs_timeout: float = 30.0
    # The embedded Kubo's swarm: where it listens (empty: a free loopback TCP port; a farm on a
    # LAN names its addresses), whether it joins the public IPFS network (bootstrap peers, DHT
    # routing, providing) and whether it looks for peers by mDNS. Off by default: a node's
    # daemon talks only to the daemons of its cluster and trusted peers, which it peers with.
    ipfs_swarm: tuple[str, ...] = ()
    ipfs_public: bool = False
    ipfs_mdns: bool = False
    workers: int = field(default_factory=default_workers)
    # The most memory (data mapped) each step worker and what it starts may use, enforced by the
    # kernel (node.memory); 0: the default, 3/4 of the machine's memory split between workers.
    worker_memory: int = 0
    step_timeout: float = 600.0
    lease: float = 30.0  # a claim on a step lapses this long after its last heartbeat
    heartbeat: float = 3.0  # how often a node computing a step renews its lease
    attempts: int = 3  # a run's tries of one step (its own errors) before the run fails
    # Redis connections each node opens for requests and runs; more requests than this wait
    # their turn (up to a few seconds) instead of failing. Event-stream followers have as many
    # again of their own, so they never starve requests.
    redis_connections: int = 64
    max_queued: int = 10_000  # unfinished runs the cluster holds before POST /runs answers 503
    max_batch: int = 100  # runs one POST /runs/batch may submit
    # A per-frame video chain over a clip longer than this is rendered as parts of this length,
    # a step each, joined (node.executor.segments); 0: never. 10 s: bench.segments measured a
    # 5-minute 720p render at 1.05 of raw ffmpeg's time on one node (1.09 unsegmented).
    segment_seconds: float = 10.0
    priority_without_admin: int = 0  # the highest run priority a user who is not the admin may ask for
    callback_hosts: tuple[str, ...] = ()  # hosts runs' callbacks may go to; none: any public host
    retry_max: float = 30.0  # the longest wait between tries of a run an outage interrupted
    peers: tuple[str, ...] = ()  # NODE_ID@LOCATION: a trusted peer's key and where its state is
    peer_poll: float = 30.0  # seconds between polls of each peer's /state and IPNS name
    state_debounce: float = 2.0  # a burst of changes is gathered this long before publishing
    redis_watch: float = 2.0  # seconds between looks at whether Redis was emptied (restored then)
    public_url: str = ""  # empty: http://HOST:PORT
    l2_trusted: tuple[str, ...] = ()
    l2_verify_ttl: float = 30.0  # seconds an L2's "valid" answer for a token is reused
    l2_timeout: float = 5.0  # seconds an L2 has to answer a verification
    import_roots: tuple[Path, ...] = ()
    max_upload: int = 2 * 1024**3
    # The most the node's IPFS repository and local cache may hold; above it the least recently
    # used intermediates go, then local cache files (node.executor.garbage). 0: no budget.
    disk_budget: int = 0
    gc_interval: float = 300.0  # seconds between looks at the disk budget
    # Per user, never the admin (docs/operations.md "Quotas and rate limits"); 0 / None: none.
    quota_bytes: int = 0  # bytes a user may hold: what they own plus their kept runs' outputs
    max_runs_per_user: int = 0  # a user's unfinished runs, cluster-wide
    rate_limit: RateLimit | None = None  # a user's writes (POST, PUT, PATCH, DELETE), cluster-wide
    body_timeout: float = 30.0  # seconds a small body (JSON, a recipe) has to arrive whole
    log_level: str = "INFO"
    log_format: str = "text"  # text, or json: one JSON object a line with the run, step and node ids
    metrics: str = "admin"  # who may read GET /metrics: the admin (a bearer token), or public

    def __post_init__(self) -> None:
        if not self.worker_memory:
            object.__setattr__(self, "worker_memory", default_memory_limit(self.workers))
        if not self.public_url:
            object.__setattr__(self, "public_url", f"http://{_url_host(self.host)}:{self.port}")

    @property
    def logs_dir(self) -> Path:
        """Where the embedded daemons write their logs."""
        return self.data_dir / "logs"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (e.g. the URLs of started services)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
        """Read and validate settings; raise :class:`ConfigError` naming each bad variable."""
        environ = os.environ if environ is None else environ
        problems: list[str] = []
        raw = _read_config_file(config_file or _config_file_from(environ), problems)
        values: dict[str, Any] = {}
        for spec in _FIELDS:
            env_name = ENV_PREFIX + spec.name.upper()
            in_file = spec.name in raw
            file_value = raw.pop(spec.name, None)
            if env_name in environ:
                source, value = env_name, environ[env_name]
            elif in_file:
                source, value = f"{spec.name} (in config file)", file_value
            else:
                continue
            try:
                values[spec.name] = spec.parse(value)
            except ValueError as exc:
                problems.append(f"{source}: {exc}")
        problems.extend(f"{key} (in config file): unknown setting" for key in sorted(raw))
        lease, heartbeat = values.get("lease", cls.lease), values.get("heartbeat", cls.heartbeat)
        if lease < 10 * heartbeat:  # a few missed heartbeats must not lose a step
            problems.append(
                f"ARTDAG_LEASE ({lease} s) must be at least 10 x ARTDAG_HEARTBEAT ({heartbeat} s)"
            )
        if problems:
            raise ConfigError(problems)
        return cls(**values)


@dataclass(frozen=True)
class _Field:
    name: str
    parse: Callable[[Any], Any]


def _config_file_from(environ: Mapping[str, str]) -> Path | None:
    value = environ.get(CONFIG_FILE_VAR, "").strip()
    return Path(value).expanduser() if value else None


def _read_config_file(path: Path | None, problems: list[str]) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append(f"{CONFIG_FILE_VAR}: cannot read {path}: {exc.strerror}")
        return {}
    except yaml.YAMLError as exc:
        problems.append(f"{CONFIG_FILE_VAR}: {path} is not valid YAML: {exc}")
        return {}
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        problems.append(f"{CONFIG_FILE_VAR}: {path} must hold a mapping of settings")
        return {}
    return {str(key).lower(): value for key, value in loaded.items()}


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        raise ValueError(f"must be a single value, got {value!r}")
    return str(value).strip()


def _items(value: Any) -> list[str]:
    """A list from YAML, or a comma/whitespace separated string from the environment."""
    if isinstance(value, (list, tuple)):
        return [_text(item) for item in value if _text(item)]
    return [item for item in re.split(r"[,\s]+", _text(value)) if item]


def _host(value: Any) -> str:
    host = _text(value)
    if not host or re.search(r"[\s/]", host):
        raise ValueError(f"must be a host name or IP address, got {value!r}")
    return host


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        text = _text(value)
        if not re.fullmatch(r"[+-]?\d+", text) or not low <= int(text) <= high:
            raise ValueError(f"must be an integer from {low} to {high}, got {value!r}")
        return int(text)

    return parse


def _seconds_or_never(limit: float) -> Callable[[Any], float]:
    """Seconds above 0 up to ``limit``, or 0 for never."""
    positive = _seconds_up_to(limit)

    def parse(value: Any) -> float:
        return 0.0 if _text(value).strip() in ("0", "0.0") else positive(value)

    return parse


def _seconds_up_to(limit: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            seconds = float(_text(value))
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= limit:
            raise ValueError(f"must be a number of seconds above 0 and at most {limit:.0f}, got {value!r}")
        return seconds

    return parse


def _path(value: Any) -> Path:
    text = _text(value)
    if not text:
        raise ValueError("must be a path, got an empty value")
    return Path(text).expanduser().resolve()


def _import_roots(value: Any) -> tuple[Path, ...]:
    if isinstance(value, (list, tuple)):
        parts = [_text(item) for item in value]
    else:
        parts = _text(value).split(os.pathsep)
    roots = tuple(_path(part) for part in parts if part)
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing:
        raise ValueError(f"each root must be an existing directory; not found: {', '.join(missing)}")
    return roots


def _http_url(value: Any) -> str:
    text = _text(value).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"must be an http:// or https:// URL without query, got {value!r}")
    return text


def _hosts(value: Any) -> tuple[str, ...]:
    hosts = tuple(item.lower() for item in _items(value))
    for host in hosts:
        if not re.fullmatch(r"[a-z0-9.:-]{1,253}", host):
            raise ValueError(f"each host must be a host name or IP address, got {host!r}")
    return hosts


def _http_urls(value: Any) -> tuple[str, ...]:
    return tuple(_http_url(item) for item in _items(value))


def _redis_url(value: Any) -> str:
    text = _text(value)
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ValueError(f"must be a redis://, rediss:// or unix:// URL, got {value!r}")
    db = parts.path.strip("/") if parts.scheme != "unix" else ""
    if db and not db.isdigit():
        raise ValueError(f"database in the URL path must be a number, got {db!r}")
    return text


def _ipfs_api(value: Any) -> str:
    """Kubo RPC address as an http URL; a multiaddr like /ip4/127.0.0.1/tcp/5001 is accepted."""
    text = _text(value)
    multiaddr = re.fullmatch(r"/(ip4|ip6|dns|dns4|dns6)/([^/]+)/tcp/(\d+)(/https?)?/?", text)
    if multiaddr:
        kind, host, port, scheme = multiaddr.groups()
        host = f"[{host}]" if kind == "ip6" else host
        return f"{(scheme or '/http')[1:]}://{host}:{port}"
    return _http_url(text)


def _multiaddrs(value: Any) -> tuple[str, ...]:
    """Swarm listen addresses such as /ip4/0.0.0.0/tcp/4001 or /ip6/::/udp/4001/quic-v1."""
    addresses = tuple(_items(value))
    for address in addresses:
        if not _SWARM_ADDRESS.fullmatch(address):
            raise ValueError(
                "each address must be a multiaddr such as /ip4/0.0.0.0/tcp/4001 or "
                f"/ip4/0.0.0.0/udp/4001/quic-v1, got {address!r}"
            )
    return addresses


def _flag(value: Any) -> bool:
    text = _text(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _prefix(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", text):
        raise ValueError(f"must be 1-64 characters of letters, digits and _.:- , got {value!r}")
    return text


def _size(value: Any) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", _text(value))
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _SIZE_UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"must be a size such as 2G, 512MiB or 1048576, got {value!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def _size_or_none(value: Any) -> int:
    """A size (``_size``), or 0 for none."""
    return 0 if _text(value) == "0" else _size(value)


def _rate(value: Any) -> RateLimit | None:
    """``COUNT/PERIOD`` (``120/min``, ``10/s``, ``1000/h``, ``5/10s``), or ``off`` / 0 for none."""
    text = _text(value).lower()
    if text in ("", "0", "off", "none"):
        return None
    match = _RATE.fullmatch(text)
    unit = _RATE_UNITS.get(match.group(3)) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"must be COUNT/PERIOD such as 120/min, 10/s, 1000/h or 5/10s (or off), got {value!r}"
        )
    count, period_s = int(match.group(1)), float(match.group(2) or 1) * unit
    if not 1 <= count <= RATE_COUNT_MAX or not 0 < period_s <= 86400:
        raise ValueError(
            f"allows 1 to {RATE_COUNT_MAX} requests in a period above 0 s and at most a day, got {value!r}"
        )
    return RateLimit(count, period_s, _text(value))


def _memory(value: Any) -> int:
    size = _size(value)
    if size < MIN_WORKER_MEMORY:
        raise ValueError(f"must be at least 256MiB (a worker's Python alone maps 100 MiB), got {value!r}")
    return size


def _log_level(value: Any) -> str:
    level = _text(value).upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        choice = _text(value).lower()
        if choice not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return choice

    return parse


def _peers(value: Any) -> tuple[str, ...]:
    return tuple(_peer(item) for item in _items(value))


def _peer(item: str) -> str:
    """``NODE_ID@LOCATION``: the peer's node id (its public key) and an http(s) URL or IPNS name."""
    node_id, sep, location = item.partition("@")
    try:
        public_key_from_node_id(node_id)
    except ValueError:
        raise ValueError(
            f"each peer must be NODE_ID@URL or NODE_ID@IPNS_NAME, NODE_ID its node id (z6Mk...), got {item!r}"
        ) from None
    if not sep or not location:
        raise ValueError(f"each peer must be NODE_ID@URL or NODE_ID@IPNS_NAME, got {item!r}")
    if location.startswith(("http://", "https://")):
        return f"{node_id}@{_http_url(location)}"
    if not re.fullmatch(r"(/ipns/)?[A-Za-z0-9]{20,100}", location):
        raise ValueError(f"peer location must be an http(s) URL or an IPNS name, got {location!r}")
    return f"{node_id}@{location.removeprefix('/ipns/')}"


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind is reached via loopback
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


_FIELDS = (
    _Field("host", _host),
    _Field("port", _int_range(1, 65535)),
    _Field("data_dir", _path),
    _Field("redis_url", _redis_url),
    _Field("redis_prefix", _prefix),
    _Field("ipfs_api", _ipfs_api),
    _Field("ipfs_timeout", _seconds_up_to(3600)),
    _Field("ipfs_swarm", _multiaddrs),
    _Field("ipfs_public", _flag),
    _Field("ipfs_mdns", _flag),
    _Field("workers", _int_range(1, 1024)),
    _Field("worker_memory", _memory),
    _Field("step_timeout", _seconds_up_to(86400)),
    _Field("lease", _seconds_up_to(3600)),
    _Field("heartbeat", _seconds_up_to(360)),
    _Field("attempts", _int_range(1, 100)),
    _Field("redis_connections", _int_range(4, 10_000)),
    _Field("max_queued", _int_range(1, 100_000_000)),
    _Field("max_batch", _int_range(1, BATCH_CEILING)),
    _Field("segment_seconds", _seconds_or_never(86400)),
    _Field("priority_without_admin", _int_range(-10, 10)),
    _Field("callback_hosts", _hosts),
    _Field("retry_max", _seconds_up_to(3600)),
    _Field("peers", _peers),
    _Field("peer_poll", _seconds_up_to(86400)),
    _Field("state_debounce", _seconds_up_to(3600)),
    _Field("redis_watch", _seconds_up_to(600)),
    _Field("public_url", _http_url),
    _Field("l2_trusted", _http_urls),
    _Field("l2_verify_ttl", _seconds_up_to(3600)),
    _Field("l2_timeout", _seconds_up_to(120)),
    _Field("import_roots", _import_roots),
    _Field("max_upload", _size),
    _Field("disk_budget", _size),
    _Field("gc_interval", _seconds_up_to(86400)),
    _Field("quota_bytes", _size_or_none),
    _Field("max_runs_per_user", _int_range(0, 1_000_000)),
    _Field("rate_limit", _rate),
    _Field("body_timeout", _seconds_up_to(3600)),
    _Field("log_level", _log_level),
    _Field("log_format", _one_of(LOG_FORMATS)),
    _Field("metrics", _one_of(METRICS_ACCESS)),
)
