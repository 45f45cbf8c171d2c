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

class TallyBaselineSchema(Schema):
    total_votes = fields.Integer(metadata={"description": "Votes cast before the poll moved "
                                           "to Pollbox, included in every count above."})
    source = fields.String(metadata={"example": "PsyWeb poll, 2009-2026"})
    as_of = fields.String(metadata={"example": "2026-11-30T00:00:00Z"})

class IrvRoundSchema(Schema):
    counts = fields.Dict(
        keys=fields.String(), values=fields.Integer(),
        metadata={"description": "Each option still in the race (by id) and the ballots "
                  "whose highest-ranked option in the race it is.",
                  "example": {"17": 1203, "18": 990, "19": 12}})
    eliminated = fields.List(fields.Integer(), metadata={
        "description": "The option eliminated after this round (the fewest ballots; ties: "
                       "fewer first preferences, then the lowest id); empty in the last."})
    exhausted = fields.Integer(metadata={
        "description": "Ballots with no option left in the race."})

class IrvSchema(Schema):
    rounds = fields.List(fields.Nested(IrvRoundSchema))
    winner = fields.Integer(allow_none=True, metadata={
        "description": "The option with more than half of the ballots not exhausted; null "
                       "while nobody has voted."})

class TalliesSchema(Schema):
    poll_id = fields.String()
    status = fields.String()
    total_votes = fields.Integer()
    options = fields.List(fields.Nested(TallyOptionSchema))
    other_votes = fields.Integer(allow_none=True)
    suppressed = fields.Boolean()
    updated_at = fields.String()
    baseline = fields.Nested(
        TallyBaselineSchema, allow_none=True,
        metadata={"description": "The poll's baseline (`PUT .../baseline`), added to "
                  "`total_votes` and every option's `votes`, `percent` and `ci95`; null "
                  "when there is none, and always null with `context` (no ballot is "
                  "invented)."},
    )
    challenge = fields.Boolean(metadata={
        "description": "Whether a vote must carry a proof-of-work solution now (`altcha`, "
                       "from GET .../challenge): always for `challenge: pow`, while the "
                       "poll looks attacked for `auto`."})
    irv = fields.Nested(IrvSchema, allow_none=True, metadata={
        "description": "`ranked` polls only: the instant runoff of the ballots' rankings "
                       "(`options[].votes` count first preferences). Null while "
                       "suppressed; the baseline holds no rankings and is not in it."})

class TalliesQuerySchema(Schema):
    context = Text(validate=validate.Length(1, CONTEXT_MAX))
