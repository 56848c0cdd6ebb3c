"""The document is the truth: schemathesis, against a real node process on real Redis and
IPFS with a token, checks every answer against /openapi.json.

Each operation is fuzzed with schema-valid (positive) and schema-violating (negative) data;
then a stateful run follows the document's links (upload, download, render, follow, cancel,
delete ...) through real flows. The checks, by their schemathesis names:

- ``not_a_server_error``: no 5xx;
- ``status_code_conformance``: every status is documented for its operation;
- ``content_type_conformance``, ``response_schema_conformance``,
  ``response_headers_conformance``: every answer has a documented type, body and headers;
- ``negative_data_rejection``: data the document says is invalid is refused (a 4xx).

One default check is left out: ``positive_data_acceptance`` ("schema-valid data is
accepted"). A ref's pattern says how a CID is spelled, not that it parses or that this node
holds it: ``b`` + base32 letters is valid by the pattern, and the node answers 400 (not a CID)
or 404 (not held), which is right.

The token is sent with every request, so no security parameters are generated (a case
"without Authorization" would reach the node with it). The stateful run sends schema-valid data
only: it is about flows; invalid data is the fuzzer's.

Two things the document cannot say are told to schemathesis: negative data may also be refused
with 413 (a body over its size limit: a token 8,193 characters long can be over 64 KiB of
JSON); and a multipart upload's fields are text on the wire, so its negative cases keep a
valid form and make the query (or path) invalid instead: a form field ``name`` generated as
``false`` arrives as the text ``false``, a valid name.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from node.pixels.imaging import png_bytes
from node.testing import NodeProcess

EXAMPLES_PER_OPERATION = 100  # for each of positive and negative data
STATEFUL_EXAMPLES, STATEFUL_STEPS = 150, 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
REJECTED = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]  # schemathesis' + 413
MULTIPART = "multipart/form-data"
FUZZ_SETTINGS = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
# Stateful scenarios are not shrunk (nor replayed): the node's state has moved on since.
STATEFUL_SETTINGS = settings(FUZZ_SETTINGS, phases=[Phase.generate], stateful_step_count=STATEFUL_STEPS)


def load_schema(node: NodeProcess, *, mode: str = "all") -> Any:
    """The node's document, for schemathesis; the token is the caller's to send (no security
    parameters are generated), and 413 counts as refusing negative data."""
    config = schemathesis.Config.from_dict(
        {
            "generation": {"with-security-parameters": False, "mode": mode},
            "checks": {"negative_data_rejection": {"expected-statuses": REJECTED}},
        }
    )
    return schemathesis.openapi.from_url(f"{node.url}/openapi.json", config=config)


def strategies(operation: Any) -> list[SearchStrategy[schemathesis.Case[Any]]]:
    """Positive cases, and negative ones where the operation takes anything to make invalid."""
    found = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
    if not (operation.definition.raw.get("parameters") or operation.body):
        return found
    if [alternative.media_type for alternative in operation.body] == [MULTIPART]:
        form = {"file": png_bytes(np.full((2, 2, 3), 90, np.uint8))}  # see the module's docstring
        found.append(
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE, body=form, media_type=MULTIPART)
        )
    else:
        found.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    return found


def test_api_survives_the_fuzzer(running_node: NodeProcess) -> None:
    """Every operation in the document, fuzzed; all failures reported together."""
    schema = load_schema(running_node)
    headers = {"Authorization": f"Bearer {running_node.token()}"}
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    started = time.monotonic()
    for operation in operations:
        for index, strategy in enumerate(strategies(operation)):

            @given(case=strategy)
            @settings(FUZZ_SETTINGS, max_examples=EXAMPLES_PER_OPERATION)
            def fuzz(case: schemathesis.Case[Any]) -> None:
                case.call_and_validate(headers=headers, timeout=30, checks=CHECKS)

            try:
                fuzz()
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failure is collected
                failures[f"{operation.label} ({('positive', 'negative')[index]})"] = str(exc)[:4000]
    print(f"fuzzed {len(operations)} operations in {time.monotonic() - started:.0f} s")
    assert not failures, "\n\n".join(f"{label}:\n{reason}" for label, reason in failures.items())


def test_api_flows_follow_the_documents_links(running_node: NodeProcess) -> None:
    """A stateful run: sequences of calls chained by the document's links (upload -> download,
    probe, render -> follow, cancel, provenance -> verify, delete ...), each answer checked.
    Failures are collected, not raised: a sequence replayed against a node whose state it
    changed (content already held, a run already deleted) takes other turns, which Hypothesis
    would report as a flaky test instead of the failure."""
    schema = load_schema(running_node, mode="positive")
    headers = {"Authorization": f"Bearer {running_node.token()}"}
    failures: dict[str, str] = {}
    calls: list[str] = []

    class Flows(schema.as_state_machine()):  # type: ignore[misc]
        scenarios = 0

        def teardown(self) -> None:
            type(self).scenarios += 1
            super().teardown()

        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"headers": headers, "timeout": 30}

        def validate_response(
            self, response: Any, case: schemathesis.Case[Any], additional_checks: Any = None, **kwargs: Any
        ) -> None:
            calls.append(f"{case.operation.label} {response.status_code}")
            try:
                case.validate_response(response, checks=CHECKS, headers=headers, transport_kwargs=kwargs)
            except (Exception, BaseExceptionGroup) as exc:  # a FailureGroup: each check that failed
                failures.setdefault(f"{case.operation.label} {response.status_code}", str(exc)[:4000])

    started = time.monotonic()
    for _ in range(STATEFUL_EXAMPLES):  # each try runs at least one scenario
        left = STATEFUL_EXAMPLES - Flows.scenarios
        if left <= 0:
            break
        try:
            Flows.run(settings=settings(STATEFUL_SETTINGS, max_examples=left))
        except Flaky:  # a replayed prefix met a node its earlier scenarios changed: go on
            continue
    assert Flows.scenarios >= STATEFUL_EXAMPLES
    print(f"stateful: {Flows.scenarios} scenarios, {len(calls)} calls in {time.monotonic() - started:.0f} s")
    print("\n".join(f"{count:4d} {call}" for call, count in sorted(Counter(calls).items())))
    assert not failures, "\n\n".join(f"{label}:\n{reason}" for label, reason in failures.items())
