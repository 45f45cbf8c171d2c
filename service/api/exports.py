"""Exports for analysts (owner only): streamed files, the account-wide file, a chart."""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import current_app, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from service.api.common import OWNER_SECURITY, key_errors, owner_errors, owner_only
from service.exports import charts, spreadsheet
from service.exports import export as exports
from service.exports.schemas import CHART_CSP, ChartQuerySchema, ExportQuerySchema
from service.infra.clock import now
from service.infra.db import db
from service.infra.fields import UTCDateTime
from service.polls import manage as polls
from service.tallies.schemas import IrvSchema
from service.web.owner import require_owner

blp = Blueprint("exports", __name__, url_prefix="/api/v1",
                description="Exports for analysts: CSV, JSON, NDJSON, XLSX and a chart.")

class AccountExportQuerySchema(Schema):
    format = fields.String(load_default="csv", validate=validate.OneOf(exports.FORMATS))
    bom = fields.Boolean(load_default=False)


# The shapes of the JSON document and of NDJSON lines, for the OpenAPI spec.


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE  # documented as additionalProperties: false


class ExportFiltersSchema(StrictSchema):
    from_ = UTCDateTime(data_key="from", required=True, allow_none=True)
    to = UTCDateTime(required=True, allow_none=True)
    context = fields.String(required=True, allow_none=True)


class TallyRowSchema(StrictSchema):
    poll_id = fields.String(required=True)
    question = fields.String(required=True)
    option_id = fields.Integer(required=True, allow_none=True, metadata={
        "description": "null on a summary row, after the options' rows (CSV, NDJSON, XLSX; a "
                       "JSON document has the block as a top-level field instead). A "
                       "`rating` or `nps` poll's statistics: `option_label` names the "
                       "statistic (`mean`, `median`; `nps`, `promoters`, `passives`, "
                       "`detractors`), its number in `value` and its interval in "
                       "`ci95_low`/`ci95_high`, or a count in `votes`. A `ranked` poll's "
                       "runoff: `irv round N <option label>` (votes: that round's ballots "
                       "for the option, percent of the round's ballots not exhausted), "
                       "`irv round N exhausted`, and `irv winner <option label>`."})
    option_label = fields.String(required=True)
    votes = fields.Integer(required=True, allow_none=True)
    percent = fields.Float(required=True, allow_none=True,
                           metadata={"description": "votes / ballots * 100."})
    ci95_low = fields.Float(required=True, allow_none=True,
                            metadata={"description": "Wilson score interval at 95 %, percent; "
                                      "null without ballots."})
    ci95_high = fields.Float(required=True, allow_none=True)
    baseline_votes = fields.Integer(
        required=True,
        metadata={"description": "How many of `votes` come from the poll's baseline (votes "
                  "from before Pollbox); 0 when filtered by context or time."})
    value = fields.Float(
        required=True, allow_none=True,
        metadata={"description": "A scale point's number (`rating`, `nps` polls) or a "
                  "statistic row's number; null for options of other kinds."})


class TimeseriesRowSchema(StrictSchema):
    bucket_start = fields.String(required=True, metadata={"example": "2026-11-29T00:00:00Z"})
    option_id = fields.Integer(required=True)
    option_label = fields.String(required=True)
    votes = fields.Integer(required=True)
    value = fields.Integer(required=True, allow_none=True, metadata={
        "description": "A rating or NPS option's number; null for other kinds."})


class VoteRowSchema(StrictSchema):
    vote_id = fields.String(required=True)
    created_at = fields.String(required=True, metadata={"example": "2026-11-29T12:00:00Z"})
    option_ids = fields.List(fields.Integer(), required=True)
    other = fields.String(required=True, allow_none=True)
    comment = fields.String(required=True, allow_none=True)
    context = fields.String(required=True, allow_none=True)
    voter = fields.String(
        required=True, allow_none=True,
        metadata={"description": "A per-poll pseudonym of the voter (browser, or site user)."},
    )
    comment_hidden = fields.Boolean(
        required=True,
        metadata={"description": "The owner hid the comment from every public surface."},
    )
    changed_at = fields.String(
        required=True, allow_none=True,
        metadata={"description": "When the voter last changed the vote (the row shows it as "
                  "it is now); null: as cast.", "example": "2026-11-29T12:05:00Z"},
    )


class PollExportSchema(StrictSchema):
    poll_id = fields.String(required=True)
    question = fields.String(required=True)
    interval = fields.String(required=True, allow_none=True,
                             validate=validate.OneOf(exports.INTERVALS))
    filters = fields.Nested(ExportFiltersSchema, required=True)
    generated_at = fields.String(required=True)


class ExportBaselineSchema(StrictSchema):
    total_votes = fields.Integer(required=True)
    source = fields.String(required=True)
    as_of = fields.String(required=True, metadata={"example": "2026-11-30T00:00:00Z"})


class TalliesExportSchema(PollExportSchema):
    data = fields.String(required=True, validate=validate.OneOf(["tallies"]))
    baseline = fields.Nested(
        ExportBaselineSchema, required=True, allow_none=True,
        metadata={"description": "The baseline included in the rows; null when there is "
                  "none or the export is filtered."})
    irv = fields.Nested(
        IrvSchema, allow_none=True,
        metadata={"description": "Ranked polls only: the instant runoff of the exported "
                  "ballots (as in the tallies). JSON only; the other formats add rows."})
    rows = fields.List(fields.Nested(TallyRowSchema), required=True)


class TimeseriesExportSchema(PollExportSchema):
    data = fields.String(required=True, validate=validate.OneOf(["timeseries"]))
    rows = fields.List(fields.Nested(TimeseriesRowSchema), required=True)


class VotesExportSchema(PollExportSchema):
    data = fields.String(required=True, validate=validate.OneOf(["votes"]))
    rows = fields.List(fields.Nested(VoteRowSchema), required=True)


class AccountExportSchema(StrictSchema):
    owner = fields.String(required=True)
    data = fields.String(required=True, validate=validate.OneOf(["tallies"]))
    generated_at = fields.String(required=True)
    rows = fields.List(fields.Nested(TallyRowSchema), required=True)


CSV_CONTENT = {
    "text/csv": {"schema": {"type": "string", "format": "binary"}},
    spreadsheet.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
}
POLL_EXPORT_RESPONSES = {"200": {
    "description": "The export, streamed as an attachment `<poll id>-<data>.<format>`. "
                   "CSV: RFC 4180, UTF-8, the columns of the rows below; text cells "
                   "starting with `= + - @`, tab or CR get a leading `'`; `option_ids` "
                   "joined by `;`. JSON: one document. NDJSON: one row object per line. "
                   "XLSX: one sheet, the CSV's columns, header row frozen, numbers, "
                   "booleans and UTC times typed, text never a formula; written whole "
                   "before it is sent (422 naming `format` beyond 1,048,575 rows).",
    "content": {
        **CSV_CONTENT,
        "application/json": {"schema": {"oneOf": [
            TalliesExportSchema, TimeseriesExportSchema, VotesExportSchema,
        ]}},
        "application/x-ndjson": {"schema": {"oneOf": [
            TallyRowSchema, TimeseriesRowSchema, VoteRowSchema,
        ]}},
    },
}}
ACCOUNT_EXPORT_RESPONSES = {"200": {
    "description": "Tallies of all the owner's polls, newest poll first, as one file.",
    "content": {
        **CSV_CONTENT,
        "application/json": {"schema": AccountExportSchema},
        "application/x-ndjson": {"schema": TallyRowSchema},
    },
}}
CHART_RESPONSES = {"200": {
    "description": "A line chart of votes per option over time.",
    "content": {charts.SVG_MIMETYPE: {"schema": {"type": "string"}}},
}}


def _cooperative(chunks: Iterator[bytes]) -> Iterator[bytes]:
    # time.sleep(0) is a yield to other greenlets under gevent's patching (a no-op
    # elsewhere): a big export must not starve the worker's other connections.
    for chunk in chunks:
        yield chunk
        time.sleep(0)


def _attachment(chunks: Iterator[bytes], *, fmt: str, name: str):
    response = current_app.response_class(
        stream_with_context(_cooperative(chunks)), content_type=exports.MEDIA_TYPES[fmt]
    )
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blp.route("/polls/<id:poll_id>/export")
class PollExport(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY, responses=POLL_EXPORT_RESPONSES)
    @blp.arguments(ExportQuerySchema, location="query")
    @owner_errors(blp, "poll")
    def get(self, args, poll_id):
        """Export a poll's tallies, time series or (pseudonymous) votes."""
        params = exports.export_params(
            data=args["data"], fmt=args["format"], interval=args.get("interval"),
            since=args.get("from_"), until=args.get("to"), context=args.get("context"),
            bom=args["bom"],
        )
        poll = polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=require_owner())
        export = exports.poll_export(session=db.session, poll=poll, params=params,
                                     secret=current_app.config["SECRET_KEY"], now=now())
        return _attachment(exports.render(export, fmt=params.fmt, bom=params.bom),
                           fmt=params.fmt, name=exports.filename(poll.id, params.data, params.fmt))


@blp.route("/export")
class AccountExport(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY, responses=ACCOUNT_EXPORT_RESPONSES)
    @blp.arguments(AccountExportQuerySchema, location="query")
    @key_errors(blp)
    def get(self, args):
        """Export the tallies of all the owner's polls in one file."""
        params = exports.export_params(data="tallies", fmt=args["format"], bom=args["bom"])
        moment = now()
        export = exports.account_export(session=db.session, owner=require_owner(), now=moment)
        name = f"pollbox-tallies-{moment:%Y-%m-%d}.{params.fmt}"
        return _attachment(exports.render(export, fmt=params.fmt, bom=params.bom),
                           fmt=params.fmt, name=name)


@blp.route("/polls/<id:poll_id>/timeseries.svg")
class TimeseriesChart(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY, responses=CHART_RESPONSES)
    @blp.arguments(ChartQuerySchema, location="query")
    @owner_errors(blp, "poll")
    def get(self, args, poll_id):
        """Votes over time per option as an SVG line chart."""
        filters = exports.export_filters(since=args.get("from_"), until=args.get("to"),
                                         context=args.get("context"))
        poll = polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=require_owner())
        series = exports.timeseries(session=db.session, poll=poll, interval=args["interval"],
                                    filters=filters, max_buckets=charts.MAX_BUCKETS)
        response = current_app.response_class(
            charts.timeseries_svg(series, question=poll.question), mimetype=charts.SVG_MIMETYPE
        )
        response.headers["Content-Security-Policy"] = CHART_CSP
        response.headers["Cache-Control"] = "private, no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
