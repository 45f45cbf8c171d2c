"""The JSON API under /api/v1 (flask-smorest, OpenAPI at /api/v1/openapi.json), and the
operations endpoints. Views parse, call one use case, and answer."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Bind the API, document its owner key scheme, and register its blueprints."""
    from service.api import (
        baseline,
        exports,
        feedback,
        integrity,
        keys,
        ops,
        polls,
        receipts,
        stream,
        tallies,
        votes,
        webhooks,
    )
    from service.api.base import api
    from service.web.app import ID_MAX_LENGTH, ID_PATTERN, IdConverter

    api.init_app(app)
    api.register_converter(IdConverter, lambda _converter: {
        "type": "string", "pattern": f"^{ID_PATTERN}$", "maxLength": ID_MAX_LENGTH})
    api.spec.components.security_scheme("bearerAuth", {
        "type": "http", "scheme": "bearer",
        "description": "An owner's API key, of a scope: `read` may make every owner GET "
                       "(polls, tallies with hidden results, exports, integrity, contexts, "
                       "comments, deliveries); `write` may also change polls, comments and "
                       "webhooks (every other method); `admin` may also manage keys "
                       "(`/api/v1/keys`). A call beyond the key's scope is "
                       "`403 insufficient_scope`."})
    for module in (polls, votes, tallies, exports, receipts, integrity, stream, feedback,
                   webhooks, baseline, keys):
        api.register_blueprint(module.blp)
    app.register_blueprint(ops.blp)
