"""A poll's integrity numbers, for its owner."""

from __future__ import annotations

from flask.views import MethodView

from service.api.base import Blueprint
from service.api.common import OWNER_SECURITY, owner_errors, owner_only
from service.infra.clock import now
from service.infra.db import db
from service.infra.redis import redis_handle
from service.polls import manage as polls
from service.voting import integrity
from service.voting.schemas import IntegritySchema
from service.web.owner import require_owner

blp = Blueprint(
    "integrity", __name__, url_prefix="/api/v1/polls",
    description="Accepted votes and refused attempts, by reason and hour.",
)


@blp.route("/<id:poll_id>/integrity")
class Integrity(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(200, IntegritySchema)
    @owner_errors(blp, "poll")
    @blp.alt_response(503, description="Redis, which holds the counts, is unreachable")
    def get(self, poll_id):
        """Count accepted votes and refused attempts (`duplicate_vote` by the identity
        seen, `rate_limited`, `origin_not_allowed`, `poll_closed`, `vote_pending`) per UTC
        hour, for the last 30 days, and the claims of dead votes released."""
        poll = polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=require_owner())
        return integrity.report(redis=redis_handle(), poll_id=poll.id, now=now())
