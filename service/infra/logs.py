"""Logs: one JSON object per line (or plain text), each tagged with the request's id.

Modules log through `logging.getLogger(__name__)` as usual; the factory installs one
handler on the root logger. Every answer carries `X-Request-ID`: the caller's, when it
is 1..128 safe characters, else a new one. Lines never hold a client address, a cookie,
an API key or a query string: only the method and the path.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import threading
import time
from datetime import UTC, datetime

import orjson
from flask import Flask, Response, g, has_request_context, request

from service.infra.clock import PerSecond

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._~:+=/-]{1,128}")
LOG_FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Fields a request adds to its log lines, when set.
REQUEST_FIELDS = ("request_id", "method", "path", "status", "duration_ms")
REQUEST_LOGGER = "service.requests"
# URL variables that are secrets (a voter's receipt): logged as their name, never value.
SECRET_VIEW_ARGS = ("receipt",)

log = logging.getLogger(REQUEST_LOGGER)


class RequestContextFilter(logging.Filter):
    """Add the current request's id, method and path to every record logged during it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = getattr(record, "request_id", None) or g.get("request_id")
            record.method = getattr(record, "method", None) or request.method
            record.path = getattr(record, "path", None) or logged_path()
        elif not hasattr(record, "request_id"):
            record.request_id = None
        return True


# `2026-12-05T19:40:05`: a second's text, made once while the second lasts.
_utc_second = PerSecond(
    lambda second: datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        # ISO 8601 UTC in milliseconds, as datetime's isoformat() writes it: the fraction
        # of the second rounded to the microsecond (as datetime.fromtimestamp does), then
        # cut to the millisecond.
        fraction, whole = math.modf(record.created)
        second, micro = int(whole), round(fraction * 1_000_000)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
        entry = {
            "time": f"{_utc_second(second)}.{micro // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in REQUEST_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # orjson: one line is written per request; it is ~15x faster than json here.
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        return super().format(record)


class _PollboxHandler(logging.StreamHandler):
    """Marks the handler the factory installed, so a second app replaces it, not adds one."""


def configure(*, log_format: str, level: str) -> None:
    """Send the process's logs to stderr in the given format (once per process)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _PollboxHandler)]:
        root.removeHandler(handler)
    handler = _PollboxHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    handler.addFilter(RequestContextFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic announces each of its plugins at INFO whenever it is imported; not news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def logged_path() -> str:
    """The request's path with its secret URL variables replaced by their names."""
    req = request._get_current_object()
    path = req.path
    view_args = req.view_args
    if view_args:
        for name in SECRET_VIEW_ARGS:
            value = view_args.get(name)
            if value:
                path = path.replace(value, f"<{name}>")
    return path


def request_id_from(header: str | None) -> str:
    """The caller's request id if it is safe to log and echo, else a fresh one."""
    if header and REQUEST_ID_PATTERN.fullmatch(header):
        return header
    return os.urandom(16).hex()  # 32 hex characters, like a uuid4's; no object built


def _begin() -> None:
    ctx_g = g._get_current_object()
    ctx_g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    ctx_g.log_started = time.perf_counter()


class _RequestRecord(logging.LogRecord):
    """A request's log line. What LogRecord's constructor works out each time (this
    file's name and module, the level's name, the process) is the same for every request,
    and taken from a record made once per process (again after a fork): a fifth of the
    line's cost."""

    _made: dict | None = None

    def __init__(self, args: tuple, fields: dict) -> None:
        made = _RequestRecord._made
        if made is None:
            made = _RequestRecord._made = logging.LogRecord(
                REQUEST_LOGGER, logging.INFO, __file__, 0, "%s %s %s", (), None,
                func="_finish").__dict__
        self.__dict__.update(made)
        created = time.time()
        self.created = created
        self.msecs = int((created - int(created)) * 1000) + 0.0
        self.relativeCreated = (created - logging._startTime) * 1000
        self.thread = threading.get_ident()
        self.threadName = threading.current_thread().name
        self.args = args
        self.__dict__.update(fields)


os.register_at_fork(after_in_child=lambda: setattr(_RequestRecord, "_made", None))


def _finish(response: Response) -> Response:
    ctx_g = g._get_current_object()  # one context lookup instead of one per use
    request_id = ctx_g.get("request_id") or request_id_from(None)
    response.headers[REQUEST_ID_HEADER] = request_id
    started = ctx_g.get("log_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
    if log.isEnabledFor(logging.INFO):
        log_answer(request.method, logged_path(), response.status_code, request_id=request_id,
                   duration_ms=duration_ms)
    return response


def log_answer(method: str, path: str, status: int, *, request_id: str,
               duration_ms: float | None) -> None:
    """The request's one line: `GET /path 200` with its id and duration."""
    # The record is made here rather than by log.info(), which would first walk the stack
    # for the caller's file and line: no line shows them, and it cost ~4 µs.
    if log.isEnabledFor(logging.INFO):
        log.handle(_RequestRecord((method, path, status), {
            "request_id": request_id, "method": method, "path": path, "status": status,
            "duration_ms": duration_ms}))


def init_app(app: Flask, *, configure_logging: bool) -> None:
    """Tag requests with an id and log each answer; set up the process's logs if asked."""
    if configure_logging:
        configure(log_format=app.config["LOG_FORMAT"], level=app.config.get("LOG_LEVEL", "INFO"))
    app.before_request(_begin)
    app.after_request(_finish)
