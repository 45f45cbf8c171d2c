"""The Flask class of the service."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable

from flask import Flask


class Pollbox(Flask):
    """Flask, remembering which hooks and views are plain functions.

    Flask asks `inspect.iscoroutinefunction` about every hook and the view on every
    request (16 times for embed.js), about a tenth of the work of an answer without I/O.
    A function's answer never changes; it is kept for as long as the function lives."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._plain_functions: weakref.WeakSet = weakref.WeakSet()

    def ensure_sync(self, func: Callable) -> Callable:
        if func in self._plain_functions:
            return func
        ensured = super().ensure_sync(func)
        if ensured is func:
            with contextlib.suppress(TypeError):  # not weakly referable: asked every time
                self._plain_functions.add(func)
        return ensured
