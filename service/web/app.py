"""The Flask class of the service."""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable
from types import CodeType

from flask import Flask, Request
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter
from werkzeug.utils import cached_property

# Poll, vote and webhook ids and receipts: URL-safe and short. A longer or stranger path
# segment is a 404 from routing, before any database or Redis work.
ID_MAX_LENGTH = 64
ID_PATTERN = rf"[A-Za-z0-9_-]{{1,{ID_MAX_LENGTH}}}"
# A function whose code has one of these is a coroutine function (async def, or a
# generator-based coroutine): Flask runs it through asgiref.
_COROUTINE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE


class IdConverter(BaseConverter):
    """`<id:name>`: a path segment of ID_PATTERN."""

    regex = ID_PATTERN


class Parameters(ImmutableMultiDict):
    """werkzeug's query, form fields and cookies, whose `get` of an absent name raises and
    catches a BadRequestKeyError inside: a dozen times per widget read (its display and
    state parameters, mostly absent, and the voter cookie), about a tenth of its view.
    Here an absent name is a lookup."""

    def get(self, key, default=None, type=None):
        if key not in self:
            return default
        return super().get(key, default, type)


class PollboxRequest(Request):
    """Flask's request, with chunked bodies held to MAX_CONTENT_LENGTH as sized ones are
    and cheap lookups of absent parameters (Parameters).

    For a body without Content-Length, werkzeug stops reading at the limit and hands on
    the first MAX_CONTENT_LENGTH bytes as if they were all: a too-large body became a
    truncated one (a 400 "not valid JSON", or worse, a form missing its end). Here such a
    body is read up to one byte past the limit: over it is a 413, as for a sized body."""

    parameter_storage_class = dict_storage_class = Parameters  # query, form; cookies

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
    """Flask, telling plain functions from coroutine functions by their code's flags.

    Flask asks `inspect.iscoroutinefunction` about every hook and the view on every
    request (about twenty times for a tallies read), a tenth of the work of an answer
    without I/O. A function or method whose code is not a coroutine's is passed through
    as it is, as Flask would; anything else is Flask's to decide."""

    request_class = PollboxRequest

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.url_map.converters["id"] = IdConverter

    def ensure_sync(self, func: Callable) -> Callable:
        code = getattr(func, "__code__", None)
        if type(code) is CodeType and not code.co_flags & _COROUTINE_FLAGS:
            return func
        return super().ensure_sync(func)
