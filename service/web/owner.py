"""The owner a request names with its API key (`Authorization: Bearer <key>`)."""

from __future__ import annotations

from flask import g, request

from service.infra.db import db
from service.infra.errors import Unauthorized
from service.infra.models import Owner
from service.owners import owner_for_key


def request_owner() -> Owner | None:
    """The owner named by the request's bearer key; None without a key; 401 for a bad one."""
    if "owner" in g:
        return g.owner
    header = request.headers.get("Authorization")
    owner = None
    if header is not None:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("Send the API key as 'Authorization: Bearer <key>'.")
        owner = owner_for_key(session=db.session, key=key.strip())
        if owner is None:
            raise Unauthorized("This API key is not valid (unknown or revoked).")
    g.owner = owner
    return owner


def require_owner() -> Owner:
    """The request's owner; 401 without a valid key."""
    owner = request_owner()
    if owner is None:
        raise Unauthorized()
    return owner
