"""What the API accepts and answers about polls."""

from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from service.infra import kinds
from service.infra.fields import Origin, StrictBoolean, StrictInteger, Trimmed, UTCDateTime

CHALLENGES = ("none", "pow", "auto")
DUPLICATE_CHECKS = ("none", "cookie", "ip", "cookie_and_ip", "user")
RESULTS_RULES = ("always", "after_vote", "after_close", "owner_only")
QUESTION_MAX = 500
OPTIONS_MIN, OPTIONS_MAX = 2, 50
LABEL_MAX = 200
VOTE_WINDOW_MIN, VOTE_WINDOW_MAX = 60, 31_536_000
RESULTS_MIN_VOTES_MAX = 100_000
RETENTION_DAYS_MIN, RETENTION_DAYS_MAX = 1, 3650
SHUFFLE_DESCRIPTION = (
    "true: the widget shows the options in an order of each visitor's own, the same on "
    "every load (seeded by the poll and the visitor's network address), against order "
    "bias; the API, exports, results and the owner's views keep the owner's order.")
CHANGE_DESCRIPTION = (
    "true: a voter may change their vote while the poll is open (PUT "
    "/api/v1/receipts/<receipt> with the receipt their vote's 201 answer carried, or "
    "\"Change my vote\" in the widget); the vote keeps its id and receipt, the tallies "
    "move it, exports show it as it is now with its `changed_at`. false: 409 "
    "change_not_allowed.")
CHALLENGE_DESCRIPTION = (
    "Bot protection. `none`; `pow`: every vote carries the solution of a proof-of-work "
    "challenge (GET /api/v1/polls/<id>/challenge; the widget solves it in the browser, "
    "nothing leaves it); `auto`: only while the poll looks attacked (far more refused "
    "duplicate or rate-limited attempts per minute than its own baseline), switched off "
    "again after a quiet period. The tallies' `challenge` says whether it is on now.")
RETENTION_DESCRIPTION = (
    "Days after which what identifies a ballot (voter hashes, claims, comment, other "
    "text, context) is purged; counts, options and times stay. null keeps everything. "
    "A poll that forgets its voters can only promise one vote per window: with a "
    "duplicate check, vote_window_seconds must be set and at most retention_days days.")
MAX_VOTES_MIN, MAX_VOTES_MAX = 1, 10_000_000
MAX_VOTES_DESCRIPTION = (
    "null: no limit; N: the poll closes itself at exactly N ballots (the vote that takes "
    "the last place closes it and `poll.closed` webhooks are told once, reason `full`); "
    "later votes answer `409 poll_full`. A withdrawal frees a place only while the poll "
    "is open. Votes from a baseline do not count. On a change, N must stay above the "
    "ballots cast while the poll is open.")
SCALE_LABEL_MAX = 100
SCALE_DESCRIPTION = (
    "`rating` polls only: the scale's lowest and highest points (`min` 1..10, `max` 2..10, "
    "min < max, at most 11 points) and the words at its ends, which the widget shows and "
    "reads out. Default `{\"min\": 1, \"max\": 5}`. The service makes one option per "
    "point, labelled with its number and carrying it as `value`.")
KIND_DESCRIPTION = (
    "`single`: one option; `multiple`: up to `max_choices` options; `ranked`: `choices` "
    "lists 1..`max_choices` distinct option ids in order of preference (partial rankings "
    "allowed; `max_choices` is the number of ranks, by default every option), and the "
    "tallies add an instant runoff (`irv`); `rating` (a numeric scale, see `scale`) or "
    "`nps` (Net Promoter Score: 0..10): no `options` in the request, the service makes "
    "one per point of the scale, and a vote's `choices` holds exactly one of them.")
ALLOWED_ORIGINS_MAX = 100
BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-(?:[A-Za-z]{2}|\d{3}))?$")


def _unique_labels(labels: list[str]) -> list[str]:
    """Messages for labels that repeat (compared without case)."""
    seen: set[str] = set()
    repeated = []
    for label in labels:
        folded = label.casefold()
        if folded in seen:
            repeated.append(f"Option {label!r} appears more than once.")
        seen.add(folded)
    return repeated

def _check_schedule(data: dict) -> None:
    opens_at, closes_at = data.get("opens_at"), data.get("closes_at")
    if opens_at is not None and closes_at is not None and closes_at <= opens_at:
        raise ValidationError("Must be after opens_at.", field_name="closes_at")

class ScaleSchema(Schema):
    min = StrictInteger(required=True, validate=validate.Range(kinds.SCALE_MIN_LOW,
                                                               kinds.SCALE_MIN_HIGH))
    max = StrictInteger(required=True, validate=validate.Range(kinds.SCALE_MAX_LOW,
                                                               kinds.SCALE_MAX_HIGH))
    min_label = Trimmed(load_default=None, allow_none=True,
                        validate=validate.Length(1, SCALE_LABEL_MAX),
                        metadata={"example": "Not useful"})
    max_label = Trimmed(load_default=None, allow_none=True,
                        validate=validate.Length(1, SCALE_LABEL_MAX),
                        metadata={"example": "Very useful"})

    @validates_schema
    def _points(self, data, **kwargs):
        low, high = data.get("min"), data.get("max")
        if low is None or high is None:
            return
        if high <= low:
            raise ValidationError("Must be more than min.", field_name="max")
        if high - low + 1 > kinds.SCALE_POINTS_MAX:
            raise ValidationError(f"At most {kinds.SCALE_POINTS_MAX} points.",
                                  field_name="max")


def _scale_errors(kind: kinds.Kind, data: dict) -> dict[str, list[str]]:
    """What a request's `options` and `scale` break of its kind's rules."""
    errors: dict[str, list[str]] = {}
    if kind.scale and data.get("options") is not None:
        errors["options"] = [f"A {kind.name} poll takes no options: the service makes one "
                             "per point of its scale."]
    if data.get("scale") is not None and not kind.scale_settable:
        errors["scale"] = ["Only a rating poll has a scale."]
    if kind.scale and data.get("allow_other"):
        errors["allow_other"] = [f"A {kind.name} vote is one point of its scale."]
    return errors


LOCALE_FIELD = dict(
    validate=validate.Regexp(BCP47, error="Not a BCP 47 language tag such as 'en' or 'pt-BR'.")
)


class PollCreateSchema(Schema):
    question = Trimmed(required=True, validate=validate.Length(1, QUESTION_MAX))
    options = fields.List(
        Trimmed(validate=validate.Length(1, LABEL_MAX)),
        load_default=None,
        validate=validate.Length(OPTIONS_MIN, OPTIONS_MAX),
        metadata={"description": "Required, except for `rating` and `nps` polls, which "
                  "take none."},
    )
    kind = fields.String(load_default=kinds.DEFAULT, validate=validate.OneOf(kinds.NAMES),
                         metadata={"description": KIND_DESCRIPTION})
    scale = fields.Nested(ScaleSchema, load_default=None, allow_none=True,
                          metadata={"description": SCALE_DESCRIPTION})
    max_choices = StrictInteger(
        load_default=None,
        validate=validate.Range(min=1),
        metadata={"description": "Defaults to 1 for `single`, to the number of options for "
                  "`multiple`."},
    )
    allow_other = StrictBoolean(load_default=False)
    allow_comment = StrictBoolean(load_default=False)
    shuffle_options = StrictBoolean(load_default=False,
                                    metadata={"description": SHUFFLE_DESCRIPTION})
    allow_change = StrictBoolean(load_default=False,
                                 metadata={"description": CHANGE_DESCRIPTION})
    challenge = fields.String(load_default="none", validate=validate.OneOf(CHALLENGES),
                              metadata={"description": CHALLENGE_DESCRIPTION})
    duplicate_check = fields.String(
        load_default="cookie_and_ip", validate=validate.OneOf(DUPLICATE_CHECKS)
    )
    vote_window_seconds = StrictInteger(
        load_default=None,
        allow_none=True,
        validate=validate.Range(VOTE_WINDOW_MIN, VOTE_WINDOW_MAX),
        metadata={"description": "null: one vote ever; N: one vote per N seconds."},
    )
    retention_days = StrictInteger(
        load_default=None, allow_none=True,
        validate=validate.Range(RETENTION_DAYS_MIN, RETENTION_DAYS_MAX),
        metadata={"description": RETENTION_DESCRIPTION},
    )
    max_votes = StrictInteger(
        load_default=None, allow_none=True,
        validate=validate.Range(MAX_VOTES_MIN, MAX_VOTES_MAX),
        metadata={"description": MAX_VOTES_DESCRIPTION},
    )
    results = fields.String(load_default="always", validate=validate.OneOf(RESULTS_RULES))
    results_min_votes = StrictInteger(
        load_default=0, validate=validate.Range(0, RESULTS_MIN_VOTES_MAX)
    )
    opens_at = UTCDateTime(load_default=None, allow_none=True)
    closes_at = UTCDateTime(load_default=None, allow_none=True)
    allowed_origins = fields.List(
        Origin(), load_default=list, validate=validate.Length(max=ALLOWED_ORIGINS_MAX)
    )
    locale = fields.String(load_default="en", **LOCALE_FIELD)

    @validates_schema
    def _rules(self, data, **kwargs):
        kind = kinds.of(data.get("kind", kinds.DEFAULT))
        errors = _scale_errors(kind, data)
        if not kind.scale and data.get("options") is None:
            errors["options"] = ["Missing data for required field."]
        repeated = _unique_labels(data.get("options") or [])
        if repeated:
            errors["options"] = repeated
        count = len(data.get("options") or [])
        if kind.scale:
            count = len(kinds.scale_points(kinds.scale_of(kind, data.get("scale"))))
        max_choices = data.get("max_choices")
        if max_choices is not None:
            if kind.one_choice and max_choices != 1:
                errors["max_choices"] = ["Must be 1 for a single-choice poll."]
            elif max_choices > count:
                errors["max_choices"] = [f"Must be at most the number of options ({count})."]
        try:
            _check_schedule(data)
        except ValidationError as error:
            errors.update(error.normalized_messages())
        if errors:
            raise ValidationError(errors)

class OptionChangeSchema(Schema):
    id = StrictInteger(
        load_default=None, metadata={"description": "An existing option's id; omit to add."}
    )
    label = Trimmed(required=True, validate=validate.Length(1, LABEL_MAX))

class PollUpdateSchema(Schema):
    """A partial update. `options`, when given, is the complete new list of options."""

    question = Trimmed(validate=validate.Length(1, QUESTION_MAX))
    options = fields.List(
        fields.Nested(OptionChangeSchema), validate=validate.Length(OPTIONS_MIN, OPTIONS_MAX)
    )
    kind = fields.String(validate=validate.OneOf(kinds.NAMES),
                         metadata={"description": KIND_DESCRIPTION + " Changing to or from "
                                   "them remakes the options (only before the first vote)."})
    scale = fields.Nested(ScaleSchema, allow_none=True, metadata={
        "description": SCALE_DESCRIPTION + " Its labels may change at any time, its points "
                       "only before the first vote."})
    max_choices = StrictInteger(validate=validate.Range(min=1))
    allow_other = StrictBoolean()
    allow_comment = StrictBoolean()
    shuffle_options = StrictBoolean(metadata={"description": SHUFFLE_DESCRIPTION})
    allow_change = StrictBoolean(metadata={"description": CHANGE_DESCRIPTION})
    challenge = fields.String(validate=validate.OneOf(CHALLENGES),
                              metadata={"description": CHALLENGE_DESCRIPTION})
    duplicate_check = fields.String(validate=validate.OneOf(DUPLICATE_CHECKS))
    vote_window_seconds = StrictInteger(
        allow_none=True, validate=validate.Range(VOTE_WINDOW_MIN, VOTE_WINDOW_MAX)
    )
    retention_days = StrictInteger(
        allow_none=True, validate=validate.Range(RETENTION_DAYS_MIN, RETENTION_DAYS_MAX),
        metadata={"description": RETENTION_DESCRIPTION},
    )
    max_votes = StrictInteger(
        allow_none=True, validate=validate.Range(MAX_VOTES_MIN, MAX_VOTES_MAX),
        metadata={"description": MAX_VOTES_DESCRIPTION},
    )
    results = fields.String(validate=validate.OneOf(RESULTS_RULES))
    results_min_votes = StrictInteger(validate=validate.Range(0, RESULTS_MIN_VOTES_MAX))
    opens_at = UTCDateTime(allow_none=True)
    closes_at = UTCDateTime(allow_none=True)
    allowed_origins = fields.List(Origin(), validate=validate.Length(max=ALLOWED_ORIGINS_MAX))
    locale = fields.String(**LOCALE_FIELD)
    status = fields.String(
        validate=validate.OneOf(("open", "closed")),
        metadata={"description": "`closed` closes the poll now; `open` reopens it."},
    )

    @validates_schema
    def _rules(self, data, **kwargs):
        options = data.get("options")
        if options is None:
            return
        errors = _unique_labels([option["label"] for option in options])
        ids = [option["id"] for option in options if option["id"] is not None]
        if len(ids) != len(set(ids)):
            errors.append("An option id appears more than once.")
        if errors:
            raise ValidationError(errors, field_name="options")

class OptionSchema(Schema):
    id = fields.Integer()
    label = fields.String()
    position = fields.Integer()
    value = fields.Integer(allow_none=True, metadata={
        "description": "The number a scale point stands for (`rating`, `nps`); null for "
                       "other kinds."})


class ScaleAnswerSchema(Schema):
    min = fields.Integer()
    max = fields.Integer()
    min_label = fields.String(allow_none=True)
    max_label = fields.String(allow_none=True)

class EmbedSchema(Schema):
    widget_url = fields.String()
    iframe = fields.String()
    script = fields.String()
    oembed_url = fields.String()
    svg_url = fields.String()

class PollSchema(Schema):
    """A poll as anyone sees it; owner-only fields appear with the owner's key."""

    id = fields.String()
    question = fields.String()
    options = fields.List(fields.Nested(OptionSchema))
    kind = fields.String(metadata={"enum": list(kinds.NAMES), "description": KIND_DESCRIPTION})
    scale = fields.Nested(ScaleAnswerSchema, allow_none=True, metadata={
        "description": "The scale of a `rating` (`min`, `max`, the end labels) or `nps` "
                       "(0..10) poll; null for other kinds."})
    max_choices = fields.Integer()
    allow_other = fields.Boolean()
    allow_comment = fields.Boolean()
    shuffle_options = fields.Boolean(metadata={"description": SHUFFLE_DESCRIPTION})
    allow_change = fields.Boolean(metadata={"description": CHANGE_DESCRIPTION})
    challenge = fields.String(metadata={"enum": list(CHALLENGES),
                                        "description": CHALLENGE_DESCRIPTION})
    max_votes = fields.Integer(allow_none=True, metadata={"description": MAX_VOTES_DESCRIPTION})
    full = fields.Boolean(metadata={
        "description": "true while the poll is closed because it reached `max_votes`."})
    results = fields.String()
    results_min_votes = fields.Integer()
    opens_at = UTCDateTime(allow_none=True)
    closes_at = UTCDateTime(allow_none=True)
    locale = fields.String()
    status = fields.String(metadata={"enum": ["scheduled", "open", "closed"]})
    created_at = UTCDateTime()
    updated_at = UTCDateTime()
    duplicate_check = fields.String(metadata={"description": "Owner only."})
    vote_window_seconds = fields.Integer(allow_none=True, metadata={"description": "Owner only."})
    retention_days = fields.Integer(allow_none=True, metadata={
        "description": "Owner only. " + RETENTION_DESCRIPTION})
    allowed_origins = fields.List(fields.String(), metadata={"description": "Owner only."})
    signing_secret = fields.String(
        metadata={"description": "Owner only, and not to a `read` key: signs voter ids for "
                                 "`duplicate_check: user`."}
    )
    embed = fields.Nested(EmbedSchema, metadata={"description": "Owner only."})

class SigningSecretSchema(Schema):
    poll_id = fields.String()
    signing_secret = fields.String(metadata={
        "description": "The new secret: sign `\"<poll id>:<user id>\"` with HMAC-SHA256. "
                       "Signatures made with the previous secret are refused from now on."
    })

# -- baseline: the votes a poll had before it moved to Pollbox ----------------------------

BASELINE_VOTES_MAX = 1_000_000_000
BASELINE_SOURCE_MAX = 200
OPTION_ID_KEY = re.compile(r"^[0-9]{1,18}$")

class BaselineSchema(Schema):
    """A poll's baseline as set (`PUT`) and as answered."""

    total_votes = StrictInteger(
        required=True, validate=validate.Range(1, BASELINE_VOTES_MAX),
        metadata={"description": "Ballots cast before the poll moved to Pollbox."},
    )
    options = fields.Dict(
        keys=fields.String(validate=validate.Regexp(OPTION_ID_KEY, error="Not an option id.")),
        values=StrictInteger(validate=validate.Range(0, BASELINE_VOTES_MAX)),
        required=True, validate=validate.Length(max=OPTIONS_MAX),
        metadata={"description": "Votes per option id (options left out had none). None "
                  "may exceed `total_votes`; for `single` polls they add up to it exactly.",
                  "example": {"17": 1203, "18": 1012, "19": 1763}},
    )
    source = Trimmed(
        required=True, validate=validate.Length(1, BASELINE_SOURCE_MAX),
        metadata={"description": "Where the numbers come from.",
                  "example": "PsyWeb poll, 2009-2026"},
    )
    as_of = UTCDateTime(
        required=True,
        metadata={"description": "When they were counted; not in the future. The widget "
                  "says \"includes N votes before <date>\"."},
    )


class BaselineAnswerSchema(BaselineSchema):
    poll_id = fields.String()
    set_at = UTCDateTime(metadata={"description": "When the baseline was last set."})
