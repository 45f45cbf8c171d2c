"""Poll resources: create, list, read, change, delete."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from service.api.base import Blueprint
from service.api.common import OWNER_SECURITY, is_poll_owner, key_errors, owner_errors, owner_only
from service.infra.clock import now
from service.infra.db import db
from service.infra.redis import redis_handle
from service.polls import manage as polls
from service.polls.schemas import (
    PollCreateSchema,
    PollSchema,
    PollUpdateSchema,
    SigningSecretSchema,
)
from service.web import cors
from service.web.owner import key_may, require_owner
from service.web.urls import base_url

blp = Blueprint(
    "polls", __name__, url_prefix="/api/v1/polls", description="Create and manage polls."
)

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100


def _owner_view(poll) -> dict:
    return polls.poll_view(poll, now=now(), base_url=base_url(), for_owner=True,
                           with_secret=key_may("write"))


@blp.route("")
class Polls(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.arguments(PollCreateSchema)
    @blp.response(201, PollSchema, headers={"Location": {"schema": {"type": "string"}}})
    @key_errors(blp)
    def post(self, data):
        """Create a poll."""
        poll = polls.create_poll(
            session=db.session, redis=redis_handle(), owner=require_owner(), data=data, now=now()
        )
        location = url_for("polls.PollById", poll_id=poll.id, _external=True)
        return _owner_view(poll), 201, {"Location": location}

    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(200, PollSchema(many=True))
    @blp.paginate(page_size=PAGE_SIZE_DEFAULT, max_page_size=PAGE_SIZE_MAX)
    @key_errors(blp)
    def get(self, pagination_parameters):
        """List the owner's polls, newest first."""
        found, total = polls.list_polls(
            session=db.session,
            owner=require_owner(),
            offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return [_owner_view(poll) for poll in found]


@blp.route("/<id:poll_id>")
class PollById(MethodView):
    @blp.response(200, PollSchema)
    @blp.alt_response(404, description="Unknown poll")
    def get(self, poll_id):
        """Read a poll: the public view, or the owner view with the owner's key."""
        poll = polls.get_poll(session=db.session, poll_id=poll_id)
        cors.allow(poll)
        return polls.poll_view(poll, now=now(), base_url=base_url(),
                               for_owner=is_poll_owner(poll), with_secret=key_may("write"))

    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.arguments(PollUpdateSchema)
    @blp.response(200, PollSchema)
    @owner_errors(blp, "poll")
    @blp.alt_response(409, description="`poll_has_votes`: the change would corrupt votes")
    def patch(self, data, poll_id):
        """Change a poll: close or reopen it, correct labels, add options, change settings."""
        poll = polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=require_owner())
        poll = polls.update_poll(session=db.session, poll=poll, data=data, now=now())
        return _owner_view(poll)

    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(204)
    @owner_errors(blp, "poll")
    def delete(self, poll_id):
        """Delete a poll and all its votes."""
        poll = polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=require_owner())
        polls.delete_poll(session=db.session, redis=redis_handle(), poll=poll)


@blp.route("/<id:poll_id>/signing-secret")
class SigningSecret(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(200, SigningSecretSchema)
    @owner_errors(blp, "poll")
    def post(self, poll_id):
        """Rotate the secret that signs voter ids for `duplicate_check: user`."""
        poll = polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=require_owner())
        secret = polls.rotate_signing_secret(session=db.session, poll=poll, now=now())
        return {"poll_id": poll.id, "signing_secret": secret}
