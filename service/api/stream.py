"""Live tallies as Server-Sent Events."""

from __future__ import annotations

import orjson
from flask import current_app, json, stream_with_context
from flask.views import MethodView

from service.api.base import Blueprint
from service.api.common import is_poll_owner, require_results_visible
from service.infra.clock import now
from service.infra.db import db
from service.infra.errors import NotFound
from service.infra.redis import redis_handle
from service.polls import cache as poll_cache
from service.tallies import results, stream
from service.web import cors

blp = Blueprint("stream", __name__, url_prefix="/api/v1/polls", description="Read results.")


@blp.route("/<id:poll_id>/tallies/stream")
class TalliesStream(MethodView):
    @blp.doc(responses={"200": {
        "description": (
            "`event: tallies` with the tallies JSON (as `GET .../tallies`) at once and after "
            "every change (coalesced, at most 4 per second); a comment line at least every "
            "15 s. The stream ends after 30 minutes; EventSource reconnects."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }})
    @blp.alt_response(403, description="`results_hidden`")
    @blp.alt_response(404, description="Unknown poll")
    def get(self, poll_id):
        """Follow the results live (Server-Sent Events)."""
        session, redis = db.session, redis_handle()
        try:
            poll = poll_cache.get_poll_snapshot(session=session, redis=redis, poll_id=poll_id)
            cors.allow(poll)
            is_owner = is_poll_owner(poll)
            require_results_visible(poll, session=session, moment=now(), is_owner=is_owner)
        finally:
            session.close()  # a stream holds no database connection while it waits

        def render() -> str:
            moment = now()
            try:
                # The poll's status and labels (checked by its version) and the tally: one
                # Redis round trip.
                current, counts, _exact = poll_cache.get_poll_and_counts(
                    session=session, redis=redis, poll_id=poll_id
                )
                view = results.tallies_view(
                    current, counts, now=moment,
                    suppressed=results.is_suppressed(current, counts, is_owner=is_owner),
                )
            except NotFound:
                return json.dumps({"poll_id": poll_id, "status": "deleted"})
            finally:
                session.close()
            return orjson.dumps(view).decode()

        # The answer depends on the poll and on whether the reader owns it (suppression):
        # streams with the same pair share one rendered answer per change.
        events = stream.follow(hub=stream.hub(), poll_id=poll_id, render=render,
                               variant=is_owner)
        response = current_app.response_class(
            stream_with_context(events), mimetype="text/event-stream"
        )
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events on at once
        response.vary.update(("Authorization", "Cookie"))
        return response
