"""Console: a poll's baseline, the votes it had before it moved to Pollbox (enter,
replace, remove), through the same use case and schema as `PUT .../baseline`."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

from service.console import bp, forms
from service.console.auth import owner_required, scope_required
from service.infra.clock import now
from service.infra.db import db
from service.infra.errors import ValidationFailed
from service.infra.redis import redis_handle
from service.polls import baseline as baselines
from service.polls import manage as polls
from service.polls.schemas import BaselineSchema

BASELINE_SCHEMA = BaselineSchema()


def _owned(poll_id: str):
    return polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=g.console_owner)


@bp.route("/polls/<id:poll_id>/baseline", methods=["GET", "POST"])
@owner_required
@scope_required("write")
def poll_baseline(poll_id: str):
    """The baseline form: the total, each option's votes, where they come from, when."""
    poll = _owned(poll_id)
    if request.method == "GET":
        return render_template("console/polls/baseline.html", poll=poll, errors={},
                               values=forms.baseline_values(poll))
    try:
        data = forms.load(BASELINE_SCHEMA, forms.baseline_input(request.form, poll))
        baselines.set_baseline(session=db.session, redis=redis_handle(), poll=poll,
                               data=data, now=now())
    except ValidationFailed as error:
        db.session.rollback()
        return render_template("console/polls/baseline.html", poll=poll, values=request.form,
                               errors=forms.baseline_field_errors(error.errors)), 422
    flash(f"Baseline saved: the results now include {data['total_votes']} earlier "
          f"vote{'' if data['total_votes'] == 1 else 's'}.", "success")
    return redirect(url_for("console.poll_show", poll_id=poll.id, _anchor="baseline-card"))


@bp.post("/polls/<id:poll_id>/baseline/delete")
@owner_required
def poll_baseline_delete(poll_id: str):
    """Remove the baseline: the results count the poll's ballots alone again."""
    poll = _owned(poll_id)
    baselines.remove_baseline(session=db.session, redis=redis_handle(), poll=poll)
    flash("Baseline removed: the results count the votes cast here only.", "success")
    return redirect(url_for("console.poll_show", poll_id=poll.id, _anchor="baseline-card"))
