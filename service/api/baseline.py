"""A poll's baseline: the votes it had before it moved to Pollbox (owner only)."""

from __future__ import annotations

from flask.views import MethodView

from service.api.base import Blueprint
from service.api.common import OWNER_SECURITY, owner_errors, owner_only
from service.infra.clock import now
from service.infra.db import db
from service.infra.redis import redis_handle
from service.polls import baseline as baselines
from service.polls import manage as polls
from service.polls.schemas import BaselineAnswerSchema, BaselineSchema
from service.web.owner import require_owner

blp = Blueprint(
    "baseline", __name__, url_prefix="/api/v1/polls",
    description="Carry an existing poll over: the votes it had before Pollbox.",
)


def _owned(poll_id: str):
    return polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=require_owner())


@blp.route("/<id:poll_id>/baseline")
class Baseline(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(200, BaselineAnswerSchema)
    @owner_errors(blp, "poll", not_found="Unknown poll, or a poll without a baseline")
    def get(self, poll_id):
        """Read the poll's baseline."""
        return baselines.baseline_view(baselines.get_baseline(poll=_owned(poll_id)))

    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.arguments(BaselineSchema)
    @blp.response(200, BaselineAnswerSchema)
    @owner_errors(blp, "poll")
    def put(self, data, poll_id):
        """Set (or replace) the votes the poll had before Pollbox. Tallies, the widget, the
        results SVG and the tallies export add them to the whole poll's counts and say so;
        context filters, the time series and the votes export never include them (no
        ballot is invented). 422 names the field at fault: an unknown option id, an
        option with more votes than `total_votes`, options of a `single` poll that do not
        add up to `total_votes`, an `as_of` in the future."""
        poll = _owned(poll_id)
        record = baselines.set_baseline(session=db.session, redis=redis_handle(), poll=poll,
                                        data=data, now=now())
        return baselines.baseline_view(record)

    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(204)
    @owner_errors(blp, "poll")
    def delete(self, poll_id):
        """Remove the poll's baseline: its tallies count its ballots alone again."""
        baselines.remove_baseline(session=db.session, redis=redis_handle(),
                                  poll=_owned(poll_id))
