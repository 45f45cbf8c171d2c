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
class RatingBlockSchema(Schema):
    mean = fields.Float(allow_none=True, metadata={"example": 3.94})
    median = fields.Float(allow_none=True, metadata={
        "example": 4, "description": "The middle value voted; the mean of the two middle "
                                    "ones for an even number of ballots."})
    ci95 = fields.List(fields.Float(), allow_none=True, metadata={
        "example": [3.81, 4.07],
        "description": "The mean's 95 % Student t interval (mean +- t(0.975, n-1) * s / "
                       "sqrt(n), s the sample standard deviation), clipped to the scale's "
                       "lowest and highest points; null below two ballots."})

class NpsBlockSchema(Schema):
    score = fields.Float(allow_none=True, metadata={
        "example": 23.5, "description": "% promoters (9-10) - % detractors (0-6), "
                                        "-100..100; null without ballots."})
    promoters = fields.Integer(metadata={"example": 1203})
    passives = fields.Integer(metadata={"example": 800})
    detractors = fields.Integer(metadata={"example": 560})
    ci95 = fields.List(fields.Float(), allow_none=True, metadata={
        "example": [20.1, 26.9],
        "description": "score +- 1.96 standard errors, the standard error being "
                       "100 * sqrt((p + d - (p - d)^2) / n) for the promoters' and "
                       "detractors' shares p and d of n ballots (each ballot scored +100, "
                       "0 or -100); clipped to -100..100."})

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
    rating = fields.Nested(RatingBlockSchema, allow_none=True, metadata={
        "description": "`rating` polls only: the statistics of the values voted (baseline "
                       "included); null while suppressed."})
    nps = fields.Nested(NpsBlockSchema, allow_none=True, metadata={
        "description": "`nps` polls only: the Net Promoter Score of the votes (baseline "
                       "included); null while suppressed."})
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


def load_no_query(query) -> dict | None:
    """Tallies asked without a query, as TalliesQuerySchema loads them; None otherwise."""
    return {} if not query else None
