"""Redis key layout: every key of docs/design.md "Redis keys" under one prefix, built only from valid ids."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from node.sync.errors import InvalidId
from node.sync.keys import Keys

CONTENT_ID = "a" * 64
CACHE_ID = "0123456789abcdef" * 4
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def test_layout_matches_design() -> None:
    """The names are those in docs/design.md "Redis keys", under the artdag: prefix."""
    keys = Keys()
    assert keys.step(CACHE_ID) == f"artdag:step:{CACHE_ID}"
    assert keys.content(CONTENT_ID) == f"artdag:content:{CONTENT_ID}"
    assert keys.content_owners(CONTENT_ID) == f"artdag:content:{CONTENT_ID}:owners"
    assert keys.content_runs(CONTENT_ID) == f"artdag:content:{CONTENT_ID}:runs"
    assert keys.contents == "artdag:contents"
    assert keys.cid(CID) == f"artdag:cid:{CID}"
    assert keys.run("r-123") == "artdag:run:r-123"
    assert keys.plan(CACHE_ID) == f"artdag:plan:{CACHE_ID}"
    assert keys.runs_active == "artdag:runs:active"
    assert keys.notices == "artdag:notices"
    assert keys.claim(CACHE_ID) == f"artdag:claim:{CACHE_ID}"
    assert keys.attempts(CACHE_ID) == f"artdag:attempts:{CACHE_ID}"
    assert keys.events("r-123") == "artdag:events:r-123"
    assert keys.run_reported("r-123") == "artdag:reported:r-123"
    assert keys.receipt(CID) == f"artdag:receipt:{CID}"


def test_media_listings() -> None:
    """One listing of all media and one per kind, beside ``contents``; no other kind."""
    keys = Keys()
    assert keys.media == "artdag:media"
    assert [keys.media_of_kind(kind) for kind in ("image", "video", "audio")] == [
        "artdag:media:image",
        "artdag:media:video",
        "artdag:media:audio",
    ]
    with pytest.raises(InvalidId, match="malformed"):
        keys.media_of_kind("text")


def test_prefix_isolates_every_key() -> None:
    """With another prefix no key name is shared, so nodes or tests can share one server."""
    default, other = Keys(), Keys("test-1:")
    builders: list[Callable[[Keys], str]] = [
        lambda k: k.step(CACHE_ID), lambda k: k.content(CONTENT_ID), lambda k: k.cid(CID),
        lambda k: k.run("r"), lambda k: k.plan(CACHE_ID), lambda k: k.runs_active,
        lambda k: k.notices, lambda k: k.claim(CACHE_ID), lambda k: k.attempts(CACHE_ID),
        lambda k: k.events("r"), lambda k: k.contents, lambda k: k.run_reported("r"),
        lambda k: k.receipt(CID),
    ]  # fmt: skip
    for build in builders:
        assert build(other).startswith("test-1:")
        assert build(default) != build(other)


@pytest.mark.parametrize(
    ("build", "value"),
    [
        (Keys.content, "A" * 64),  # content ids are lower-case hex
        (Keys.content, "a" * 63),
        (Keys.step, "g" * 64),
        (Keys.claim, CACHE_ID + "0"),
        (Keys.run, "run:other"),  # ':' would reach into another key's space
        (Keys.run, "../x/y"),
        (Keys.run, ""),
        (Keys.events, "x" * 129),
        (Keys.cid, "bafy rogue"),
    ],
)
def test_malformed_ids_are_refused(build: object, value: str) -> None:
    """A key is never built from an id that is not in canonical form."""
    with pytest.raises(InvalidId, match="malformed"):
        build(Keys(), value)  # type: ignore[operator]
