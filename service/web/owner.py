"""The owner a request names with its API key (`Authorization: Bearer <key>`), and the
scope that key may act in."""

from __future__ import annotations

from flask import current_app, g, request

from service import owners
from service.infra.clock import now
from service.infra.db import db
from service.infra.errors import InsufficientScope, Unauthorized
from service.infra.models import ApiKey, Owner

# Reading needs `read`; any other method changes something and needs `write`.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
KEY_USE_EXTENSION = "pollbox.key_use"


def note_key_use(key: ApiKey) -> None:
    """Record that `key` was used now (the API or the console); cheap on every request."""
    key_use = current_app.extensions.get(KEY_USE_EXTENSION)
    if key_use is None:  # one per app and process, made on first use
        key_use = current_app.extensions[KEY_USE_EXTENSION] = owners.KeyUse()
    key_use.note(engine=db.engine, key=key, moment=now())


def request_key() -> ApiKey | None:
    """The key the request's bearer header names; None without one; 401 for a bad one."""
    if "api_key" in g:
        return g.api_key
    header = request.headers.get("Authorization")
    key = None
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthorized("Send the API key as 'Authorization: Bearer <key>'.")
        key = owners.active_key(session=db.session, key=secret.strip())
        if key is None:
            raise Unauthorized("This API key is not valid (unknown or revoked).")
        note_key_use(key)
    g.api_key = key
    return key


def request_owner() -> Owner | None:
    """The owner named by the request's bearer key; None without a key; 401 for a bad one."""
    key = request_key()
    return None if key is None else key.owner


def require_owner(scope: str | None = None) -> Owner:
    """The request's owner; 401 without a valid key, 403 `insufficient_scope` when the
    key may not make this call (by default: `read` to read, `write` to change)."""
    key = request_key()
    if key is None:
        raise Unauthorized()
    needed = scope or ("read" if request.method in READ_METHODS else "write")
    if not owners.scope_allows(key.scope, needed):
        raise InsufficientScope(
            f"This is a '{key.scope}' key; this call needs a '{needed}' key."
        )
    return key.owner


def key_may(scope: str) -> bool:
    """Whether the request's key (if any) may act in `scope`."""
    key = request_key()
    return key is not None and owners.scope_allows(key.scope, scope)
