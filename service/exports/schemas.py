"""What an export or a chart may be asked for (the API's and the console's queries)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from service.exports import export as exports
from service.infra.fields import Text, UTCDateTime
from service.tallies.schemas import CONTEXT_MAX

CHART_CSP = "default-src 'none'; style-src 'unsafe-inline'"
TIME_DESCRIPTION = ("ISO 8601; without an offset it is UTC. Ballots with from <= created_at "
                    "< to are exported.")


class ExportQuerySchema(Schema):
    data = fields.String(required=True, validate=validate.OneOf(exports.DATA_KINDS))
    format = fields.String(load_default="csv", validate=validate.OneOf(exports.FORMATS))
    interval = fields.String(
        validate=validate.OneOf(exports.INTERVALS),
        metadata={"description": "Bucket size for `data=timeseries` (default `day`)."},
    )
    from_ = UTCDateTime(data_key="from", metadata={"description": TIME_DESCRIPTION})
    to = UTCDateTime(metadata={"description": TIME_DESCRIPTION})
    context = Text(validate=validate.Length(1, CONTEXT_MAX))
    bom = fields.Boolean(
        load_default=False,
        metadata={"description": "`1`: start a CSV with a UTF-8 byte order mark (Excel)."},
    )


class ChartQuerySchema(Schema):
    interval = fields.String(load_default=exports.DEFAULT_INTERVAL,
                             validate=validate.OneOf(exports.INTERVALS))
    from_ = UTCDateTime(data_key="from", metadata={"description": TIME_DESCRIPTION})
    to = UTCDateTime(metadata={"description": TIME_DESCRIPTION})
    context = Text(validate=validate.Length(1, CONTEXT_MAX))
