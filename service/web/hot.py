"""Public reads answered again from memory, without Flask's request cycle.

A read of public tallies asked again and again (every visitor's page polls the same
poll) has the same answer until a vote or a change of the poll, and the process knows
when that is: its tallies cache hears every change (tallies/recent.py). A view whose
answer depends on nothing of the request but its address and `ANSWER_INPUTS` offers it
(`keep`), with a test of whether it still holds; this middleware keeps the whole answer,
status, headers and body, as the request cycle made it (CORS, security headers and all),
and answers the same read with those bytes while the test says yes.

A replayed answer is still a request of the operations contract: its own `X-Request-ID`,
its log line and its latency in the metrics, as the request cycle writes them (one
function each, shared). Never kept: an answer to a request with credentials or asking
past caches (`PERSONAL_INPUTS`), an answer that sets a cookie, any status but 200 and
304. A read that misses, or whose answer no longer holds, goes through Flask as ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from flask import Flask, current_app, request
from werkzeug.http import http_date

from service.infra import logs, metrics
from service.infra.clock import PerSecond
from service.infra.kept import Kept
from service.infra.models import next_change_at
from service.tallies import recent

# What a kept answer may depend on, besides the state its test watches: the WSGI
# environ's entries that make up the request's address and the headers that shape a
# public answer. Two requests equal in all of these get the same answer.
ANSWER_INPUTS = (
    "PATH_INFO", "QUERY_STRING", "SCRIPT_NAME", "wsgi.url_scheme", "HTTP_HOST",
    "SERVER_NAME", "SERVER_PORT", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT", "HTTP_ORIGIN", "HTTP_IF_NONE_MATCH", "HTTP_ACCEPT",
    "HTTP_ACCEPT_LANGUAGE",
    # No kept answer reads these today (no Last-Modified, no ranges): keyed all the same,
    # so that a view that comes to read them cannot be answered another request's answer.
    "HTTP_IF_MODIFIED_SINCE", "HTTP_RANGE", "HTTP_IF_RANGE",
)
# A request with any of these is answered by the request cycle, and its answer not kept:
# who is asking (an owner's key, a console session, a voter's cookie) or a reader asking
# past every cache (`Cache-Control: no-cache`, `Pragma: no-cache`).
PERSONAL_INPUTS = ("HTTP_AUTHORIZATION", "HTTP_COOKIE", "HTTP_CACHE_CONTROL", "HTTP_PRAGMA")
KEEPABLE_STATUSES = (200, 304)
# At most this many answers of at most this size: 8 MiB at the very worst, a few hundred
# kilobytes for tallies of a few hundred polls (about 1 KiB each).
KEPT_ANSWERS = 512
KEPT_BODY_MAX_BYTES = 16 * 1024
OFFER = "pollbox.hot.offers"  # the environ entry (a list) a view offers its answer in
EXTENSION = "pollbox.hot_answers"


@dataclass(frozen=True, slots=True)
class KeptAnswer:
    status: str  # "200 OK"
    status_code: int
    headers: tuple[tuple[str, str], ...]  # all but X-Request-ID and Date
    dated: bool  # the answer had a Date (werkzeug's conditional answers): a new one each time
    body: bytes
    holds: Callable[[], bool]
    endpoint: str  # the metrics' label
    path: str  # the log line's


def keep(holds: Callable[[], bool]) -> None:
    """Offer this request's answer for the same reads to come, while `holds()` says yes.
    Call it only where the answer depends on nothing of the request but ANSWER_INPUTS
    and on nothing of the world that `holds` does not watch (the time included)."""
    offers = request.environ.get(OFFER)
    if offers is not None:
        offers.append((holds, request.endpoint, logs.logged_path()))


def keep_while_unchanged(poll, context: str | None, entry: recent.Entry,
                         moment: datetime) -> None:
    """Offer an answer made from the poll and its tally `entry` (TallyRead.entry) alone,
    at `moment`: while the entry is the one the worker's tallies cache trusts, and until
    the clock alone changes the poll (opening, closing, a proof of work period ending)."""
    tally_holds = recent.cache().holds(poll.id, context, entry)
    until = next_change_at(poll, moment)
    if until is None:
        keep(tally_holds)
        return
    clock = current_app.config["CLOCK"]
    keep(lambda: tally_holds() and clock() < until)


class HotAnswers:
    """The WSGI middleware: the app's answers offered with `keep`, replayed.

    A GET costs it a few dictionary lookups until its path has offered an answer once
    (the paths are remembered, as many as the answers): only then does it work out the
    request's key, look for a kept answer and, missing, watch the cycle's answer."""

    def __init__(self, wsgi_app: Callable) -> None:
        self.wsgi_app = wsgi_app
        self.kept: Kept[tuple, KeptAnswer] = Kept(KEPT_ANSWERS)
        self.offering: Kept[str, bool] = Kept(KEPT_ANSWERS)  # paths that offered

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "GET" or not environ.keys().isdisjoint(
                PERSONAL_INPUTS):
            return self.wsgi_app(environ, start_response)
        path = environ.get("PATH_INFO")
        if self.offering.get(path) is None:
            environ[OFFER] = offers = []
            chunks = self.wsgi_app(environ, start_response)
            if offers:
                self.offering.put(path, True)  # the next read of it is kept
            return chunks
        started = time.perf_counter()
        key = tuple(map(environ.get, ANSWER_INPUTS))
        kept = self.kept.get(key)
        if kept is not None and kept.holds():
            return self._replay(kept, environ, start_response, started)
        return self._answer(key, environ, start_response)

    def _replay(self, kept: KeptAnswer, environ: dict, start_response: Callable,
                started: float) -> list[bytes]:
        request_id = logs.request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        headers = [*kept.headers, (logs.REQUEST_ID_HEADER, request_id)]
        if kept.dated:
            headers.append(("Date", _http_date(int(time.time()))))
        start_response(kept.status, headers)
        seconds = time.perf_counter() - started
        metrics.latency_child(kept.endpoint, "GET", kept.status_code).observe(seconds)
        logs.log_answer("GET", kept.path, kept.status_code, request_id=request_id,
                        duration_ms=round(seconds * 1000, 2))
        return [kept.body]

    def _answer(self, key: tuple, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """The request cycle's answer, kept if its view offered it and it may be."""
        environ[OFFER] = offers = []
        started: list = []

        def start(status: str, headers: list, exc_info=None):
            started[:] = (status, headers)
            return start_response(status, headers, exc_info)

        chunks = self.wsgi_app(environ, start)
        if not offers or not started:
            return chunks
        status, headers = started
        status_code = int(status[:3])
        if status_code not in KEEPABLE_STATUSES or any(
                name.lower() == "set-cookie" for name, _value in headers):
            return chunks
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if len(body) <= KEPT_BODY_MAX_BYTES:
            holds, endpoint, path = offers[-1]
            per_answer = (logs.REQUEST_ID_HEADER.lower(), "date")
            self.kept.put(key, KeptAnswer(
                status=status, status_code=status_code, body=body, holds=holds,
                headers=tuple((name, value) for name, value in headers
                              if name.lower() not in per_answer),
                dated=any(name.lower() == "date" for name, _value in headers),
                endpoint=endpoint, path=path))
        return [body]


# `Sun, 06 Dec 2026 04:00:00 GMT`: this second's HTTP date, made once a second.
_http_date = PerSecond(http_date)


def init_app(app: Flask) -> None:
    """Answer kept public reads in front of everything else (ProxyFix included: the
    headers it reads are part of a kept answer's key)."""
    app.wsgi_app = app.extensions[EXTENSION] = HotAnswers(app.wsgi_app)
