"""The embedded default: a local ``redis-server`` and IPFS daemon under the data directory.

When ``ARTDAG_REDIS_URL`` / ``ARTDAG_IPFS_API`` are unset the node starts its own daemons on
free loopback ports, waits for them with a deadline and stops them on exit. The tests start
their daemons through this same module.

Everything here is synchronous on purpose: it runs before the event loop starts (and in
pytest's session fixtures). Each daemon runs in its own session, so a terminal's Ctrl-C reaches
only the node, which then stops the daemons in order; and each asks the kernel for SIGTERM when
the thread that started it dies, so even a ``kill -9`` of the node leaves no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from node import kubo
from node.config import Settings
from node.memory import limit_data

log = logging.getLogger(__name__)

# flatfs keeps each block in a file of its own: bench/datastore.py measured it against pebble.
DATASTORE_PROFILE = "flatfs"
REDIS_START_DEADLINE_S = 30.0
IPFS_START_DEADLINE_S = 90.0
STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 15


class ServiceError(RuntimeError):
    """A daemon could not be found, started or kept running; the message names its log file."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent(parent_pid: int, memory_limit: int | None = None) -> Callable[[], None]:
    """preexec_fn: SIGTERM this child when the node dies, however it dies (Linux only); with
    ``memory_limit``, the child and what it starts may map at most that many bytes of data
    (``node.memory``), from its first instruction."""
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

    def preexec() -> None:
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
        if memory_limit is not None:
            limit_data(memory_limit)

    return preexec


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One daemon: launched in its own session, probed until ready, stopped by process group."""

    name: str
    argv: list[str]
    log_path: Path
    probe: Callable[[], bool]
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def launch(self) -> None:
        """Start the process without waiting for it to be ready."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(self.argv)}\n".encode())
            log_file.flush()
            try:
                self.popen = subprocess.Popen(  # noqa: S603 - argv is built here, not from input
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,
                    preexec_fn=die_with_parent(os.getpid()),  # noqa: PLW1509 - async-signal-safe
                )
            except OSError as exc:
                raise ServiceError(f"{self.name}: cannot start {self.argv[0]}: {exc.strerror}") from exc
        log.info("%s started pid=%d log=%s", self.name, self.popen.pid, self.log_path)

    def wait_ready(self, deadline_s: float) -> None:
        """Probe until ready; stop the process and raise :class:`ServiceError` if it is not."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            ready = self.probe()
            if self.exit_code() is not None:  # checked after the probe: a dying daemon may answer
                self._fail(f"exited with code {self.exit_code()} while starting")
            if ready:
                log.info("%s ready pid=%s", self.name, self.pid)
                return
            time.sleep(0.1)
        self._fail(f"was not ready within {deadline_s:.0f} s")

    def _fail(self, reason: str) -> None:
        self.stop()
        tail = log_tail(self.log_path)
        raise ServiceError(
            f"{self.name} {reason}; see its log file {self.log_path}" + (f"\n{tail}" if tail else "")
        )

    def exit_code(self) -> int | None:
        """None while running; the exit code (negative: killed by that signal) once it ended."""
        return self.popen.poll() if self.popen else None

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after the grace period."""
        if self.popen is None:
            return
        pgid = self.popen.pid  # start_new_session: the group id is the leader's pid
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(wait_s)
                break
        log.info("%s stopped pid=%d code=%s", self.name, self.popen.pid, self.popen.returncode)


def redis_process(data_dir: Path, port: int, logs_dir: Path) -> ManagedProcess:
    """``redis-server`` with append-only persistence in ``data_dir``, on loopback only."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError(
            "redis-server not found on PATH: install it (Debian: apt-get install redis-server) "
            "or set ARTDAG_REDIS_URL to a running Redis"
        )
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
        "--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "yes",
        "--logfile", "",
    ]  # fmt: skip
    return ManagedProcess("redis-server", argv, logs_dir / "redis.log", lambda: _redis_answers(port))


def _redis_answers(port: int) -> bool:
    client = redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        return bool(client.ping())
    except redis.RedisError:  # refused, or still loading the append-only file
        return False
    finally:
        client.close()


@dataclass(frozen=True)
class IpfsPorts:
    api: int
    gateway: int
    swarm: int

    @classmethod
    def pick(cls) -> IpfsPorts:
        return cls(free_port(), free_port(), free_port())


@dataclass(frozen=True)
class SwarmSettings:
    """How the embedded Kubo meets other daemons (see ``Settings.ipfs_swarm`` and the docs)."""

    listen: tuple[str, ...] = ()  # empty: a free loopback TCP port
    public: bool = False  # join the public IPFS network: bootstrap, DHT, providing
    mdns: bool = False

    @classmethod
    def of(cls, settings: Settings) -> SwarmSettings:
        return cls(settings.ipfs_swarm, settings.ipfs_public, settings.ipfs_mdns)


# Peers on these networks (a machine's own nodes, a farm's LAN) bypass libp2p's system-wide
# connection limits, whose per-IP defaults would refuse a farm's many nodes behind one address.
# A daemon on the public network allowlists loopback only: behind Docker's userland proxy, or
# NAT, strangers can appear to come from a private address.
LOOPBACK_NETWORKS = ("/ip4/127.0.0.0/ipcidr/8", "/ip6/::1/ipcidr/128")
LOCAL_NETWORKS = (
    *LOOPBACK_NETWORKS, "/ip4/10.0.0.0/ipcidr/8", "/ip4/172.16.0.0/ipcidr/12",
    "/ip4/192.168.0.0/ipcidr/16", "/ip6/fc00::/ipcidr/7",
)  # fmt: skip
JS_IPFS_ASIDE = "ipfs.js-ipfs-"  # a js-ipfs repository moved aside keeps this name + a timestamp
REFILL_MARKER = "ipfs-refill-pending"  # in the data directory: the node refills the new repository


def ipfs_process(repo_dir: Path, ports: IpfsPorts, logs_dir: Path, swarm: SwarmSettings) -> ManagedProcess:
    """Kubo with its repository in ``repo_dir``: loopback API and gateway, pubsub on, a
    private swarm unless ``swarm`` says otherwise; migrates its repository on upgrades."""
    binary = str(_kubo_binary())
    env = {**os.environ, "IPFS_PATH": str(repo_dir), "IPFS_TELEMETRY": "off"}
    log_path = logs_dir / "ipfs.log"
    move_aside_foreign_repo(repo_dir)
    if not (repo_dir / "config").exists():
        _init_ipfs_repo(binary, repo_dir, env, log_path)
    _write_ipfs_config(repo_dir / "config", ports, swarm)
    argv = [binary, "daemon", "--migrate=true", "--enable-gc=false"]
    return ManagedProcess("ipfs (kubo)", argv, log_path, lambda: _ipfs_answers(ports.api), env)


def _kubo_binary() -> Path:
    try:
        return kubo.find_kubo()
    except kubo.KuboNotFound as exc:
        raise ServiceError(str(exc)) from None


def move_aside_foreign_repo(repo_dir: Path) -> Path | None:
    """Move a repository another implementation made (js-ipfs) out of Kubo's way, never
    deleting it; returns where it went. Kubo writes ``datastore_spec``, js-ipfs never does."""
    if not (repo_dir / "config").exists() or (repo_dir / "datastore_spec").exists():
        return None
    aside = repo_dir.with_name(JS_IPFS_ASIDE + time.strftime("%Y%m%dT%H%M%S"))
    repo_dir.rename(aside)
    (repo_dir.parent / REFILL_MARKER).write_text(f"{aside}\n", encoding="utf-8")
    log.warning(
        "ipfs repository %s was made by another IPFS implementation (js-ipfs); moved it to %s "
        "and starting Kubo on a new one (the local cache is added to it again)",
        repo_dir,
        aside,
    )
    return aside


def _init_ipfs_repo(binary: str, repo_dir: Path, env: dict[str, str], log_path: Path) -> None:
    repo_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # An Ed25519 peer key; flatfs for blocks (bench/datastore.py says why), an empty repository.
    argv = [binary, "init", "--empty-repo", "--algorithm=ed25519", f"--profile={DATASTORE_PROFILE}"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        result = subprocess.run(  # noqa: S603 - argv is built here
            argv, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            timeout=IPFS_START_DEADLINE_S, check=False, start_new_session=True,
        )  # fmt: skip
    if result.returncode != 0 or not (repo_dir / "config").exists():
        raise ServiceError(
            f"ipfs (kubo) init failed with code {result.returncode}; see its log file {log_path}"
        )


def _write_ipfs_config(config_path: Path, ports: IpfsPorts, swarm: SwarmSettings) -> None:
    """Write every config key the node relies on, so no default of any Kubo version decides."""
    config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    for section, values in kubo_config(ports, swarm).items():
        if isinstance(values, dict):  # each key the node names is replaced whole
            config[section] = {**(config.get(section) or {}), **values}
        else:
            config[section] = values
    tmp_path = config_path.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    tmp_path.chmod(0o600)
    tmp_path.replace(config_path)


def kubo_config(ports: IpfsPorts, swarm: SwarmSettings) -> dict[str, Any]:
    """The config sections the node sets, by section; everything else stays as ``init`` wrote it."""
    public = swarm.public
    listen = list(swarm.listen) or [f"/ip4/127.0.0.1/tcp/{ports.swarm}"]
    auto_or_none: list[str] = ["auto"] if public else []  # "auto": Kubo's AutoConf fills them in
    return {
        "Addresses": {
            "API": f"/ip4/127.0.0.1/tcp/{ports.api}",
            "Gateway": f"/ip4/127.0.0.1/tcp/{ports.gateway}",
            "Swarm": listen,
            "Announce": [],
            "NoAnnounce": [],
        },
        "Bootstrap": auto_or_none,
        "AutoConf": {"Enabled": public},
        "AutoTLS": {"Enabled": public},
        "DNS": {"Resolvers": {".": "auto"} if public else {}},
        "Routing": {"Type": "auto" if public else "none", "DelegatedRouters": auto_or_none},
        "Ipns": {"UsePubsub": True, "DelegatedPublishers": auto_or_none},
        "Pubsub": {"Enabled": True, "Router": "gossipsub"},
        "Provide": {"Enabled": public},
        "Discovery": {"MDNS": {"Enabled": swarm.mdns}},
        "Gateway": {"NoFetch": True, "ExposeRoutingAPI": False},  # the node reads by RPC only
        "Swarm": {
            "ResourceMgr": {
                "Enabled": True,
                "Allowlist": list(LOOPBACK_NETWORKS if public else LOCAL_NETWORKS),
            },
            "DisableNatPortMap": not public,
            "RelayClient": {"Enabled": public},
            "RelayService": {"Enabled": False},
            "EnableHolePunching": public,
        },
        "Plugins": {"Plugins": {"telemetry": {"Config": {"Mode": "off"}}}},
    }


def _ipfs_answers(api_port: int) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/v0/id", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class EmbeddedServices:
    """Starts the daemons the settings leave unset and stops them again.

    Use as a context manager; ``settings`` then holds the URLs of the started daemons.
    """

    def __init__(self, settings: Settings) -> None:
        self._requested = settings
        self.settings = settings
        self.processes: dict[str, ManagedProcess] = {}  # by role: "redis", "ipfs"
        self._lock_fd: int | None = None
        self._changing = threading.Lock()  # a restart (in a thread) and stop() never interleave
        self._stopping = False

    def __enter__(self) -> EmbeddedServices:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Settings:
        """Launch every needed daemon, then wait for each; on any failure stop them all."""
        settings = self._requested
        changes: dict[str, str] = {}
        waits: list[tuple[ManagedProcess, float]] = []
        if settings.redis_url is not None and settings.ipfs_api is not None:
            return settings
        self._lock_data_dir()
        try:
            if settings.redis_url is None:
                port = free_port()
                proc = redis_process(settings.data_dir / "redis", port, settings.logs_dir)
                proc.launch()
                self.processes["redis"] = proc
                waits.append((proc, REDIS_START_DEADLINE_S))
                changes["redis_url"] = f"redis://127.0.0.1:{port}/0"
            if settings.ipfs_api is None:
                ports = IpfsPorts.pick()
                proc = ipfs_process(
                    settings.data_dir / "ipfs", ports, settings.logs_dir, SwarmSettings.of(settings)
                )
                proc.launch()
                self.processes["ipfs"] = proc
                waits.append((proc, IPFS_START_DEADLINE_S))
                changes["ipfs_api"] = f"http://127.0.0.1:{ports.api}"
            for proc, deadline_s in waits:
                proc.wait_ready(deadline_s)
        except BaseException:
            self.stop()
            raise
        self.settings = settings.replace(**changes)
        self._write_state_file()
        return self.settings

    def _lock_data_dir(self) -> None:
        """One node per data directory: two redis-servers on one append-only file corrupt it."""
        data_dir = self._requested.data_dir
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(data_dir / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ServiceError(
                f"data directory {data_dir} is in use by another node (pid {holder}); "
                "stop it or set ARTDAG_DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    @property
    def state_file(self) -> Path:
        """``services.json`` in the data directory: each embedded daemon's pid, URL and log."""
        return self._requested.data_dir / "services.json"

    def _write_state_file(self) -> None:
        urls = {"redis": self.settings.redis_url, "ipfs": self.settings.ipfs_api}
        state = {
            role: {"pid": proc.pid, "url": urls[role], "log": str(proc.log_path)}
            for role, proc in self.processes.items()
        }
        tmp_path = self.state_file.with_suffix(".tmp")
        tmp_path.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        tmp_path.chmod(0o600)
        tmp_path.replace(self.state_file)

    def stop(self) -> None:
        """Stop the daemons in reverse start order; safe to call twice."""
        self._stopping = True  # a restart under way gives up, or its daemon is stopped here
        with self._changing:
            self._stop_all()

    def _stop_all(self) -> None:
        while self.processes:
            self.processes.pop(next(reversed(self.processes))).stop()
        if self._lock_fd is not None:  # only the lock holder owns the state file
            self.state_file.unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def restart(self, role: str) -> None:
        """Start a daemon that died again, on the same ports and data (blocking: run it in a
        thread); ServiceError if it does not come up in time."""
        with self._changing:
            if self._stopping or role not in self.processes:
                return
            proc = self.processes[role]
            proc.stop()  # reap it, and whatever it left in its process group
            proc.launch()
            proc.wait_ready(REDIS_START_DEADLINE_S if role == "redis" else IPFS_START_DEADLINE_S)
            self._write_state_file()

    def problems(self) -> dict[str, str]:
        """Daemons that have died since they started, by role, each with where to look."""
        return {
            role: f"embedded {proc.name} exited with code {code}; see its log file {proc.log_path}"
            for role, proc in self.processes.items()
            if (code := proc.exit_code()) is not None
        }
