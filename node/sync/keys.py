"""Every Redis key and channel name the node uses, in one place.

All names start with one prefix (``artdag:`` unless ``ARTDAG_REDIS_PREFIX`` says otherwise), so
several nodes or test cases can share a server without touching each other's keys. Arguments
are validated here: a key built from an unchecked id could collide with another key's space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from node.sync.errors import InvalidId

DEFAULT_PREFIX = "artdag:"
CONTENT_ID_PATTERN = "[0-9a-f]{64}"  # SHA3-256, lower-case hex: content ids, cache ids, plan ids
ASSET_NAME_PATTERN = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # a name given to content at upload
ASSET_NAME = re.compile(ASSET_NAME_PATTERN)
_HEX64 = re.compile(CONTENT_ID_PATTERN)
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,128}")
MEDIA_KINDS = ("image", "video", "audio")  # the media listings there are, besides all media
USER_PATTERN = r"@[A-Za-z0-9._-]{1,64}@[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?"  # @name@l2-host
_USER = re.compile(USER_PATTERN)
_OWNER = re.compile(rf"{USER_PATTERN}|[A-Za-z0-9._-]{{1,64}}")  # an L2 user, or the local admin


def _checked(kind: str, value: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidId(f"malformed {kind}: {value!r}", kind=kind)
    return value


def is_canonical_content_id(value: str) -> bool:
    """Whether ``value`` is a canonical (lower-case hex) SHA3-256 content id."""
    return bool(_HEX64.fullmatch(value))


def check_content_id(value: str) -> str:
    """``value`` if it is a canonical (lower-case hex) SHA3-256 content id; InvalidId otherwise."""
    return _checked("content id", value, _HEX64)


@dataclass(frozen=True)
class Keys:
    """Builds key names under one prefix. Ids must already be in canonical form."""

    prefix: str = DEFAULT_PREFIX

    # --- content and steps -------------------------------------------------------------
    def content(self, content_id: str) -> str:
        """Hash {cid, size, media_type, created} for one SHA3-256 content id."""
        return f"{self.prefix}content:{_checked('content id', content_id, _HEX64)}"

    def content_media(self, content_id: str) -> str:
        """String: what ffprobe found in the content (JSON), kept since content never changes."""
        return f"{self.content(content_id)}:media"

    def content_owners(self, content_id: str) -> str:
        """Set of users who own the content (deletion is reference counted)."""
        return f"{self.content(content_id)}:owners"

    def content_runs(self, content_id: str) -> str:
        """Set of run ids that use or produced the content."""
        return f"{self.content(content_id)}:runs"

    @property
    def contents(self) -> str:
        """Sorted set of content ids scored by creation time: the listing index (no SCAN)."""
        return f"{self.prefix}contents"

    @property
    def media(self) -> str:
        """Sorted set of the content ids of every image, video and audio, scored like
        ``contents``: the media listing (no SCAN)."""
        return f"{self.prefix}media"

    def media_of_kind(self, kind: str) -> str:
        """Sorted set like ``media``, of one kind: image, video or audio."""
        if kind not in MEDIA_KINDS:
            raise InvalidId(f"malformed media kind: {kind!r}", kind="media kind")
        return f"{self.prefix}media:{kind}"

    def cid(self, cid: str) -> str:
        """String: CID (v1 base32) -> content id."""
        return f"{self.prefix}cid:{_checked('CID', cid, _TOKEN)}"

    @property
    def assets(self) -> str:
        """Hash: asset name -> content id (names given at upload, used by recipes and runs)."""
        return f"{self.prefix}assets"

    @property
    def callbacks(self) -> str:
        """Sorted set: a run's callback to deliver (JSON: run, url, body, attempt) -> when to try
        it next; any node delivers it, and it outlives a node's restart."""
        return f"{self.prefix}callbacks"

    @property
    def output_names(self) -> str:
        """Hash: a run's output name -> the content id of the newest output of that name (an
        input may name it; an asset name of the same spelling wins)."""
        return f"{self.prefix}output-names"

    def content_lock(self, content_id: str) -> str:
        """Short lock held while content is pinned, indexed or unpinned, so those never interleave."""
        return f"{self.prefix}lock:content:{_checked('content id', content_id, _HEX64)}"

    def step(self, cache_id: str) -> str:
        """Hash {cid, content_id, size, media_type, receipt_cid, node}: a computed step (``node``
        computed it and signed its receipt)."""
        return f"{self.prefix}step:{_checked('cache id', cache_id, _HEX64)}"

    @property
    def steps(self) -> str:
        """Sorted set of every recorded cache id, scored by when it was recorded: what the
        node's published step index lists (no SCAN)."""
        return f"{self.prefix}steps"

    @property
    def steps_used(self) -> str:
        """Sorted set: cache id -> when a run last reused the step's output (its recording
        time in ``steps`` stands in until then): the least recently used go first when a
        node's disk budget is exceeded (``node.executor.garbage``)."""
        return f"{self.prefix}steps:used"

    @property
    def evicted(self) -> str:
        """Hash: the CID of an intermediate output the garbage collector evicted -> JSON
        {cache_id, node, at}: verification reports it as evicted, not as missing."""
        return f"{self.prefix}evicted"

    @property
    def unpins_left(self) -> str:
        """Hash: CID -> content id of an evicted output its daemon did not unpin when it was
        evicted (IPFS was away): the next collection unpins it, unless it is indexed again."""
        return f"{self.prefix}unpins-left"

    def peer_step(self, cache_id: str) -> str:
        """Hash {cid, content_id, size, media_type, receipt_cid, node, peer}: a step ``node``
        computed, from trusted ``peer``'s published state, fetched by CID when a run here needs it."""
        return f"{self.prefix}peerstep:{_checked('cache id', cache_id, _HEX64)}"

    def receipt(self, cid: str) -> str:
        """String: a step receipt's signed bytes, by the receipt's CID, written with the step:
        any node can add it to IPFS (``RecordWriter.publish``) if its signer did not."""
        return f"{self.prefix}receipt:{_checked('CID', cid, _TOKEN)}"

    # --- recipes, runs and plans ---------------------------------------------------------
    def recipe(self, cid: str) -> str:
        """Hash {name, version, owner, content_id, created}: an uploaded recipe, by its CID."""
        return f"{self.prefix}recipe:{_checked('CID', cid, _TOKEN)}"

    @property
    def recipes(self) -> str:
        """Sorted set of uploaded recipe CIDs, scored by upload time: the listing index."""
        return f"{self.prefix}recipes"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}run:{_checked('run id', run_id, _TOKEN)}"

    def plan(self, plan_id: str) -> str:
        return f"{self.prefix}plan:{_checked('plan id', plan_id, _HEX64)}"

    @property
    def runs(self) -> str:
        """Sorted set of every run id, scored by submission time: the listing index (no SCAN)."""
        return f"{self.prefix}runs"

    @property
    def runs_active(self) -> str:
        """Sorted set of run ids not yet finished, scored by submission time: every node works
        on these (the design's first ``plans:active``, now by run: two runs may share one plan)."""
        return f"{self.prefix}runs:active"

    def events(self, run_id: str) -> str:
        """Stream of a run's progress events (XADD; SSE resumes with Last-Event-ID)."""
        return f"{self.prefix}events:{_checked('run id', run_id, _TOKEN)}"

    def run_reported(self, run_id: str) -> str:
        """Set of cache ids whose outcome the run's event stream already reports (each once,
        whichever node learns it first; its size is the run's progress)."""
        return f"{self.prefix}reported:{_checked('run id', run_id, _TOKEN)}"

    @property
    def notices(self) -> str:
        """Pub/sub channel for plan announcements and step commits."""
        return f"{self.prefix}notices"

    # --- published state and peers --------------------------------------------------------
    def state(self, node_id: str) -> str:
        """Hash {sequence, cid, document, published, runs, steps, contents}: the state document
        a node last published (its signed bytes in ``document``)."""
        return f"{self.prefix}state:{_checked('node id', node_id, _TOKEN)}"

    @property
    def daemons(self) -> str:
        """Hash: IPFS peer id -> JSON {addresses, node, seen}: the daemons of the nodes sharing
        this Redis, which each node keeps its own daemon peered with (``federation/peering.py``);
        and ``node:{node_id}`` -> what that node said of itself at its last round (the cluster view)."""
        return f"{self.prefix}daemons"

    def peer(self, node_id: str) -> str:
        """Hash {sequence, state_cid, source, synced, steps, error, error_at}: what this node
        last took from a trusted peer's state, and the last problem with it."""
        return f"{self.prefix}peer:{_checked('node id', node_id, _TOKEN)}"

    @property
    def activities(self) -> str:
        """Stream of activity records: runs completed, runs and content deleted (who, when, CIDs)."""
        return f"{self.prefix}activities"

    # --- the database itself ------------------------------------------------------------
    def epoch(self) -> str:
        """String: a random value the first node to find it missing sets; a node that finds it
        gone or changed knows Redis was emptied or replaced (``node.sync.redis_watch``)."""
        return f"{self.prefix}epoch"

    # --- auth ------------------------------------------------------------------------------
    def revocations(self) -> str:
        """Sorted set of the SHA-256 of tokens no request may use again, scored by when each
        revocation expires (30 days on; expired members are removed as others are added)."""
        return f"{self.prefix}revocations"

    def session(self, token_hash: str) -> str:
        """String (the node that started it) with a TTL: a browser session, by its token's
        SHA-256 (``node.auth.sessions``)."""
        return f"{self.prefix}session:{_checked('token hash', token_hash, _HEX64)}"

    def user_tokens(self, user: str) -> str:
        """Set of the SHA-256 of every token a user has authenticated with here (revoke-user)."""
        return f"{self.prefix}user_tokens:{_checked('user', user, _USER)}"

    # --- quotas and rate limits ----------------------------------------------------------
    def usage(self, owner: str) -> str:
        """Hash {bytes, n:{content_id}, s:{content_id}}: what an owner holds (``node.sync.usage``):
        bytes in all, and per content how many holds (ownership, kept runs' outputs) and its size."""
        return f"{self.prefix}usage:{_checked('owner', owner, _OWNER)}"

    def runs_active_of(self, owner: str) -> str:
        """Sorted set of one owner's unfinished run ids (scored like ``runs_active``): the
        per-user limit on concurrent runs counts it, cluster-wide."""
        return f"{self.prefix}runs:active:{_checked('owner', owner, _OWNER)}"

    def rate(self, owner: str) -> str:
        """Sorted set of the times of one user's recent writes (``node.sync.rate``), expiring."""
        return f"{self.prefix}rate:{_checked('owner', owner, _OWNER)}"

    # --- claims --------------------------------------------------------------------------
    def claim(self, cache_id: str) -> str:
        """String ``node:token`` with a PX lease: who is computing the step right now."""
        return f"{self.prefix}claim:{_checked('cache id', cache_id, _HEX64)}"

    def attempts(self, cache_id: str, scope: str = "") -> str:
        """Hash {count, error}: how often a step failed on its own in one try (``scope``: the
        run; another run starts afresh) and its last error; it expires."""
        key = f"{self.prefix}attempts:{_checked('cache id', cache_id, _HEX64)}"
        return f"{key}:{_checked('scope', scope, _TOKEN)}" if scope else key
