"""A poll's integrity numbers, for its owner."""

from __future__ import annotations

from flask.views import MethodView

from service import integrity, polls
from service.api.base import Blueprint
from service.api.common import OWNER_SECURITY, now, owner_errors, owner_only
from service.extensions import db, redis_handle
from service.owners import require_owner
from service.schemas import IntegritySchema

blp = Blueprint(
    "integrity", __name__, url_prefix="/api/v1/polls",
    description="Accepted votes and refused attempts, by reason and hour.",
)


@blp.route("/<poll_id>/integrity")
class Integrity(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(200, IntegritySchema)
    @owner_errors(blp, "poll")
    @blp.alt_response(503, description="Redis, which holds the counts, is unreachable")
    def get(self, poll_id):
        """Count accepted votes and refused attempts (`duplicate_vote` by the identity
        seen, `rate_limited`, `origin_not_allowed`, `poll_closed`) per UTC hour, for the
        last 30 days."""
        poll = polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=require_owner())
        return integrity.report(redis=redis_handle(), poll_id=poll.id, now=now())
