"""The one place that owns "this content is gone": what the node keeps about content besides
its index entry and pin goes with them.

When the content store forgets content (a user's delete with no owner left, a run's deletion
releasing what nothing else keeps, a fenced step's discarded output), ``Gone.forget`` removes
the local cache file (step outputs are moved into that cache, so a run's output has one), the
thumbnail, and anything a layer above remembers about it (``on_gone``: the HTTP layer's hot
reads). The probe report lives in the content's index entry and goes with it
(``ContentIndex.remove``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from node.store.local_cache import LocalCache
from node.store.thumbnail_cache import Thumbnails
from node.sync.index import ContentEntry

log = logging.getLogger(__name__)
Listener = Callable[[ContentEntry], None]


class Gone:
    """Removes the local traces of content the store has forgotten."""

    def __init__(self, cache: LocalCache, thumbnails: Thumbnails) -> None:
        self._cache = cache
        self._thumbnails = thumbnails
        self._listeners: list[Listener] = []

    def on_gone(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` (synchronous, quick) with each entry forgotten from now on; the
        function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def forget(self, entry: ContentEntry) -> None:
        """Content ``entry`` is no longer indexed here: drop its file, thumbnail and memories.
        Never raises: what cannot be removed now is logged (the index no longer names it)."""
        for listener in list(self._listeners):
            try:
                listener(entry)
            except Exception:  # a listener's bug must not fail the delete that called it
                log.exception("a listener failed on forgetting %s", entry.content_id)
        try:
            await asyncio.to_thread(self._cache.path_for(entry.content_id).unlink, missing_ok=True)
            await self._thumbnails.forget(entry.content_id)
        except OSError as exc:
            log.error("could not remove the local files of %s: %s", entry.content_id, exc.strerror)
