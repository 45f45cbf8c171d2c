"""embed.js: the loader a host page includes, served as it was when the app started."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from flask import current_app, request
from werkzeug.http import http_date

from service.widgets.blueprint import blp

STATIC_DIR = Path(__file__).resolve().parent / "static"
EMBED_JS_EXTENSION = "pollbox.embed_js"
EMBED_JS_CACHE_SECONDS = 300
ETAG_HEX_CHARS = 32


@blp.get("/embed.js")
def embed_js():
    """The loader a host page includes: it turns its script tag into a sized iframe."""
    asset: StaticAsset = current_app.extensions[EMBED_JS_EXTENSION]
    response = current_app.response_class(asset.body, mimetype="text/javascript",
                                          headers=asset.headers)
    if "If-None-Match" in request.headers or "If-Modified-Since" in request.headers:
        return response.make_conditional(request)
    return response


@dataclass(frozen=True)
class StaticAsset:
    """A file served as it was when the app started: read, hashed and dated once."""

    body: bytes
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def load(cls, path: Path, *, max_age: int, cross_origin: bool) -> StaticAsset:
        body = path.read_bytes()
        headers = [
            ("Cache-Control", f"public, max-age={max_age}"),
            ("ETag", f'"{hashlib.sha256(body).hexdigest()[:ETAG_HEX_CHARS]}"'),
            ("Last-Modified", http_date(path.stat().st_mtime)),
        ]
        if cross_origin:
            headers += [("Cross-Origin-Resource-Policy", "cross-origin"),
                        ("Access-Control-Allow-Origin", "*")]
        return cls(body, tuple(headers))
