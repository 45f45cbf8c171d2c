"""Operations endpoints: liveness, readiness, and the bundled API docs assets."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, send_from_directory
from sqlalchemy import text
from swagger_ui_bundle import swagger_ui_path

from service.infra.db import db
from service.infra.redis import REDIS_ERRORS, redis_handle

log = logging.getLogger(__name__)

blp = Blueprint("ops", __name__)
DOCS_ASSETS_URL = "/api/v1/docs/assets/"
DOCS_ASSETS_MAX_AGE_SECONDS = 24 * 3600


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
