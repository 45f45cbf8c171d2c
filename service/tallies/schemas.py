"""What the API accepts and answers about results."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from service.infra.fields import Text

# A vote's `context` (the page it was cast on), by which results may be filtered.
CONTEXT_MAX = 500


class TallyOptionSchema(Schema):
    id = fields.Integer()
    label = fields.String()
    votes = fields.Integer(allow_none=True)
    percent = fields.Float(allow_none=True)
    ci95 = fields.List(fields.Float(), allow_none=True)

class TalliesSchema(Schema):
    poll_id = fields.String()
    status = fields.String()
    total_votes = fields.Integer()
    options = fields.List(fields.Nested(TallyOptionSchema))
    other_votes = fields.Integer(allow_none=True)
    suppressed = fields.Boolean()
    updated_at = fields.String()

class TalliesQuerySchema(Schema):
    context = Text(validate=validate.Length(1, CONTEXT_MAX))
