"""A node in a child process, for tests and benchmarks that need a real `python -m node`.

Like ``aiohttp.test_utils``: shipped with the package so that ``tests/`` and ``bench/`` drive
the node the same way an operator does, and measure it from outside (memory in /proc).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from node.services import free_port

START_DEADLINE_S = 90.0


class NodeProcess:
    """One `python -m node` child with its own data directory, port and environment.

    ``host`` is where the node listens and is reached (``ARTDAG_HOST`` unless ``env`` names
    it); ``wrapper`` is put before the command line, e.g. ``["ip", "netns", "exec", NAME]`` to
    run the node in another network namespace (such wrappers exec the node: same pid).
    """

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        wrapper: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.host = host
        self.url = f"http://{host}:{self.port}"
        self.log_path = data_dir.parent / f"node-{self.port}.log"
        child_env = {key: value for key, value in os.environ.items() if not key.startswith("ARTDAG_")}
        child_env["ARTDAG_HOST"] = host
        child_env.update(env or {})
        child_env.update({"ARTDAG_DATA_DIR": str(data_dir), "ARTDAG_PORT": str(self.port)})
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        argv = [*(wrapper or []), sys.executable, "-m", "node"]
        with self.log_path.open("ab") as log_file:
            self.popen = subprocess.Popen(  # noqa: S603 - the caller's own wrapper, then this node
                argv, env=child_env, stdout=log_file, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def index(self) -> dict[str, Any] | None:
        """``GET /`` as JSON, or None while the node does not answer yet."""
        try:
            with urllib.request.urlopen(f"{self.url}/", timeout=5) as response:  # noqa: S310 - http
                return dict(json.load(response))
        except OSError:
            if self.popen.poll() is not None:
                raise RuntimeError(f"node exited early:\n{self.log_path.read_text()}") from None
            return None

    def wait_healthy(self, deadline_s: float = START_DEADLINE_S) -> dict[str, Any]:
        """Poll ``GET /`` until Redis and IPFS are both healthy; the last answer."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            info = self.index()
            if info and info["redis"]["healthy"] and info["ipfs"]["healthy"]:
                return info
            time.sleep(0.1)
        raise TimeoutError(f"node not healthy within {deadline_s} s; log: {self.log_path}")

    def token(self) -> str:
        """The local-mode admin token the node created."""
        return (self.data_dir / "admin_token").read_text().strip()

    def call(self, method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
        """A JSON request with the node's admin token; the JSON answer (HTTPError on an error)."""
        request = urllib.request.Request(  # noqa: S310 - the node's own URL
            f"{self.url}{path}",
            data=body,
            method=method,
            headers={"Authorization": f"Bearer {self.token()}", **headers},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.load(response)

    def upload(self, data: bytes) -> dict[str, Any]:
        """``POST /cache/upload`` of ``data``; the content entry."""
        boundary = "nodeprocessboundary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'.encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return dict(self.call("POST", "/cache/upload", body, **headers))

    def start_run(self, recipe_yaml: str, inputs: list[str]) -> str:
        """Upload a recipe and start it on ``inputs``; the run id."""
        stored = self.call(
            "POST", "/recipes/upload", recipe_yaml.encode(), **{"Content-Type": "application/x-yaml"}
        )
        body = json.dumps({"recipe": stored["id"], "inputs": inputs}).encode()
        return str(self.call("POST", "/runs", body, **{"Content-Type": "application/json"})["run_id"])

    def daemons(self) -> dict[str, Any]:
        """The embedded daemons' pids, URLs and logs (``services.json``)."""
        return dict(json.loads((self.data_dir / "services.json").read_text()))

    def memory_kib(self, field: str) -> int:
        """A memory figure of the node process from /proc (VmRSS, VmHWM ...), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise KeyError(field)

    def reset_peak_memory(self) -> None:
        """Start VmHWM (peak RSS) over from the current RSS (Linux clear_refs)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def stop(self) -> None:
        """Kill the node if it still runs (tests stop it gracefully themselves when that matters)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(30)
