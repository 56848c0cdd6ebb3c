"""Which Kubo (the IPFS daemon) the node runs, and how ``make`` gets one.

The version is pinned in one place, ``tools/kubo/go.mod``: a small Go module that requires
Kubo, so ``go build`` there builds one exact tree of dependencies (``go.sum``). An ``ipfs`` on
``PATH`` is used when it is Kubo of a supported version; otherwise the pinned version built into
``.tools/bin`` (git-ignored). ``python -m node.kubo`` builds it when it is missing or stale and,
with neither Go nor a usable Kubo, says in one line what to install.

Standard library only: the Makefile runs this before anything else is known to work.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_DIR = ROOT / "tools" / "kubo"
BUILT_BINARY = ROOT / ".tools" / "bin" / "ipfs"
# key/ls (the node lists its IPNS keys with it) is in Kubo since 0.40; older daemons lack it.
MIN_VERSION = (0, 40, 0)
VERSION_TIMEOUT_S = 20.0
GO_INSTALL_DIR = "/usr/local/go/bin"
_REQUIRE = re.compile(r"^\s*(?:require\s+)?github\.com/ipfs/kubo\s+v(\d+\.\d+\.\d+)\s*$", re.MULTILINE)
_NUMBER = re.compile(r"(\d+)\.(\d+)\.(\d+)")


class KuboNotFound(RuntimeError):
    """No usable Kubo; the message says what to install."""


def pinned_version() -> str:
    """The Kubo version ``tools/kubo/go.mod`` requires, e.g. ``0.43.1``."""
    match = _REQUIRE.search((MODULE_DIR / "go.mod").read_text(encoding="utf-8"))
    if match is None:
        raise KuboNotFound(f"{MODULE_DIR / 'go.mod'} does not require github.com/ipfs/kubo")
    return match.group(1)


def version_of(binary: str | Path) -> tuple[int, int, int] | None:
    """The Kubo version ``binary`` reports, or None when it is not Kubo or does not answer."""
    try:
        result = subprocess.run(  # noqa: S603 - a path found here, not from input
            [str(binary), "version", "--number"],
            capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, check=False,
            env={**os.environ, "IPFS_PATH": str(ROOT / ".tools" / "no-repo")},  # reads no repository
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _NUMBER.match(result.stdout.strip())
    if result.returncode != 0 or match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def _parse(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


def find_kubo() -> Path:
    """The ``ipfs`` binary to run: Kubo on PATH if supported, else the pinned build."""
    on_path = shutil.which("ipfs")
    if on_path is not None:
        version = version_of(on_path)
        if version is not None and version >= MIN_VERSION:
            return Path(on_path)
    if BUILT_BINARY.exists() and version_of(BUILT_BINARY) == _parse(pinned_version()):
        return BUILT_BINARY
    raise KuboNotFound(_missing_message(on_path))


def _missing_message(on_path: str | None) -> str:
    minimum = ".".join(map(str, MIN_VERSION))
    found = f" ({on_path} is not Kubo >= {minimum})" if on_path else ""
    return (
        f"no Kubo (IPFS daemon) found{found}: run `make setup` with Go >= 1.26 installed to build "
        f"Kubo v{pinned_version()}, or put Kubo >= {minimum}'s `ipfs` on PATH "
        "(https://docs.ipfs.tech/install/command-line/), or set ARTDAG_IPFS_API to a running daemon"
    )


def build() -> Path:
    """Build the pinned Kubo into ``.tools/bin`` with Go; the module and build caches make a
    second build on the same machine take seconds."""
    go = shutil.which("go") or shutil.which("go", path=GO_INSTALL_DIR)  # Go's own installer's place
    if go is None:
        raise KuboNotFound(
            f"cannot build Kubo v{pinned_version()}: Go is not installed; install Go >= 1.26 "
            "(https://go.dev/doc/install) or put Kubo's `ipfs` on PATH"
        )
    print(f"building Kubo v{pinned_version()} from tools/kubo (the first time: ~600 MB of modules, ~3 min)")
    started = time.monotonic()
    BUILT_BINARY.parent.mkdir(parents=True, exist_ok=True)
    partial = BUILT_BINARY.with_suffix(".partial")
    command = [go, "build", "-trimpath", "-o", str(partial), "github.com/ipfs/kubo/cmd/ipfs"]
    subprocess.run(command, cwd=MODULE_DIR, check=True)  # noqa: S603 - fixed argv
    partial.replace(BUILT_BINARY)  # never leave a half-written binary where find_kubo looks
    print(f"built {BUILT_BINARY.relative_to(ROOT)} in {time.monotonic() - started:.0f} s")
    return BUILT_BINARY


def ensure() -> Path:
    """A usable Kubo, built first if there is none."""
    try:
        return find_kubo()
    except KuboNotFound:
        return build()


def main() -> int:
    """``python -m node.kubo``: make sure a usable Kubo is there; one line if it cannot be."""
    try:
        ensure()
    except KuboNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(
            f"building Kubo failed (go build exited {exc.returncode}); see the lines above", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
