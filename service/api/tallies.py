"""Live tallies."""

from __future__ import annotations

import hashlib

from flask import current_app, json, request
from flask.views import MethodView

from service import cors, polls, tallies
from service.api.base import Blueprint
from service.api.common import is_poll_owner, now, require_results_visible
from service.extensions import db, redis_handle
from service.schemas import TalliesQuerySchema, TalliesSchema

blp = Blueprint("tallies", __name__, url_prefix="/api/v1/polls", description="Read results.")

ETAG_HEX_CHARS = 32


@blp.route("/<poll_id>/tallies")
class Tallies(MethodView):
    @blp.arguments(TalliesQuerySchema, location="query")
    @blp.response(200, TalliesSchema, headers={"ETag": {"schema": {"type": "string"}}})
    @blp.alt_response(304, description="Not modified (If-None-Match)")
    @blp.alt_response(403, description="`results_hidden`")
    @blp.alt_response(404, description="Unknown poll")
    def get(self, args, poll_id):
        """Current results; `context` filters to votes cast with that context."""
        session, moment = db.session, now()
        poll = polls.get_poll(session=session, poll_id=poll_id)
        cors.allow(poll)
        is_owner = is_poll_owner(poll)
        require_results_visible(poll, session=session, moment=moment, is_owner=is_owner)
        counts = tallies.read(session=session, redis=redis_handle(), poll=poll,
                              context=args.get("context"))
        view = tallies.tallies_view(
            poll, counts, now=moment,
            suppressed=tallies.is_suppressed(poll, counts, is_owner=is_owner),
        )
        body = json.dumps(view)
        response = current_app.response_class(body, mimetype="application/json")
        response.set_etag(hashlib.sha256(body.encode()).hexdigest()[:ETAG_HEX_CHARS])
        # Public results may be cached but must be revalidated; personal ones stay private.
        response.headers["Cache-Control"] = (
            "no-cache" if poll.results == "always" and not is_owner else "private, no-cache"
        )
        response.vary.update(("Authorization", "Cookie"))
        return response.make_conditional(request)
