"""Console poll pages: list, create, edit, the poll page with live results and snippets,
close/reopen/delete, downloads (exports, chart), integrity and the signing secret.

Every view reads and changes polls through the use cases (service/polls/, tallies/,
exports/, ...) for the signed-in owner, as the API's views do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import (
    current_app,
    flash,
    g,
    json,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from marshmallow import ValidationError

from service.console import bp, forms
from service.console.auth import owner_required, scope_required
from service.console.paging import page_number
from service.exports import charts
from service.exports import export as exports
from service.exports.schemas import CHART_CSP, ChartQuerySchema, ExportQuerySchema
from service.infra import kinds
from service.infra.clock import now
from service.infra.db import db
from service.infra.errors import NotFound, PollHasVotes, ValidationFailed, flatten_messages
from service.infra.models import Poll, challenge_on
from service.infra.redis import redis_handle
from service.polls import cache as poll_cache
from service.polls import embed
from service.polls import manage as polls
from service.polls.schemas import (
    CHALLENGES,
    DUPLICATE_CHECKS,
    PollCreateSchema,
    PollUpdateSchema,
)
from service.tallies import baseline as baselines
from service.tallies import counts as tallies
from service.tallies import results, stream
from service.voting import integrity
from service.web.urls import base_url

PAGE_SIZE = 20
DUPLICATE_CHECK_LABELS = {
    "none": "None: every request counts",
    "cookie": "One vote per browser (cookie)",
    "ip": "One vote per network address (IP)",
    "cookie_and_ip": "One vote per browser and per network address",
    "user": "One vote per signed-in user of your site (signed id)",
}
RESULTS_LABELS = {
    "always": "Always visible",
    "after_vote": "After the visitor votes",
    "after_close": "After the poll closes",
    "owner_only": "Only to you",
}
CHALLENGE_LABELS = {
    "none": "None",
    "pow": "Always: every vote solves a proof of work",
    "auto": "Automatic: only while the poll looks attacked",
}
assert set(DUPLICATE_CHECK_LABELS) == set(DUPLICATE_CHECKS)
assert set(CHALLENGE_LABELS) == set(CHALLENGES)


def _owned(poll_id: str) -> Poll:
    return polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=g.console_owner)


def _counts(poll: Poll) -> tallies.Counts:
    return tallies.read(session=db.session, redis=redis_handle(), poll=poll)


def _form_context(**extra) -> dict:
    return dict(duplicate_check_labels=DUPLICATE_CHECK_LABELS, results_labels=RESULTS_LABELS,
                challenge_labels=CHALLENGE_LABELS, locales=embed.LOCALES,
                kinds=list(kinds.KINDS.values()), **extra)


# --- list -------------------------------------------------------------------------------


@bp.get("/polls")
@owner_required
def polls_index():
    page = page_number()
    found, total = polls.list_polls(session=db.session, owner=g.console_owner,
                                    offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    moment = now()
    rows = [{"poll": poll, "status": poll.status_at(moment), "votes": _counts(poll).total}
            for poll in found]
    pages = max(1, -(-total // PAGE_SIZE))
    return render_template("console/polls/index.html", rows=rows, total=total, page=page,
                           pages=pages, formats=exports.FORMATS)


# --- create and edit --------------------------------------------------------------------


@bp.route("/polls/new", methods=["GET", "POST"])
@owner_required
@scope_required("write")
def poll_new():
    if request.method == "GET":
        values = {"kind": "single", "duplicate_check": "cookie_and_ip", "results": "always",
                  "results_min_votes": "0", "locale": "en"}
        if request.args.get("preset") == forms.PAGE_FEEDBACK:
            values.update(forms.PAGE_FEEDBACK_VALUES)
        return render_template("console/polls/form.html", **_form_context(
            poll=None, values=values, errors={}))
    try:
        data = forms.load(PollCreateSchema(), forms.create_input(request.form))
        poll = polls.create_poll(session=db.session, redis=redis_handle(),
                                 owner=g.console_owner, data=data, now=now())
    except ValidationFailed as error:
        return render_template("console/polls/form.html", **_form_context(
            poll=None, values=request.form, errors=forms.field_errors(error.errors))), 422
    flash("Poll created. Copy a snippet below to embed it.", "success")
    return redirect(url_for("console.poll_show", poll_id=poll.id))


@bp.route("/polls/<id:poll_id>/edit", methods=["GET", "POST"])
@owner_required
@scope_required("write")
def poll_edit(poll_id: str):
    poll = _owned(poll_id)
    # Votes from before Pollbox protect options and the kind as ballots do.
    counts = baselines.combined(_counts(poll), baselines.of_poll(poll))
    context = _form_context(poll=poll, votes=counts.total, option_votes=counts.options)
    if request.method == "GET":
        return render_template("console/polls/form.html", values=forms.values_of(poll),
                               errors={}, **context)
    try:
        data = forms.load(PollUpdateSchema(), forms.update_input(request.form, poll))
        poll = polls.update_poll(session=db.session, poll=poll, data=data, now=now())
    except ValidationFailed as error:
        db.session.rollback()
        return render_template("console/polls/form.html", values=request.form,
                               errors=forms.field_errors(error.errors), **context), 422
    except PollHasVotes as error:
        db.session.rollback()
        field = next((name for name in ("kind", "scale") if name in error.detail), "options")
        message = (f"{error.detail} This poll already has votes, so changes that would "
                   "alter what those votes mean are refused. You can still correct labels, "
                   "add options and change the other settings.")
        return render_template("console/polls/form.html", values=request.form,
                               errors={field: [message]}, **context), 409
    flash("Poll saved.", "success")
    return redirect(url_for("console.poll_show", poll_id=poll.id))


# --- the poll page ----------------------------------------------------------------------


def results_of(poll: Poll) -> dict:
    """The owner's view of the tallies (never suppressed, its baseline included)."""
    return results.tallies_view(poll, _counts(poll), now=now(), suppressed=False)


@bp.get("/polls/<id:poll_id>")
@owner_required
def poll_show(poll_id: str):
    poll, moment = _owned(poll_id), now()
    theme = request.args.get("theme", "auto")
    if theme not in embed.THEMES:
        theme = "auto"
    return render_template(
        "console/polls/show.html",
        poll=poll,
        status=poll.status_at(moment),
        challenge_on=challenge_on(poll, moment),
        challenge_labels=CHALLENGE_LABELS,
        results=results_of(poll),
        kind=kinds.of(poll.kind),
        scale=kinds.scale_of(kinds.of(poll.kind), poll.scale),
        embed=embed.snippets(poll, base_url()),
        theme=theme,
        themes=embed.THEMES,
        data_kinds=exports.DATA_KINDS,
        formats=exports.FORMATS,
        intervals=exports.INTERVALS,
        duplicate_check_labels=DUPLICATE_CHECK_LABELS,
        results_labels=RESULTS_LABELS,
    )


@bp.get("/polls/<id:poll_id>/stream")
@owner_required
def poll_stream(poll_id: str):
    """The owner's live tallies (Server-Sent Events, as the API's stream, never
    suppressed and whatever the `results` rule)."""
    session = db.session
    try:
        _owned(poll_id)
    finally:
        session.close()  # a stream holds no database connection while it waits
    def render() -> str:
        try:
            current, counts, _ = poll_cache.get_poll_and_counts(
                session=session, redis=redis_handle(), poll_id=poll_id
            )
            view = results.tallies_view(current, counts, now=now(), suppressed=False)
        except NotFound:
            return json.dumps({"poll_id": poll_id, "status": "deleted"})
        finally:
            session.close()
        return json.dumps(view)

    # Owners' console streams share one rendered answer per change (never suppressed).
    events = stream.follow(hub=stream.hub(), poll_id=poll_id, render=render, variant="console")
    response = current_app.response_class(stream_with_context(events),
                                          mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events on at once
    return response


# --- close, reopen, delete --------------------------------------------------------------


@bp.post("/polls/<id:poll_id>/status")
@owner_required
def poll_status(poll_id: str):
    poll = _owned(poll_id)
    wanted = request.form.get("status")
    if wanted not in ("open", "closed"):
        flash("Choose to close or to reopen the poll.", "error")
        return redirect(url_for("console.poll_show", poll_id=poll.id))
    try:
        poll = polls.update_poll(session=db.session, poll=poll, data={"status": wanted},
                                 now=now())
    except ValidationFailed as error:
        messages = [m for values in error.errors.values() for m in values]
        flash(" ".join(messages), "error")
        return redirect(url_for("console.poll_show", poll_id=poll_id))
    flash("Poll closed: no more votes are accepted." if wanted == "closed"
          else "Poll reopened: visitors can vote again.", "success")
    return redirect(url_for("console.poll_show", poll_id=poll.id))


@bp.route("/polls/<id:poll_id>/delete", methods=["GET", "POST"])
@owner_required
@scope_required("write")
def poll_delete(poll_id: str):
    poll = _owned(poll_id)
    votes = _counts(poll).total
    if request.method == "GET" or request.form.get("confirm") != "yes":
        error = None if request.method == "GET" else \
            "Tick the box to confirm that the poll and its votes are to be deleted."
        return render_template("console/polls/delete.html", poll=poll, votes=votes,
                               error=error), (200 if error is None else 422)
    question = poll.question
    polls.delete_poll(session=db.session, redis=redis_handle(), poll=poll)
    flash(f"Deleted the poll “{question}” and its {votes} vote{'' if votes == 1 else 's'}.",
          "success")
    return redirect(url_for("console.polls_index"))


# --- signing secret ---------------------------------------------------------------------


@bp.post("/polls/<id:poll_id>/signing-secret")
@owner_required
def poll_signing_secret(poll_id: str):
    poll = _owned(poll_id)
    polls.rotate_signing_secret(session=db.session, poll=poll, now=now())
    flash("New signing secret created. Update your site: signatures made with the old "
          "secret are refused from now on.", "success")
    return redirect(url_for("console.poll_show", poll_id=poll.id, _anchor="signing-secret"))


# --- downloads: exports, chart, integrity -----------------------------------------------


def _query(schema_class, args) -> dict:
    """Query arguments through the API's schema; empty form inputs count as absent."""
    present = {key: value for key, value in args.items() if value.strip()}
    try:
        return schema_class().load(present)
    except ValidationError as error:
        raise ValidationFailed(flatten_messages(error.messages)) from None


def _cooperative(chunks: Iterator[bytes]) -> Iterator[bytes]:
    # Under gevent, time.sleep(0) yields to other greenlets: a big export must not starve
    # the worker's other connections (as service/api/exports.py).
    for chunk in chunks:
        yield chunk
        time.sleep(0)


def _download(chunks: Iterator[bytes], *, fmt: str, name: str):
    response = current_app.response_class(stream_with_context(_cooperative(chunks)),
                                          content_type=exports.MEDIA_TYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@bp.get("/polls/<id:poll_id>/export")
@owner_required
def poll_export(poll_id: str):
    """The API's export of one poll, as a download for the signed-in owner."""
    args = _query(ExportQuerySchema, request.args)
    params = exports.export_params(
        data=args["data"], fmt=args["format"], interval=args.get("interval"),
        since=args.get("from_"), until=args.get("to"), context=args.get("context"),
        bom=args["bom"],
    )
    poll = _owned(poll_id)
    export = exports.poll_export(session=db.session, poll=poll, params=params,
                                 secret=current_app.config["SECRET_KEY"], now=now())
    return _download(exports.render(export, fmt=params.fmt, bom=params.bom), fmt=params.fmt,
                     name=exports.filename(poll.id, params.data, params.fmt))


@bp.get("/export")
@owner_required
def account_export():
    """Tallies of all the owner's polls in one file."""
    fmt = request.args.get("format", "csv")
    params = exports.export_params(data="tallies", fmt=fmt,
                                   bom=request.args.get("bom") == "1")
    moment = now()
    export = exports.account_export(session=db.session, owner=g.console_owner, now=moment)
    return _download(exports.render(export, fmt=params.fmt, bom=params.bom), fmt=params.fmt,
                     name=f"pollbox-tallies-{moment:%Y-%m-%d}.{params.fmt}")


@bp.get("/polls/<id:poll_id>/timeseries.svg")
@owner_required
def poll_timeseries_svg(poll_id: str):
    """Votes over time per option, the API's SVG chart; `download=1` saves it."""
    args = _query(ChartQuerySchema,
                  {key: value for key, value in request.args.items() if key != "download"})
    filters = exports.export_filters(since=args.get("from_"), until=args.get("to"),
                                     context=args.get("context"))
    poll = _owned(poll_id)
    series = exports.timeseries(session=db.session, poll=poll, interval=args["interval"],
                                filters=filters, max_buckets=charts.MAX_BUCKETS)
    response = current_app.response_class(charts.timeseries_svg(series, question=poll.question),
                                          mimetype=charts.SVG_MIMETYPE)
    response.headers["Content-Security-Policy"] = CHART_CSP
    if request.args.get("download") == "1":
        response.headers["Content-Disposition"] = (
            f'attachment; filename="{poll.id}-timeseries-{args["interval"]}.svg"')
    return response


@bp.get("/polls/<id:poll_id>/integrity")
@owner_required
def poll_integrity(poll_id: str):
    poll = _owned(poll_id)
    report = integrity.report(redis=redis_handle(), poll_id=poll.id, now=now())
    return render_template("console/polls/integrity.html", poll=poll, report=report)
