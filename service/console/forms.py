"""The poll form: HTML form fields to the API's JSON shape and back, errors per field.

Validation is the API's own (service.schemas): the form only turns text into the types
the JSON contract has (lists from lines, integers, booleans from checkboxes), leaving a
value it cannot convert as text so that the schema names the problem.
"""

from __future__ import annotations

from datetime import UTC, datetime

from marshmallow import Schema, ValidationError
from werkzeug.datastructures import MultiDict

from service.infra import kinds
from service.infra.errors import ValidationFailed, flatten_messages
from service.infra.models import Poll
from service.polls.schemas import OPTIONS_MAX, OPTIONS_MIN, QUESTION_MAX

INTEGER_FIELDS = ("max_choices", "vote_window_seconds", "retention_days", "results_min_votes",
                  "max_votes")
BOOLEAN_FIELDS = ("allow_other", "allow_comment", "shuffle_options", "allow_change")
CHOICE_FIELDS = ("kind", "duplicate_check", "challenge", "results")
TIME_FIELDS = ("opens_at", "closes_at")
# What an empty input means: None = send null (clears it); absent = the API's default.
EMPTY_IS_NULL = ("vote_window_seconds", "retention_days", "opens_at", "closes_at",
                 "max_votes")
DATETIME_LOCAL = "%Y-%m-%dT%H:%M"
SCALE_FIELDS = ("min", "max", "min_label", "max_label")
# The "page feedback" preset of the new-poll form: a 5-point rating with a comment.
PAGE_FEEDBACK = "page-feedback"
PAGE_FEEDBACK_VALUES = {
    "question": "How useful was this page?", "kind": "rating", "scale_min": "1",
    "scale_max": "5", "scale_min_label": "Not useful", "scale_max_label": "Very useful",
    "allow_comment": "on",
}


def lines(text: str) -> list[str]:
    """The non-blank lines of a textarea, trimmed."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _integer(text: str) -> int | str:
    # ASCII digits (and a minus, for the schema's range message) only: `int()` also
    # takes "+5", "1_0" and other scripts' digits, which the API's JSON never carries.
    if not (text.isascii() and text.removeprefix("-").isdigit()):
        return text  # the schema answers "Not a valid integer."
    try:
        return int(text)
    except ValueError:  # beyond Python's digit limit for int()
        return text


def _common(form: MultiDict) -> dict:
    data: dict = {"question": form.get("question", "")}
    for name in CHOICE_FIELDS:
        if form.get(name):
            data[name] = form[name]
    for name in BOOLEAN_FIELDS:
        data[name] = form.get(name) in ("on", "1", "true", "yes")
    for name in INTEGER_FIELDS:
        text = form.get(name, "").strip()
        if text:
            data[name] = _integer(text)
        elif name in EMPTY_IS_NULL:
            data[name] = None
    kind = kinds.KINDS.get(data.get("kind", kinds.DEFAULT))
    if kind is not None and kind.one_choice:
        data.pop("max_choices", None)  # always 1: a leftover number is no mistake to report
    if kind is not None and kind.scale_settable:
        data["scale"] = _scale(form)
    for name in TIME_FIELDS:
        text = form.get(name, "").strip()
        data[name] = text or None  # datetime-local values: read as UTC by the schema
    data["allowed_origins"] = lines(form.get("allowed_origins", ""))
    locale = form.get("locale", "").strip()
    if locale:
        data["locale"] = locale
    return data


def _scale(form: MultiDict) -> dict:
    """A rating's scale fields (`scale_min`, ...); empty labels are none."""
    scale: dict = {}
    for name in SCALE_FIELDS:
        text = form.get(f"scale_{name}", "").strip()
        if name in ("min", "max"):
            scale[name] = _integer(text) if text else kinds.DEFAULT_SCALE[name]
        elif text:
            scale[name] = text
    return scale


def _is_scale(data: dict) -> bool:
    kind = kinds.KINDS.get(data.get("kind", kinds.DEFAULT))
    return kind is not None and kind.scale


def create_input(form: MultiDict) -> dict:
    """A new poll's form as the body of `POST /api/v1/polls` (a rating or NPS poll's
    options textarea is left out: the service makes its options)."""
    data = _common(form)
    if not _is_scale(data):
        data["options"] = lines(form.get("options", ""))
    return data


def update_input(form: MultiDict, poll: Poll) -> dict:
    """An edit form as the body of `PATCH /api/v1/polls/<id>`: every field, and the full
    option list (kept options by id, relabelled; removed ones left out; new ones added)."""
    options = [
        {"id": option.id, "label": form.get(f"option_{option.id}", "")}
        for option in poll.options
        if not form.get(f"remove_{option.id}")
    ]
    options += [{"id": None, "label": label} for label in lines(form.get("new_options", ""))]
    data = _common(form)
    if _is_scale(data):
        return data  # the service keeps a scale poll's options in step with its scale
    data["options"] = options
    kind = kinds.KINDS.get(data.get("kind", ""))
    if "max_choices" not in data and kind is not None and not kind.one_choice:
        data["max_choices"] = len(options)
    return data


def _strip_nulls(data: dict) -> dict:
    # PollUpdateSchema's option ids: None means "add"; the schema wants it absent.
    if "options" in data and isinstance(data["options"], list):
        data = {**data, "options": [
            {key: value for key, value in option.items() if value is not None}
            if isinstance(option, dict) else option
            for option in data["options"]
        ]}
    return data


def load(schema: Schema, data: dict) -> dict:
    """Validate through the API's schema; raise ValidationFailed naming each field."""
    try:
        return schema.load(_strip_nulls(data))
    except ValidationError as error:
        raise ValidationFailed(flatten_messages(error.messages)) from None


# The schema's words for the commonest mistakes, said the way a form says them.
FRIENDLIER = {
    ("question", f"Length must be between 1 and {QUESTION_MAX}."):
        f"Enter the question (up to {QUESTION_MAX} characters).",
    ("options", f"Length must be between {OPTIONS_MIN} and {OPTIONS_MAX}."):
        f"Enter {OPTIONS_MIN} to {OPTIONS_MAX} options, one per line.",
}


def field_errors(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """API error paths (`options.1`, `options.0.label`) as form fields with readable text."""
    shown: dict[str, list[str]] = {}
    for path, messages in errors.items():
        name, _, rest = path.partition(".")
        index = rest.split(".", 1)[0]
        messages = [FRIENDLIER.get((path, message), message) for message in messages]
        if name == "options" and index.isdigit():
            messages = [f"Option {int(index) + 1}: {message}" for message in messages]
        if name == "_schema":
            name = "_form"
        shown.setdefault(name, []).extend(messages)
    return shown


def _local(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime(DATETIME_LOCAL) if moment else ""


def values_of(poll: Poll) -> dict:
    """A poll as the edit form's initial values (text, as a browser would send them)."""
    values = {
        "question": poll.question,
        "kind": poll.kind,
        "max_choices": str(poll.max_choices),
        "duplicate_check": poll.duplicate_check,
        "challenge": poll.challenge,
        "vote_window_seconds": "" if poll.vote_window_seconds is None
        else str(poll.vote_window_seconds),
        "retention_days": "" if poll.retention_days is None else str(poll.retention_days),
        "max_votes": "" if poll.max_votes is None else str(poll.max_votes),
        "results": poll.results,
        "results_min_votes": str(poll.results_min_votes),
        "opens_at": _local(poll.opens_at),
        "closes_at": _local(poll.closes_at),
        "allowed_origins": "\n".join(poll.allowed_origins),
        "locale": poll.locale,
        "new_options": "",
    }
    for name in BOOLEAN_FIELDS:
        if getattr(poll, name):
            values[name] = "on"
    for option in poll.options:
        values[f"option_{option.id}"] = option.label
    scale = kinds.scale_of(kinds.of(poll.kind), poll.scale)
    if scale is not None:
        values.update({f"scale_{name}": "" if scale[name] is None else str(scale[name])
                       for name in SCALE_FIELDS})
    return values


# -- the baseline form: votes from before Pollbox ----------------------------------------


def baseline_input(form: MultiDict, poll: Poll) -> dict:
    """The baseline form as the body of `PUT /api/v1/polls/<id>/baseline` (an empty
    option count is 0; an empty total or date is left out, for the schema to name)."""
    data: dict = {"source": form.get("source", ""), "options": {}}
    total = form.get("total_votes", "").strip()
    if total:
        data["total_votes"] = _integer(total)
    for option in poll.options:
        text = form.get(f"option_{option.id}", "").strip()
        if text:
            data["options"][str(option.id)] = _integer(text)
    as_of = form.get("as_of", "").strip()
    if as_of:
        data["as_of"] = as_of  # a datetime-local value: read as UTC by the schema
    return data


def baseline_field_errors(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """API error paths (`options.17.value`) as the baseline form's fields (`option_17`)."""
    shown: dict[str, list[str]] = {}
    for path, messages in errors.items():
        name, _, rest = path.partition(".")
        option_id = rest.split(".", 1)[0]
        if name == "options" and option_id.isdigit():
            name = f"option_{option_id}"
        shown.setdefault("_form" if name == "_schema" else name, []).extend(messages)
    return shown


def baseline_values(poll: Poll) -> dict:
    """The poll's baseline as the form's initial values (empty without one)."""
    baseline = poll.baseline
    if baseline is None:
        return {}
    values = {"total_votes": str(baseline.total_votes), "source": baseline.source,
              "as_of": _local(baseline.as_of)}
    values.update({f"option_{row.option_id}": str(row.votes) for row in baseline.options})
    return values
