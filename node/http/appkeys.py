"""Typed keys for what the application holds (aiohttp ``web.AppKey``): the open node, and what
belongs to HTTP alone."""

from __future__ import annotations

import asyncio

from aiohttp import web

from node.assembly import Node

NODE = web.AppKey("node", Node)  # every part of the node (``node.assembly``)
PROBE_SLOTS = web.AppKey("probe_slots", asyncio.Semaphore)  # ffprobe runs for clients
