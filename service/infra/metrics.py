"""Prometheus metrics and the `/metrics` endpoint.

Under gunicorn every worker is its own process: with PROMETHEUS_MULTIPROC_DIR set
(deploy/gunicorn.conf.py sets it), prometheus_client keeps each process's values in
files there and `/metrics` adds them up, so any worker answers for all of them.
prometheus_client reads that variable when it is first imported: set it before.
"""

from __future__ import annotations

import json
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from service.infra.errors import PROBLEM_MIMETYPE

VOTE_ENDPOINT = "votes.Votes"
# Seconds; from a Redis round trip to a slow export's first byte.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED_ENDPOINT = "unmatched"

VOTES = Counter(
    "pollbox_votes",
    "Votes answered, by outcome (accepted or rejected) and problem code (`none` if accepted).",
    ["outcome", "code"],
)
REQUEST_LATENCY = Histogram(
    "pollbox_request_duration_seconds",
    "Time to produce an answer's status and headers (a stream's body is not included).",
    ["endpoint", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
BALLOT_BATCHES = Histogram(
    "pollbox_ballot_batch_size",
    "Ballots written per database commit: concurrent votes of a process share one "
    "(service/voting/records.py, group commit); 1 for a ballot written alone.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
REDIS_FALLBACKS = Counter(
    "pollbox_redis_fallbacks",
    "Redis calls that failed, so the service fell back on the database (or skipped a count).",
    ["operation"],
)
# For the tallies stream: `SSE_STREAMS.inc()` when a stream opens, `.dec()` when it ends.
SSE_STREAMS = Gauge(
    "pollbox_sse_streams_open",
    "Server-sent event streams open now, summed over the live worker processes.",
    multiprocess_mode="livesum",
)
DEAD_CLAIMS_RELEASED = Counter(
    "pollbox_dead_claims_released",
    "Duplicate-check claims of votes whose process died before their ballot was recorded, "
    "released so that the voter's retry is admitted.",
)
CHALLENGE_SWITCHES = Counter(
    "pollbox_challenge_switches",
    "`auto` polls' proof-of-work challenge switched `on` (the poll looks attacked) or "
    "`off` (after its quiet period).",
    ["to"],
)
CAPTCHA_CHECKS = Counter(
    "pollbox_captcha_checks",
    "Third-party captcha tokens checked with their provider (CAPTCHA_PROVIDER), by "
    "verdict: passed, failed, or unreachable (the provider did not answer in time).",
    ["provider", "verdict"],
)
RETENTION_PURGED = Counter(
    "pollbox_retention_purged_ballots",
    "Ballots whose identifying fields were purged after their poll's retention_days.",
)
RECONCILE_RUNS = Counter(
    "pollbox_reconcile_runs",
    "Reconciliation runs, by how they ended (`ok` or `failed`).",
    ["result"],
)
RECONCILE_DRIFT = Counter(
    "pollbox_reconcile_drift",
    "Tallies found differing from the database (`mismatch`) or absent (`missing`) and rebuilt.",
    ["kind"],
)

blp = Blueprint("metrics", __name__)


@blp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format: this process's metrics, or every worker's in multiprocess mode."""
    registry = REGISTRY
    if current_app.config.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


# The histogram's child per (endpoint, method, status): `.labels()` takes a lock and builds
# the key on each call; the child it returns for the same labels is always the same one.
_latency_children: dict[tuple[str, str, int], object] = {}


def latency_child(endpoint: str, method: str, status: int):
    """REQUEST_LATENCY's child for these labels, looked up once per process."""
    key = (endpoint, method, status)
    child = _latency_children.get(key)
    if child is None:
        child = _latency_children[key] = REQUEST_LATENCY.labels(endpoint, method, str(status))
    return child


def _observe(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    req = request._get_current_object()  # one context lookup instead of one per use
    endpoint = req.endpoint or UNMATCHED_ENDPOINT
    method = req.method
    if started is not None and endpoint != "metrics.metrics":
        latency_child(endpoint, method, response.status_code).observe(
            time.perf_counter() - started
        )
    if endpoint == VOTE_ENDPOINT and method == "POST":
        if response.status_code == 201:
            VOTES.labels("accepted", "none").inc()
        else:
            VOTES.labels("rejected", problem_code(response)).inc()
    return response


def problem_code(response: Response) -> str:
    """The `code` of a problem+json answer, or the status when there is none."""
    if response.mimetype == PROBLEM_MIMETYPE and not response.is_streamed:
        try:
            code = json.loads(response.get_data()).get("code")
        except (ValueError, AttributeError):
            code = None
        if isinstance(code, str):
            return code
    return str(response.status_code)


def init_app(app: Flask) -> None:
    app.register_blueprint(blp)
    app.before_request(_start_timer)
    app.after_request(_observe)
