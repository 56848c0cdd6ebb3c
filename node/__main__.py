"""``artdag-node`` / ``python -m node``: read settings, start embedded daemons, serve HTTP."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import uvloop
from aiohttp import web

from node import __version__, logs
from node.assembly import Node
from node.config import ConfigError, Settings
from node.http import create_app
from node.http.access_log import AccessLogger
from node.http.serving import NodeRunner
from node.reexecute_cli import reexecute_command
from node.services import EmbeddedServices, ServiceError
from node.verify_cli import verify_command

log = logging.getLogger("node")


def main(argv: list[str] | None = None) -> int:
    """Run the node until SIGINT or SIGTERM; the exit code says how it ended."""
    args = _parse_args(argv)
    try:
        settings = Settings.from_env(config_file=args.config)
    except ConfigError as exc:
        print(f"artdag-node: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    if args.command == "verify" and args.reexecute:
        return uvloop.run(reexecute_command(settings, args.cid, args.json))
    if args.command == "verify":
        return uvloop.run(verify_command(settings, args.cid, args.trust, args.any_signer, args.json))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # stop daemons cleanly even during start-up
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        with EmbeddedServices(settings) as services:
            return uvloop.run(serve(services.settings, services))
    except ServiceError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="artdag-node", description="Art DAG L1 peer node (settings: ARTDAG_* variables)"
    )
    parser.add_argument("--config", type=Path, help="YAML settings file (also ARTDAG_CONFIG)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the node (the default)")
    verify = commands.add_parser("verify", help="verify a provenance record by CID")
    verify.add_argument("cid", help="CID of the provenance record")
    verify.add_argument(
        "--trust", action="append", default=[], metavar="NODE_ID", help="accept only these signers"
    )
    verify.add_argument("--any-signer", action="store_true", help="check integrity only, whoever signed")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    verify.add_argument(
        "--reexecute",
        action="store_true",
        help="have the node running on this data directory compute every step again and compare by CID",
    )
    return parser.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


async def serve(settings: Settings, services: EmbeddedServices | None = None) -> int:
    """Open the node, serve its app on HOST:PORT until SIGINT/SIGTERM, then stop serving
    before the node closes."""
    async with Node.open(settings, services) as node:
        return await _serve(node)


async def _serve(node: Node) -> int:
    settings = node.settings
    # An unfinished request head (and an idle keep-alive connection) is closed after the body
    # deadline: aiohttp's default waits an hour, so a few hundred slow clients held the node.
    runner = NodeRunner(
        create_app(node), access_log_class=AccessLogger, keepalive_timeout=settings.body_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            log.error(
                "cannot listen on %s:%d: %s (set ARTDAG_PORT)", settings.host, settings.port, exc.strerror
            )
            return 1
        log.info("serving on http://%s:%d (public URL %s)", settings.host, settings.port, settings.public_url)
        await node.pool.prestart()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping")
        return 0
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
