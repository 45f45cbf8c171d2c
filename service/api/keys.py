"""API key resources (admin scope): make a key of a scope (shown once), list, revoke."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from service import owners
from service.api.base import Blueprint
from service.api.common import OWNER_SECURITY, key_errors, owner_only
from service.infra.clock import now
from service.infra.db import db
from service.infra.errors import LastAdminKey, NotFound, ValidationFailed
from service.infra.fields import Text, UTCDateTime
from service.web.owner import require_owner

blp = Blueprint(
    "keys", __name__, url_prefix="/api/v1/keys",
    description="An owner's API keys and their scopes: `read` (every owner GET), `write` "
                "(polls, comments, webhooks) and `admin` (everything, keys too). Only an "
                "`admin` key may call these.",
)


class KeyCreateSchema(Schema):
    name = Text(required=True, validate=validate.Length(1, owners.KEY_NAME_MAX),
                metadata={"description": "Who or what uses the key, e.g. `analyst`."})
    scope = fields.String(required=True, validate=validate.OneOf(owners.SCOPES))


class KeySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    scope = fields.String(metadata={"enum": list(owners.SCOPES)})
    prefix = fields.String(metadata={
        "description": "The key's first characters, to tell keys apart (not enough to use)."})
    created_at = UTCDateTime()
    last_used_at = UTCDateTime(allow_none=True, metadata={
        "description": "When the key last opened the API or the console, to the minute; "
                       "null if never."})
    key = fields.String(metadata={"description": "Only in the 201 answer: the key itself."})


def _admin():
    return require_owner(scope="admin")


@blp.route("")
class Keys(MethodView):
    @owner_only(scope="admin")
    @blp.doc(security=OWNER_SECURITY)
    @blp.arguments(KeyCreateSchema)
    @blp.response(201, KeySchema, headers={"Location": {"schema": {"type": "string"}}})
    @key_errors(blp)
    def post(self, data):
        """Make a key of a scope; the key is in this answer only."""
        try:
            record, key = owners.create_key(session=db.session, owner=_admin(),
                                            name=data["name"], scope=data["scope"])
        except owners.OwnerError as error:
            raise ValidationFailed({"name": [str(error)]}) from None
        location = url_for("keys.KeyById", key_id=record.id, _external=True)
        return {**_view(record), "key": key}, 201, {"Location": location}

    @owner_only(scope="admin")
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(200, KeySchema(many=True))
    @key_errors(blp)
    def get(self):
        """List the owner's active keys (never a key itself), oldest first."""
        return [_view(key) for key in owners.list_keys(session=db.session, owner=_admin())]


@blp.route("/<int:key_id>")
class KeyById(MethodView):
    @owner_only(scope="admin")
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(204)
    @key_errors(blp)
    @blp.alt_response(404, description="No such active key of this owner's")
    @blp.alt_response(409, description="`last_admin_key`: the owner's only admin key")
    def delete(self, key_id):
        """Revoke a key at once, and sign its console sessions out."""
        key = owners.get_owned_key(session=db.session, owner=_admin(), key_id=key_id)
        if key is None:
            raise NotFound("No such key.")
        try:
            owners.revoke_key(session=db.session, key=key, moment=now())
        except owners.LastAdminKey as error:
            raise LastAdminKey(str(error)) from None


def _view(key) -> dict:
    return {name: getattr(key, name)
            for name in ("id", "name", "scope", "prefix", "created_at", "last_used_at")}
