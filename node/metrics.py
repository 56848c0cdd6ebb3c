"""The node's metrics, exported in the Prometheus text format at ``GET /metrics``.

One :class:`Metrics` per node, each with its own ``CollectorRegistry`` rather than
prometheus_client's global one: tests and benches run several nodes in one process, and each
node's counters must be its own. ``Node.open`` creates it and hands it to the parts that count
(Redis client, IPFS client, scheduler, runs, publisher, peers, HTTP); a part built alone (a
test's scheduler) gets a fresh one of its own. Names follow Prometheus' conventions: an
``artdag_`` prefix, the unit last (``_seconds``, ``_bytes``), counters ending ``_total``; labels
take values from small fixed sets only (node types, RPC endpoints, Redis commands, route
templates), never ids or paths. docs/operations.md "Metrics" lists each one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

# No ``_created`` series beside each counter and histogram: they double what a scrape carries,
# and Prometheus reads a counter's reset from its value. (The library's switch is process-wide.)
disable_created_metrics()  # type: ignore[no-untyped-call]

# generate_latest writes the 0.0.4 text format; the library's CONTENT_TYPE_LATEST names 1.0.0.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNMATCHED_ROUTE = "unmatched"  # the route label of a request no route matched (404, 405)
# A step takes from milliseconds (a cache-sized image) to many minutes (a 4K segment).
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Redis and IPFS calls: well under a millisecond on loopback, seconds when something is wrong.
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
GC_KINDS = ("step", "cache_file")  # what garbage collection evicts


class Metrics:
    """Every metric of one node, on a registry of its own (``registry``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._steps()
        self._workers()
        self._calls()
        self._http()
        self._federation()
        self._gc()

    def _counter(self, name: str, help_text: str, *labels: str) -> Counter:
        return Counter(name, help_text, labels, registry=self.registry)  # exported as NAME_total

    def _gauge(self, name: str, help_text: str) -> Gauge:
        return Gauge(name, help_text, registry=self.registry)

    def _histogram(self, name: str, help_text: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
        return Histogram(name, help_text, labels, buckets=buckets, registry=self.registry)

    def _steps(self) -> None:
        self.steps_executed = self._counter(
            "artdag_steps_executed", "Steps this node computed and committed", "type"
        )
        self.steps_cached = self._counter(
            "artdag_steps_cached",
            "Steps reused without computing: found in the step index, computed for another run, "
            "or adopted from a trusted peer",
            "type",
        )
        self.steps_failed = self._counter(
            "artdag_steps_failed", "Attempts of a step that failed on their own", "type"
        )
        self.steps_fenced = self._counter(
            "artdag_steps_fenced",
            "Steps whose output this node discarded: its claim was lost while computing, or it was "
            "fenced at commit",
            "type",
        )
        self.claim_takeovers = self._counter(
            "artdag_claim_takeovers", "Claims this node took over after the holder's lease lapsed"
        )
        self.step_duration = self._histogram(
            "artdag_step_duration_seconds",
            "Time to compute a step this node executed, from its claim to its commit",
            STEP_BUCKETS,
            "type",
        )

    def _workers(self) -> None:
        self.ready_steps = self._gauge(
            "artdag_ready_steps", "Steps whose inputs are done, waiting here for a free worker"
        )
        self.active_runs = self._gauge("artdag_active_runs", "Runs this node is working on now")
        self.workers_busy = self._gauge("artdag_workers_busy", "Step workers computing a step now")
        self.workers_total = self._gauge("artdag_workers", "Step workers of this node (ARTDAG_WORKERS)")

    def _calls(self) -> None:
        self.ipfs_latency = self._histogram(
            "artdag_ipfs_request_duration_seconds",
            "Time until the IPFS daemon's answer began (status and headers), by RPC endpoint",
            CALL_BUCKETS,
            "endpoint",
        )
        self.ipfs_errors = self._counter(
            "artdag_ipfs_errors", "IPFS calls that failed, by RPC endpoint and error code", "endpoint", "code"
        )
        self.redis_latency = self._histogram(
            "artdag_redis_command_duration_seconds",
            "Round trip of a Redis command (a pipeline counts once, as 'pipeline')",
            CALL_BUCKETS,
            "command",
        )
        self.redis_errors = self._counter(
            "artdag_redis_errors", "Redis commands that failed, by command", "command"
        )

    def _http(self) -> None:
        self.http_requests = self._counter(
            "artdag_http_requests",
            "HTTP requests answered, by route template, method and status",
            "route",
            "method",
            "status",
        )
        self.http_duration = self._histogram(
            "artdag_http_request_duration_seconds",
            "Time to answer an HTTP request (a streamed answer: until its last byte), by route template",
            HTTP_BUCKETS,
            "route",
            "method",
        )
        self.uploaded_bytes = self._counter(
            "artdag_uploaded_bytes", "Bytes of content stored by uploads (POST /cache/upload)"
        )
        self.served_bytes = self._counter(
            "artdag_served_bytes", "Bytes of content sent to clients (GET /cache/{ref})"
        )

    def _federation(self) -> None:
        self.states_published = self._counter(
            "artdag_states_published", "State documents this node published"
        )
        self.peer_merges = self._counter(
            "artdag_peer_merges", "Trusted peers' states merged into this node's Redis"
        )

    def _gc(self) -> None:
        # Counted by the disk budget's garbage collection (node.executor.garbage).
        self.gc_runs = self._counter("artdag_gc_runs", "Garbage collections run")
        self.gc_reclaimed_bytes = self._counter("artdag_gc_reclaimed_bytes", "Bytes garbage collection freed")
        self.gc_evicted = self._counter(
            "artdag_gc_evicted", "Items garbage collection evicted, by kind (step, cache_file)", "kind"
        )
        for kind in GC_KINDS:  # shown at 0 before the first collection, for dashboards
            self.gc_evicted.labels(kind)
        self.gc_duration = self._histogram(
            "artdag_gc_duration_seconds", "How long each garbage collection took", STEP_BUCKETS
        )
        self.disk_used = Gauge(
            "artdag_disk_used_bytes",
            "What the IPFS repository (part=repo) and the local cache (part=cache) held at the last look",
            ["part"],
            registry=self.registry,
        )
        self.disk_budget = self._gauge("artdag_disk_budget_bytes", "ARTDAG_DISK_BUDGET (0: no budget)")

    def watch(
        self,
        *,
        ready_steps: Callable[[], float],
        active_runs: Callable[[], float],
        workers_busy: Callable[[], float],
        workers_total: Callable[[], float],
    ) -> None:
        """Read the gauges from these functions at each scrape (on the event loop's thread:
        the handler renders there), so nothing has to keep them up to date."""
        self.ready_steps.set_function(ready_steps)
        self.active_runs.set_function(active_runs)
        self.workers_busy.set_function(workers_busy)
        self.workers_total.set_function(workers_total)

    @contextlib.contextmanager
    def redis_call(self, command: str, expected: tuple[type[Exception], ...] = ()) -> Iterator[None]:
        """Time one Redis command (or pipeline) and count it if it fails, unless the failure
        is one of ``expected`` (part of the client's own protocol)."""
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            if not isinstance(exc, expected):
                self.redis_errors.labels(command).inc()
            raise
        finally:
            self.redis_latency.labels(command).observe(time.perf_counter() - started)

    def render(self) -> bytes:
        """The text exposition of every metric (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
