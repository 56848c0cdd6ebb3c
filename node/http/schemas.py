"""JSON Schemas of what the API takes and answers (``components.schemas`` of the OpenAPI
document), and small helpers that the handlers' ``@operation`` declarations use."""

from __future__ import annotations

from typing import Any

from node.config import BATCH_CEILING
from node.store.cid import CID_SPELLING, REF_SPELLING
from node.sync.keys import ASSET_NAME_PATTERN, CONTENT_ID_PATTERN, USER_PATTERN
from node.sync.run_events import EVENT_KINDS

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_of(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def answer(description: str, schema: Schema, links: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON response, with the OpenAPI links to what a client may do next with it."""
    return {"description": description, "content": json_of(schema), **({"links": links} if links else {})}


def link(operation_id: str, description: str, body: Any = None, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link: the operation a client may call next, with values taken from this
    answer (runtime expressions such as ``$response.body#/cid``)."""
    found: dict[str, Any] = {"operationId": operation_id, "description": description}
    if parameters:
        found["parameters"] = parameters
    if body is not None:
        found["requestBody"] = body
    return found


# What a client may do next with content it stored, a run it started, a recipe it uploaded.
_CID = "$response.body#/cid"
CONTENT_LINKS = {
    "GetContent": link("get_cache_get", "Download the bytes", ref=_CID),
    "ProbeContent": link("get_cache_probe", "What media it is", ref=_CID),
    "ThumbnailOfContent": link("get_cache_thumbnail", "Its thumbnail", ref=_CID),
    "DeleteContent": link("delete_cache_delete", "Drop your ownership", ref=_CID),
    "RenderIt": link(
        "post_runs_create",
        "Render it (here with the built-in effect identity: the output is the input)",
        body={"recipe": "identity", "inputs": [_CID]},
    ),
}
_RUN_ID = "$response.body#/run_id"
RUN_LINKS = {
    "GetRun": link("get_run", "Its status, progress and steps", run_id=_RUN_ID),
    "FollowRun": link("get_run_events", "Follow it to its end", run_id=_RUN_ID),
    "CancelRun": link("post_run_cancel", "Stop it", run_id=_RUN_ID),
    "RetryRun": link("post_run_retry", "Try it again once it failed or was cancelled", run_id=_RUN_ID),
    "DeleteRun": link("delete_run_delete", "Delete it (once finished)", run_id=_RUN_ID),
    "ProvenanceOfRun": link("get_run_provenance", "Its signed provenance (once completed)", run_id=_RUN_ID),
    "AttestationOfRun": link(
        "get_run_attestation", "Its in-toto/SLSA attestation, DSSE-signed (once completed)", run_id=_RUN_ID
    ),
}
_RECIPE_ID = "$response.body#/id"
RECIPE_LINKS = {
    "GetRecipe": link("get_recipes_get", "Its DAG and YAML", id=_RECIPE_ID),
    "RunRecipe": link("post_recipes_run", "Run it", id=_RECIPE_ID),
    "DeleteRecipe": link("delete_recipes_delete", "Forget it", id=_RECIPE_ID),
}
_JOB_ID = "$response.body#/id"
REEXECUTION_LINKS = {
    "FollowReexecution": link("get_reexecution", "Its progress, verdicts and record", job_id=_JOB_ID),
}
RECORD_LINKS = {
    "VerifyRecord": link("get_provenance_verify", "Verify it: signatures, every CID, every hash", cid=_CID),
}


def json_body(schema: Schema) -> dict[str, Any]:
    return {"required": True, "content": json_of(schema)}


def query(name: str, schema: Schema, description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def page(default: int, maximum: int, last_offset: int = 10**6) -> tuple[dict[str, Any], ...]:
    """offset and limit query parameters."""
    return (
        query(
            "offset", {"type": "integer", "minimum": 0, "maximum": last_offset, "default": 0}, "items to skip"
        ),
        query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
            "items to return",
        ),
    )


def _object(required: list[str], properties: dict[str, Schema]) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


def _items(item: Schema, **more: Schema) -> Schema:
    return _object(["items", *more], {"items": {"type": "array", "items": item}, **more})


STRING: Schema = {"type": "string"}
RUN_ID_PATTERN = "run-[0-9a-f]{16}"
ASSET_NAME_SCHEMA: Schema = {"type": "string", "pattern": f"^{ASSET_NAME_PATTERN}$"}
OPTIONAL_ASSET_NAME_SCHEMA: Schema = {
    "type": "string",
    "pattern": f"^(?:{ASSET_NAME_PATTERN})?$",
    "description": "1-64 letters, digits and ._- from a letter or digit; empty: no name",
}
REF_SCHEMA: Schema = {
    "type": "string",
    "pattern": f"^(?:{REF_SPELLING})$",
    "description": "a CID (CIDv0 Qm..., CIDv1 base58btc z... or base32 b...) or a SHA3-256 hex",
}
CID_SCHEMA: Schema = {
    "type": "string",
    "pattern": f"^(?:{CID_SPELLING})$",
    "description": "a CID: CIDv0 Qm..., CIDv1 base58btc z... or base32 b...",
}
CONTENT_ID_SCHEMA: Schema = {
    "type": "string",
    "pattern": f"^{CONTENT_ID_PATTERN}$",
    "description": "SHA3-256 hex",
}
# Every path parameter, by name: the document never says a bare string where a handler wants more.
PATH_PARAMETERS: dict[str, Schema] = {
    "ref": REF_SCHEMA,
    "id": {**REF_SCHEMA, "description": "the recipe's CID or SHA3-256 hex"},
    "cid": CID_SCHEMA,
    "run_id": {"type": "string", "pattern": f"^{RUN_ID_PATTERN}$"},
    "job_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
}
OUTPUT_NAME_SCHEMA: Schema = {"type": "string", "pattern": "^[^\\x00-\\x1f/\\\\]{1,128}$"}
INTEGER: Schema = {"type": "integer"}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
NULLABLE_SECONDS: Schema = {"type": ["number", "null"], "minimum": 0}
_USAGE: Schema = {
    "type": "object",
    "required": ["repo", "cache", "total"],
    "properties": {"repo": INTEGER, "cache": INTEGER, "budget": INTEGER, "total": INTEGER},
    "description": "bytes held by the IPFS repository and the local cache",
}
CALLBACK_SCHEMA: Schema = {
    "type": "string",
    "pattern": "^https?://[^/?#\\s]+",
    "maxLength": 2048,
    "description": "a URL that gets a signed POST of the run when it ends (ARTDAG_CALLBACK_HOSTS)",
}
PRIORITY_SCHEMA: Schema = {
    "type": "integer",
    "minimum": -10,
    "maximum": 10,
    "description": "a higher run's steps get free workers first (0 by default; above 0 needs the admin)",
}
STEP_PROGRESS: Schema = _object(
    [], {"frames": INTEGER, "total_frames": INTEGER, "percent": INTEGER, "eta_s": NULLABLE_SECONDS}
)
ERROR = ref("Error")
INPUT_REF: Schema = {"type": "string", "minLength": 1}
INPUTS: Schema = {
    "oneOf": [
        {"type": "array", "items": INPUT_REF},
        {"type": "object", "additionalProperties": INPUT_REF},
    ]
}

COMPONENTS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": _object(
                ["code", "message"],
                {"code": STRING, "message": STRING, "details": {"type": "object"}},
            )
        },
    },
    "Content": _object(
        ["cid", "content_id", "sha3_256", "size", "media_type", "created", "url"],
        {
            "cid": {**STRING, "description": "CIDv1, base32"},
            "content_id": CONTENT_ID_SCHEMA,
            "sha3_256": CONTENT_ID_SCHEMA,
            "size": {"type": "integer", "minimum": 1},
            "media_type": STRING,
            "created": {"type": "string", "format": "date-time"},
            "url": STRING,
            "name": {**STRING, "description": "its asset name, if it has one"},
        },
    ),
    "ContentPage": _items(ref("Content"), total=INTEGER, offset=INTEGER, limit=INTEGER),
    "ContentDeleted": _object(
        ["content_id", "cid", "deleted", "owners_left"],
        {"content_id": STRING, "cid": STRING, "deleted": {"type": "boolean"}, "owners_left": INTEGER},
    ),
    "MediaInfo": _object(
        ["kind", "format", "duration_s", "streams"],
        {
            "kind": {"enum": ["image", "video", "audio"]},
            "format": STRING,
            "duration_s": {"type": "number"},
            "width": {"type": ["integer", "null"]},
            "height": {"type": ["integer", "null"]},
            "fps": {**NULLABLE_STRING, "description": "a fraction, 30000/1001"},
            "sample_rate": {"type": ["integer", "null"]},
            "channels": {"type": ["integer", "null"]},
            "streams": {"type": "array", "items": _object(["index", "type", "codec"], {})},
        },
    ),
    "Probe": {"allOf": [ref("Content"), _object(["media"], {"media": ref("MediaInfo")})]},
    "Dependency": _object(
        ["healthy"],
        {
            "healthy": {"type": "boolean"},
            "error": STRING,
            "restoring": {"type": "boolean", "description": "Redis was emptied; the node is restoring"},
        },
    ),
    "Health": _object(
        ["status", "checks"],
        {"status": {"const": "ok"}, "checks": {"type": "object", "additionalProperties": ref("Dependency")}},
    ),
    "Info": _object(
        ["name", "version", "node_id", "redis", "ipfs"],
        {
            "name": STRING,
            "version": STRING,
            "node_id": {**STRING, "description": "did:key of the node's Ed25519 key"},
            "public_url": NULLABLE_STRING,
            "user": {
                "type": ["string", "null"],
                "description": "who the request's token or cookie is; null: not logged in",
            },
            "usage": {
                "oneOf": [{"type": "null"}, ref("Usage")],
                "description": "what the user stores and runs, against their limits; null: not logged in",
            },
            "redis": ref("Dependency"),
            "ipfs": ref("Dependency"),
        },
    ),
    "Usage": _object(
        ["stored_bytes", "quota_bytes", "unfinished_runs", "max_runs", "rate_limit"],
        {
            "stored_bytes": {
                "type": "integer",
                "minimum": 0,
                "description": "bytes of the content the user owns and of their kept runs' outputs, "
                "each once (shared content counts for each of its owners)",
            },
            "quota_bytes": {"type": ["integer", "null"], "description": "ARTDAG_QUOTA_BYTES; null: none"},
            "unfinished_runs": {
                "type": "integer",
                "minimum": 0,
                "description": "queued or running, cluster-wide",
            },
            "max_runs": {"type": ["integer", "null"], "description": "ARTDAG_MAX_RUNS_PER_USER; null: none"},
            "rate_limit": {**NULLABLE_STRING, "description": "ARTDAG_RATE_LIMIT on writes; null: none"},
        },
    ),
    "RunRequest": {
        "type": "object",
        "required": ["recipe"],
        "additionalProperties": False,
        "properties": {
            "recipe": {
                **STRING,
                "minLength": 1,
                "description": "a built-in effect name, or an uploaded recipe's name, id or CID",
            },
            "inputs": {
                "description": "refs (CID, SHA3-256 hex or asset name) in recipe order, or by variable name",
                **INPUTS,
            },
            "params": {
                "type": "object",
                "description": "a built-in effect's parameters (see GET /effects); the rest keep defaults",
            },
            "output_name": OUTPUT_NAME_SCHEMA,
            "priority": PRIORITY_SCHEMA,
            "callback": CALLBACK_SCHEMA,
        },
    },
    "BatchRequest": {
        "type": "object",
        "required": ["recipe", "items"],
        "additionalProperties": False,
        "properties": {
            "recipe": {
                **STRING,
                "minLength": 1,
                "description": "a built-in effect name, or an uploaded recipe's name, id or CID",
            },
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": BATCH_CEILING,
                "items": INPUTS,
                "description": "one run per item, each the inputs of POST /runs (at most ARTDAG_MAX_BATCH)",
            },
            "params": {
                "type": "object",
                "description": "a built-in effect's parameters (see GET /effects), for every run",
            },
            "output_name": {
                **OUTPUT_NAME_SCHEMA,
                "description": "each run's output name is it, then -1, -2, ...",
            },
            "priority": PRIORITY_SCHEMA,
            "callback": CALLBACK_SCHEMA,
        },
    },
    "Cluster": _object(
        ["nodes"],
        {
            "nodes": {
                "type": "array",
                "items": _object(
                    ["node", "seen", "seen_s", "state"],
                    {
                        "node": STRING,
                        "daemon": STRING,
                        "url": STRING,
                        "version": STRING,
                        "cpu": STRING,
                        "workers": _object(["busy", "total"], {"busy": INTEGER, "total": INTEGER}),
                        "steps": {
                            "type": "array",
                            "items": _object(
                                ["run", "step", "since"], {"run": STRING, "step": STRING, "since": STRING}
                            ),
                        },
                        "seen": STRING,
                        "seen_s": {"type": "number", "minimum": 0},
                        "state": {"enum": ["live", "silent"]},
                    },
                ),
            }
        },
    ),
    "BatchStarted": _object(["runs"], {"runs": {"type": "array", "items": ref("RunStarted")}}),
    "RecipeRunRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "inputs": INPUTS,
            "output_name": OUTPUT_NAME_SCHEMA,
        },
    },
    "Run": _object(
        ["run_id", "status", "recipe", "plan_id", "inputs", "owner", "created", "updated"],
        {
            "run_id": STRING,
            "status": {"enum": ["queued", "running", "completed", "failed", "cancelled"]},
            "recipe": _object(["name", "cid"], {"name": STRING, "cid": STRING}),
            "plan_id": STRING,
            "plan_cid": NULLABLE_STRING,
            "inputs": {
                "type": "array",
                "items": _object(["name", "content_id"], {"name": STRING, "content_id": STRING}),
            },
            "owner": STRING,
            "output_name": STRING,
            "created": STRING,
            "updated": STRING,
            "output": {"oneOf": [{"type": "null"}, ref("RunOutput")]},
            "provenance_cid": NULLABLE_STRING,
            "attestation_cid": {
                **STRING,
                "description": "its in-toto/SLSA attestation (DSSE), once completed",
            },
            "error": NULLABLE_STRING,
            "retry_of": {**STRING, "description": "the failed or cancelled run this one tries again"},
            "priority": PRIORITY_SCHEMA,
            "callback": CALLBACK_SCHEMA,
        },
    ),
    "RunOutput": _object(
        ["cid", "content_id", "media_type"],
        {"cid": STRING, "content_id": CONTENT_ID_SCHEMA, "media_type": STRING},
    ),
    "RunStarted": {"allOf": [ref("Run"), _object(["url", "events"], {"url": STRING, "events": STRING})]},
    "Step": _object(
        ["state"],
        {
            "state": {"enum": ["pending", "running", "cached", "done", "failed", "skipped", "unknown"]},
            "type": STRING,
            "config": {"type": "object", "description": "normalized: the parameters it runs with"},
            "inputs": {"type": "array", "items": STRING, "description": "the steps it reads"},
            "cache_id": NULLABLE_STRING,
            "cid": STRING,
            "error": STRING,
            "node": STRING,
            "fused": {"type": "array", "items": STRING, "description": "the recipe nodes a CHAIN covers"},
            "started": STRING,
            "finished": STRING,
            "queued_s": NULLABLE_SECONDS,
            "running_s": NULLABLE_SECONDS,
            "progress": STEP_PROGRESS,
            "log": {
                **STRING,
                "description": "the tail of what its tools said: each ffmpeg command, its warnings",
            },
        },
    ),
    "RunTimes": _object(
        ["queued_s", "running_s", "duration_s", "progress"],
        {
            "queued_s": NULLABLE_SECONDS,
            "running_s": NULLABLE_SECONDS,
            "duration_s": NULLABLE_SECONDS,
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "started": STRING,
            "finished": STRING,
        },
    ),
    "RunDetail": {
        "allOf": [
            ref("Run"),
            ref("RunTimes"),
            _object(["steps"], {"steps": {"type": "object", "additionalProperties": ref("Step")}}),
        ]
    },
    "RunListed": {"allOf": [ref("Run"), ref("RunTimes")]},
    "RunPage": _items(ref("RunListed"), offset=INTEGER, limit=INTEGER),
    "RunEvent": {
        "description": "One Server-Sent Event of a run's stream: its kind, its id (for Last-Event-ID) "
        "and the event as JSON",
        **_object(
            ["event", "id", "data"],
            {
                "event": {"enum": list(EVENT_KINDS)},
                "id": {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": _object(["kind"], {"kind": {"enum": list(EVENT_KINDS)}}),
                },
            },
        ),
    },
    "Deleted": _object(
        ["deleted"],
        {"deleted": STRING, "removed": {"type": "array", "items": STRING, "description": "CIDs unpinned"}},
    ),
    "ActivityList": _items(
        _object(
            ["id", "kind", "who", "at", "cids"],
            {
                "id": STRING,
                "kind": STRING,
                "who": STRING,
                "at": STRING,
                "cids": {"type": "array", "items": STRING},
            },
        )
    ),
    "Effect": _object(
        ["name", "version", "hash", "params"],
        {
            "name": STRING,
            "version": STRING,
            "hash": STRING,
            "description": STRING,
            "params": {"type": "object"},
        },
    ),
    "EffectList": _items(ref("Effect")),
    "AssetList": _items(ref("Content")),
    "RecipeSummary": _object(
        ["id", "cid", "name", "nodes", "output"],
        {
            "id": STRING,
            "cid": STRING,
            "name": STRING,
            "version": {"type": ["string", "null"]},
            "description": {"type": ["string", "null"]},
            "owner": STRING,
            "content_id": STRING,
            "variables": {"type": "array", "items": STRING},
            "nodes": {"type": "array", "items": _object(["id", "type", "inputs"], {})},
            "output": STRING,
        },
    ),
    "Recipe": {"allOf": [ref("RecipeSummary"), _object(["yaml"], {"yaml": STRING})]},
    "RecipePage": _items(_object(["id", "cid"], {"id": STRING, "cid": STRING})),
    "RevokeRequest": {
        "type": "object",
        "required": ["token"],
        "additionalProperties": False,
        "properties": {"token": {"type": "string", "minLength": 1, "maxLength": 8192}},
    },
    "RevokeUserRequest": {
        "type": "object",
        "required": ["user", "token"],
        "additionalProperties": False,
        "properties": {
            "user": {"type": "string", "pattern": f"^{USER_PATTERN}$", "description": "@name@l2-host"},
            "token": {
                "type": "string",
                "minLength": 1,
                "maxLength": 8192,
                "description": "a token the user's L2 confirms it issued to that user (revoked or not)",
            },
        },
    },
    "Revoked": _object(
        ["revoked"],
        {"revoked": {"type": "integer", "minimum": 0}, "user": STRING, "at": INTEGER},
    ),
    "Identity": _object(
        ["node_id", "public_key", "ipns_name", "peer_id", "url"],
        {
            "node_id": {
                "type": "string",
                "description": "did:key identifier (z6Mk...) of the node's Ed25519 key",
            },
            "public_key": {"type": "string", "description": "the raw 32-byte Ed25519 public key, base64"},
            "ipns_name": {
                "type": "string",
                "description": "the IPNS name the node's state is published under",
            },
            "peer_id": {"type": "string", "description": "the node's IPFS daemon's peer id"},
            "url": STRING,
        },
    ),
    "StateDocument": _object(
        [
            "kind",
            "version",
            "node_id",
            "public_key",
            "url",
            "ipns_name",
            "peer_id",
            "sequence",
            "published",
            "runs",
            "steps",
            "contents",
            "signer",
            "signature",
        ],
        {
            "kind": {"const": "artdag/state"},
            "version": {"const": 1},
            "node_id": STRING,
            "public_key": STRING,
            "url": STRING,
            "ipns_name": STRING,
            "peer_id": STRING,
            "sequence": {"type": "integer", "minimum": 1, "description": "only grows"},
            "published": STRING,
            "runs": {"type": "string", "description": "CID of the runs index document"},
            "steps": {"type": "string", "description": "CID of the step index document"},
            "contents": {"type": "string", "description": "CID of the content index document"},
            "signer": STRING,
            "signature": STRING,
        },
    ),
    "PeerList": _items(
        _object(
            [
                "node_id",
                "urls",
                "ipns_names",
                "sequence",
                "published",
                "synced",
                "source",
                "steps",
                "error",
                "error_at",
            ],
            {
                "node_id": STRING,
                "urls": {"type": "array", "items": STRING},
                "ipns_names": {"type": "array", "items": STRING},
                "sequence": {"type": ["integer", "null"], "description": "of the last state merged"},
                "published": NULLABLE_STRING,
                "synced": {"type": ["string", "null"], "description": "when it was merged"},
                "source": {"type": ["string", "null"], "description": "pubsub, a URL or /ipns/NAME"},
                "steps": {"type": "integer", "description": "step entries taken from that state"},
                "error": {"type": ["string", "null"], "description": "the last problem with this peer"},
                "error_at": NULLABLE_STRING,
            },
        )
    ),
    "SignedRecord": {
        **_object(["cid", "record"], {"cid": STRING, "record": {"type": "object"}}),
        "description": "a record signed by a node (RFC 8785 canonical JSON, Ed25519), with its CID; "
        "see docs/cooperation.md 'Provenance'",
    },
    "DsseEnvelope": {
        **_object(
            ["payload", "payloadType", "signatures"],
            {
                "payload": {**STRING, "contentEncoding": "base64", "description": "the in-toto Statement v1"},
                "payloadType": {"const": "application/vnd.in-toto+json"},
                "signatures": {
                    "type": "array",
                    "minItems": 1,
                    "items": _object(
                        ["keyid", "sig"],
                        {
                            "keyid": {**STRING, "description": "the signing node's did:key"},
                            "sig": {
                                **STRING,
                                "contentEncoding": "base64",
                                "description": "Ed25519 over the PAE",
                            },
                        },
                    ),
                },
            },
        ),
        "description": "a DSSE envelope holding an in-toto Statement v1 with a SLSA Provenance v1 predicate; "
        "see docs/cooperation.md 'Attestations (in-toto / SLSA)'",
    },
    "Verdict": _object(
        ["cid", "ok", "trusted", "problems"],
        {
            "cid": STRING,
            "ok": {"type": "boolean"},
            "signer": NULLABLE_STRING,
            "trusted": {"type": "array", "items": STRING},
            "problems": {"type": "array", "items": STRING},
            "checked": {"type": "array", "items": STRING},
            "evicted": {
                "type": "array",
                "items": STRING,
                "description": "intermediate outputs the disk budget evicted; their receipts verify",
            },
        },
    ),
    "Reexecution": _object(
        ["id", "url", "provenance", "state", "started_at", "progress", "summary", "steps"],
        {
            "id": STRING,
            "url": STRING,
            "provenance": {**STRING, "description": "the provenance record's CID"},
            "state": {"enum": ["running", "done", "failed"]},
            "started_at": STRING,
            "finished_at": STRING,
            "progress": _object(["done", "total"], {"done": INTEGER, "total": INTEGER}),
            "summary": {"type": "object", "additionalProperties": INTEGER},
            "steps": {"type": "array", "items": ref("StepVerdict")},
            "record_cid": {**STRING, "description": "the signed artdag/reexecution record (once done)"},
            "error": {**STRING, "description": "why it failed (once failed)"},
        },
    ),
    "StepVerdict": _object(
        ["step", "cache_id", "type", "verdict", "inputs"],
        {
            "step": STRING,
            "cache_id": STRING,
            "type": STRING,
            "verdict": {"enum": ["reproduced", "different", "not reproducible here"]},
            "inputs": {"enum": ["recorded", "re-executed"]},
            "recorded": _object(["cid", "sha3_256"], {"cid": STRING, "sha3_256": STRING}),
            "reexecuted": _object(["cid", "sha3_256"], {"cid": STRING, "sha3_256": STRING}),
            "reason": STRING,
        },
    ),
    "Storage": _object(
        ["budget", "usage", "last_collection"],
        {
            "budget": {"type": "integer", "minimum": 0, "description": "bytes; 0: no budget"},
            "interval_s": {"type": "number"},
            "usage": _USAGE,
            "last_collection": {"oneOf": [{"type": "null"}, ref("Collection")]},
        },
    ),
    "Collection": _object(
        ["reason", "started", "seconds", "budget", "before", "after", "reclaimed", "evicted_steps"],
        {
            "reason": {"enum": ["budget", "requested"]},
            "started": STRING,
            "seconds": {"type": "number", "minimum": 0},
            "budget": {"type": "integer", "minimum": 0},
            "before": _USAGE,
            "after": _USAGE,
            "reclaimed": {"type": "integer", "minimum": 0},
            "over_budget": {"type": "integer", "minimum": 0},
            "evicted_steps": {"type": "integer", "minimum": 0},
            "evicted": {
                "type": "array",
                "items": _object(
                    ["cid", "cache_ids", "size"],
                    {"cid": STRING, "cache_ids": {"type": "array", "items": STRING}, "size": INTEGER},
                ),
            },
            "cache_files_removed": {"type": "integer", "minimum": 0},
            "kept": {"type": "object", "additionalProperties": INTEGER},
        },
    ),
}
