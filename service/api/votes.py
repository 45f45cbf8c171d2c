"""Casting votes."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from service import cors, polls, tallies, voting
from service.api.base import Blueprint
from service.api.common import now
from service.extensions import db, redis_handle
from service.identity import current_voter
from service.schemas import VoteResultSchema, VoteSchema

blp = Blueprint("votes", __name__, url_prefix="/api/v1/polls", description="Vote in a poll.")


@blp.route("/<poll_id>/votes")
class Votes(MethodView):
    @blp.arguments(VoteSchema)
    @blp.response(201, VoteResultSchema)
    @blp.alt_response(403, description="`origin_not_allowed`")
    @blp.alt_response(404, description="Unknown poll")
    @blp.alt_response(409, description="`duplicate_vote` or `poll_closed`")
    def post(self, vote, poll_id):
        """Vote. The answer sets the signed voter cookie when the browser has none."""
        session, redis, moment = db.session, redis_handle(), now()
        poll = polls.get_poll(session=session, poll_id=poll_id)
        cors.allow(poll)
        cors.check_vote_origin(poll)
        cast = voting.cast_vote(
            session=session,
            redis=redis,
            poll=poll,
            vote=vote,
            voter=current_voter(),
            secret=current_app.config["SECRET_KEY"],
            now=moment,
        )
        shown = None
        if tallies.results_visible(poll, now=moment, is_owner=False, has_voted=lambda: True):
            counts = tallies.read(session=session, redis=redis, poll=poll)
            shown = tallies.tallies_view(
                poll, counts, now=moment,
                suppressed=tallies.is_suppressed(poll, counts, is_owner=False),
            )
        created = cast.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"vote": {"id": cast.ballot_id, "created_at": created}, "tallies": shown}, 201
