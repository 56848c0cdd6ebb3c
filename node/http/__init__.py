"""The aiohttp application: JSON API, error shape, health."""

from node.http.app import create_app

__all__ = ["create_app"]
