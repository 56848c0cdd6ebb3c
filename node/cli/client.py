"""The node's HTTP API for the ``artdag`` command: JSON calls, uploads, downloads and the
event stream of a run (httpx, httpx-sse), every failure as one :class:`CliError` line."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from httpx_sse import ServerSentEvent, connect_sse

DEFAULT_URL = "http://127.0.0.1:8100"
TIMEOUT = httpx.Timeout(30.0, read=300.0)
CHUNK_SIZE = 256 * 1024


UNAUTHORIZED_HINT = (
    "set ARTDAG_TOKEN to a token this node accepts (local mode: the admin_token file in its data "
    "directory, ~/.artdag by default)"
)


class CliError(Exception):
    """What went wrong, in one line for a person; ``status`` and ``field`` when it was the
    node's answer."""

    def __init__(self, message: str, status: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class Api:
    """One node: its URL and the token to use."""

    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        try:
            self._http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise CliError(f"ARTDAG_URL {url!r} is not a URL: {exc}") from None

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, **options: Any) -> Any:
        """The JSON answer of one request; CliError with the node's message on an error."""
        with self._errors():
            response = self._http.request(method, path, **options)
        _raise_for(response)
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"{self.url}{path} answered {response.status_code} without JSON: is it an Art DAG node?"
            ) from None

    def upload(self, path: Path, name: str = "") -> dict[str, Any]:
        """Store a local file on the node (streamed); its content entry."""
        with path.open("rb") as handle:
            files = {
                "file": (path.name, handle, mimetypes.guess_type(path.name)[0] or "application/octet-stream")
            }
            data = {"name": name} if name else {}
            result: dict[str, Any] = self.call("POST", "/cache/upload", files=files, data=data)
            return result

    def upload_recipe(self, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "POST",
            "/recipes/upload",
            content=path.read_bytes(),
            headers={"Content-Type": "application/x-yaml"},
        )
        return result

    def download(self, ref: str, out: BinaryIO) -> int:
        """Write content to ``out`` as it arrives; the number of bytes."""
        written = 0
        with self._errors(), self._http.stream("GET", f"/cache/{ref}") as response:
            if response.is_error:
                response.read()
                _raise_for(response)
            for chunk in response.iter_bytes(CHUNK_SIZE):
                out.write(chunk)
                written += len(chunk)
        return written

    def events(self, run_id: str, after: str = "") -> Iterator[ServerSentEvent]:
        """A run's events as they happen (after event id ``after``), until the stream ends."""
        headers = {"Last-Event-ID": after} if after else {}
        with (
            self._errors(),
            connect_sse(self._http, "GET", f"/runs/{run_id}/events", headers=headers) as source,
        ):
            if source.response.is_error:
                source.response.read()
                _raise_for(source.response)
            yield from source.iter_sse()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException:
            raise CliError(f"{self.url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach the node at {self.url}: {exc}") from None
        except httpx.HTTPError as exc:  # redirects, undecodable bodies, broken streams
            raise CliError(f"talking to {self.url}: {exc}") from None


def _raise_for(response: httpx.Response) -> None:
    if not response.is_error:
        return
    field = None
    try:
        error = response.json()["error"]
        details = error.get("details")
        field = details.get("field") if isinstance(details, dict) else None
        where = f" ({field})" if field else ""
        message = f"{response.status_code} {error['code']}: {error['message']}{where}"
    except (ValueError, KeyError, TypeError, AttributeError):  # not the node's error shape
        message = f"{response.status_code} {response.reason_phrase}"
    if response.status_code == 401:
        message = f"{message}; {UNAUTHORIZED_HINT}"
    raise CliError(message, status=response.status_code, field=field)
