"""Operations endpoints: liveness, readiness, the bundled API docs assets, and the docs
page's security headers."""

from __future__ import annotations

import base64
import hashlib
import logging
import re

from flask import Blueprint, Response, jsonify, request, send_from_directory
from sqlalchemy import text
from swagger_ui_bundle import swagger_ui_path

from service.infra.db import db
from service.infra.redis import REDIS_ERRORS, redis_handle

log = logging.getLogger(__name__)

blp = Blueprint("ops", __name__)
DOCS_ASSETS_URL = "/api/v1/docs/assets/"
DOCS_ASSETS_MAX_AGE_SECONDS = 24 * 3600
# flask-smorest's Swagger UI page (OPENAPI_SWAGGER_UI_PATH), served by its doc blueprint.
DOCS_PAGE_ENDPOINT = "api-docs.openapi_swagger_ui"
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)
# Swagger UI's scripts and styles come from DOCS_ASSETS_URL, its icons are data: URIs in
# its stylesheet, and "Try it out" fetches this origin.
DOCS_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self' {inline}",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))


@blp.get("/healthz")
def healthz():
    """200 while the process runs."""
    return jsonify(status="ok")


@blp.get("/readyz")
def readyz():
    """200 when the database answers (Redis down is `degraded`); 503 without a database."""
    database = "ok"
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as error:  # any failure means "not ready"; the reason is logged
        log.warning("readiness: database unavailable (%s)", type(error).__name__)
        db.session.rollback()
        database = "down"
    finally:
        db.session.remove()
    redis = "ok"
    try:  # a probe, not a fallback: it reports the outage rather than working around it
        redis_handle().client.ping()
    except REDIS_ERRORS as error:
        log.warning("readiness: Redis unavailable (%s)", type(error).__name__)
        redis = "degraded"
    if database != "ok":
        return jsonify(status="unavailable", database=database, redis=redis), 503
    status = "ok" if redis == "ok" else "degraded"
    return jsonify(status=status, database=database, redis=redis)


@blp.get(f"{DOCS_ASSETS_URL}<path:filename>")
def docs_asset(filename: str):
    """Swagger UI's files, from the swagger-ui-bundle package: the docs need no CDN."""
    return send_from_directory(swagger_ui_path, filename, max_age=DOCS_ASSETS_MAX_AGE_SECONDS)


@blp.after_app_request
def protect_docs_page(response: Response) -> Response:
    """Give the docs page a Content-Security-Policy and refuse framing or sniffing it."""
    if request.endpoint != DOCS_PAGE_ENDPOINT:
        return response
    response.headers["Content-Security-Policy"] = DOCS_POLICY.format(
        inline=" ".join(_script_hashes(response.get_data()))
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _script_hashes(page: bytes) -> list[str]:
    """CSP hashes of the page's inline scripts."""
    # flask-smorest's template starts Swagger UI in an inline script without a nonce; it
    # is rendered from the app's own settings (no request data), so hashing what was
    # rendered allows exactly that script and no injected one.
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(page)
    ]
