"""What the API accepts and answers about votes, receipts and integrity counts."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from service.infra.fields import StrictInteger, Text, Trimmed, UTCDateTime
from service.polls.schemas import OPTIONS_MAX
from service.tallies.schemas import CONTEXT_MAX, TalliesSchema

OTHER_MAX = 200
COMMENT_MAX = 2000
USER_ID_MAX = 255
ALTCHA_MAX = 2000
CAPTCHA_TOKEN_MAX = 4096  # Turnstile's tokens reach 2048 characters


class SignedVoterSchema(Schema):
    id = Text(required=True, validate=validate.Length(1, USER_ID_MAX))
    sig = Text(
        required=True,
        validate=validate.Regexp(r"^[0-9a-fA-F]{64}$", error="Must be 64 hex digits."),
    )

class VoteContentSchema(Schema):
    """What a vote says: the fields a change may set again."""

    choices = fields.List(
        StrictInteger(),
        load_default=list,
        validate=validate.Length(max=OPTIONS_MAX),
        metadata={"description": "Option ids; 1..max_choices distinct ids of this poll."},
    )
    other = Trimmed(allow_none=True, load_default=None, validate=validate.Length(1, OTHER_MAX))
    comment = Trimmed(
        allow_none=True, load_default=None, validate=validate.Length(1, COMMENT_MAX)
    )

class VoteSchema(VoteContentSchema):
    context = Text(
        allow_none=True, load_default=None, validate=validate.Length(1, CONTEXT_MAX)
    )
    voter = fields.Nested(
        SignedVoterSchema,
        allow_none=True,
        load_default=None,
        metadata={"description": "For `duplicate_check: user`: the site's signed user id."},
    )
    altcha = fields.String(
        allow_none=True, load_default=None, validate=validate.Length(1, ALTCHA_MAX),
        metadata={"description": "On a poll whose `challenge` is on: the solution of a "
                  "challenge from GET /api/v1/polls/<id>/challenge, as ALTCHA's base64 "
                  "payload. Each solution is used once and lives 10 minutes."},
    )
    captcha = fields.String(
        allow_none=True, load_default=None, validate=validate.Length(1, CAPTCHA_TOKEN_MAX),
        metadata={"description": "Where the service is set up with a third-party captcha "
                  "(CAPTCHA_PROVIDER: turnstile or hcaptcha): on a poll whose `challenge` "
                  "is on, the provider's token may stand instead of `altcha`. If the "
                  "provider cannot be reached, the vote is refused (403 "
                  "challenge_required) and a proof of work is still accepted."},
    )

# What VoteSchema loads besides `choices` from a body that has nothing else.
_VOTE_DEFAULTS = {"other": None, "comment": None, "context": None, "voter": None,
                  "altcha": None, "captcha": None}


def load_plain_vote(body) -> dict | None:
    """The commonest vote, `{"choices": [ids]}`, as VoteSchema loads it; None for any
    other body (VoteSchema then loads it, or says what is wrong)."""
    if type(body) is not dict or len(body) != 1:
        return None
    choices = body.get("choices")
    if type(choices) is not list or len(choices) > OPTIONS_MAX or \
            not all(type(choice) is int for choice in choices):
        return None
    return {"choices": choices, **_VOTE_DEFAULTS}


class ChallengeSchema(Schema):
    """An ALTCHA challenge (protocol v1) for one vote: find `number` in 0..maxnumber whose
    SHA-256 of `salt` followed by the number's decimal digits is `challenge`; vote with
    base64(JSON {algorithm, challenge, number, salt, signature}) as `altcha`."""

    algorithm = fields.String(metadata={"example": "SHA-256"})
    challenge = fields.String(metadata={"description": "The SHA-256 to find, in hex."})
    salt = fields.String(metadata={"description": "Bound to the poll and the expiry."})
    signature = fields.String(metadata={"description": "The service's HMAC of `challenge`."})
    maxnumber = fields.Integer(metadata={"description": "The largest number to try."})


class VoteReceiptSchema(Schema):
    id = fields.String()
    created_at = fields.String()
    receipt = fields.String(metadata={
        "description": "A secret for the voter only: GET, PUT or DELETE "
                       "/api/v1/receipts/<receipt> shows, changes (on a poll with "
                       "`allow_change`) or withdraws this vote. Only its hash is stored."
    })

class VoteResultSchema(Schema):
    vote = fields.Nested(VoteReceiptSchema)
    tallies = fields.Nested(TalliesSchema, allow_none=True)

class ReceiptChoiceSchema(Schema):
    id = fields.Integer()
    label = fields.String()

class ChangeSchema(VoteContentSchema):
    """A vote's new content, checked as a new vote is (the receipt stands for the voter)."""


class ChangedVoteSchema(Schema):
    id = fields.String(metadata={"description": "The vote's id: a change keeps it."})
    receipt = fields.String(metadata={"description": "The same receipt: a change keeps it."})
    created_at = fields.String()
    changed_at = fields.String(metadata={"description": "When it was last changed: now."})
    choices = fields.List(fields.Nested(ReceiptChoiceSchema))
    other = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)
    context = fields.String(allow_none=True)

class ChangeResultSchema(Schema):
    vote = fields.Nested(ChangedVoteSchema)
    tallies = fields.Nested(TalliesSchema, allow_none=True, metadata={
        "description": "The tallies after the change, when the poll shows them to voters."})

class ReceiptVoteSchema(Schema):
    """A vote as its receipt shows it."""

    poll_id = fields.String()
    vote_id = fields.String()
    created_at = UTCDateTime()
    changed_at = UTCDateTime(allow_none=True, metadata={
        "description": "When its voter last changed it; null: as cast."})
    choices = fields.List(fields.Nested(ReceiptChoiceSchema))
    other = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)
    context = fields.String(allow_none=True)

class DuplicateCountsSchema(Schema):
    total = fields.Integer()
    cookie = fields.Integer()
    ip = fields.Integer()
    user = fields.Integer()

class RejectedCountsSchema(Schema):
    duplicate_vote = fields.Nested(DuplicateCountsSchema)
    rate_limited = fields.Integer()
    origin_not_allowed = fields.Integer()
    poll_closed = fields.Integer()
    vote_pending = fields.Integer(metadata={
        "description": "Attempts answered `409 vote_pending`: an earlier attempt by the same "
                       "voter was still in flight."})
    challenge_failed = fields.Integer(metadata={
        "description": "Votes refused `403 challenge_required`: the poll's proof of work "
                       "was on and the vote carried no solution, or a wrong, expired or "
                       "used one."})

class IntegrityCountsSchema(Schema):
    accepted = fields.Integer(metadata={"description": "Votes accepted (201, replays excluded)."})
    withdrawn = fields.Integer(metadata={"description": "Votes withdrawn with their receipt."})
    changed = fields.Integer(metadata={
        "description": "Changes of a vote with its receipt (PUT /api/v1/receipts/<receipt>, "
                       "or the widget's \"Change my vote\"), each counted."})
    rejected = fields.Nested(RejectedCountsSchema)
    released_dead_claims = fields.Integer(metadata={
        "description": "Votes whose server process died between claiming the voter and "
                       "recording the ballot: their claims were released so the voter's "
                       "retry is admitted (nothing was counted for them)."})

class IntegrityHourSchema(IntegrityCountsSchema):
    hour = fields.String(metadata={"description": "Start of the UTC hour.",
                                   "example": "2026-11-29T12:00:00Z"})

class IntegritySchema(Schema):
    poll_id = fields.String()
    retention_days = fields.Integer()
    from_ = fields.String(data_key="from", attribute="from",
                          metadata={"description": "First hour retained."})
    totals = fields.Nested(IntegrityCountsSchema)
    hours = fields.List(fields.Nested(IntegrityHourSchema),
                        metadata={"description": "Hours with attempts, oldest first."})
