"""The Flask class of the service."""

from __future__ import annotations

import contextlib
import io
import weakref
from collections.abc import Callable

from flask import Flask, Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter
from werkzeug.utils import cached_property

# Poll, vote and webhook ids and receipts: URL-safe and short. A longer or stranger path
# segment is a 404 from routing, before any database or Redis work.
ID_MAX_LENGTH = 64
ID_PATTERN = rf"[A-Za-z0-9_-]{{1,{ID_MAX_LENGTH}}}"


class IdConverter(BaseConverter):
    """`<id:name>`: a path segment of ID_PATTERN."""

    regex = ID_PATTERN


class PollboxRequest(Request):
    """Flask's request, with chunked bodies held to MAX_CONTENT_LENGTH as sized ones are.

    For a body without Content-Length, werkzeug stops reading at the limit and hands on
    the first MAX_CONTENT_LENGTH bytes as if they were all: a too-large body became a
    truncated one (a 400 "not valid JSON", or worse, a form missing its end). Here such a
    body is read up to one byte past the limit: over it is a 413, as for a sized body."""

    @property
    def asks_fresh(self) -> bool:
        """`Cache-Control: no-cache` (or `Pragma: no-cache`, as a browser's reload sends):
        the answer must come from no cache, the process's own included."""
        headers = self.headers
        return "no-cache" in headers.get("Cache-Control", "") or \
            "no-cache" in headers.get("Pragma", "")

    @cached_property
    def stream(self):
        limit, environ = self.max_content_length, self.environ
        if self.content_length is None and limit is not None \
                and environ.get("wsgi.input_terminated"):
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                raise RequestEntityTooLarge()
            return io.BytesIO(body)
        return super().stream


class Pollbox(Flask):
    """Flask, remembering which hooks and views are plain functions.

    Flask asks `inspect.iscoroutinefunction` about every hook and the view on every
    request (16 times for embed.js), about a tenth of the work of an answer without I/O.
    A function's answer never changes; it is kept for as long as the function lives."""

    request_class = PollboxRequest

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.url_map.converters["id"] = IdConverter
        self._plain_functions: weakref.WeakSet = weakref.WeakSet()

    def ensure_sync(self, func: Callable) -> Callable:
        if func in self._plain_functions:
            return func
        ensured = super().ensure_sync(func)
        if ensured is func:
            with contextlib.suppress(TypeError):  # not weakly referable: asked every time
                self._plain_functions.add(func)
        return ensured
