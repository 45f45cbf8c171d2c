"""Polls: create, read, change and delete, with the rules that protect cast votes."""

from __future__ import annotations

import secrets
import string
from datetime import datetime

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session, selectinload

from service.infra import keys, kinds
from service.infra.errors import Forbidden, NotFound, PollHasVotes, ValidationFailed
from service.infra.models import Ballot, BallotChoice, Option, Owner, Poll, is_full
from service.infra.redis import RedisHandle
from service.polls import cache as poll_cache
from service.polls import embed
from service.tallies import counts as tallies
from service.webhooks import dispatcher

POLL_ID_ALPHABET = string.ascii_letters + string.digits
POLL_ID_LENGTH = 12  # about 71 random bits: short, not guessable, not sequential
SIGNING_SECRET_BYTES = 32
SCAN_BATCH = 500
PUBLIC_FIELDS = (
    "id", "question", "kind", "max_choices", "allow_other", "allow_comment",
    "shuffle_options", "allow_change", "challenge", "max_votes", "results",
    "results_min_votes", "opens_at", "closes_at", "locale", "created_at", "updated_at",
)
OWNER_FIELDS = ("duplicate_check", "vote_window_seconds", "retention_days", "allowed_origins",
                "signing_secret")
SETTABLE_FIELDS = (
    "question", "kind", "max_choices", "allow_other", "allow_comment", "shuffle_options",
    "allow_change", "challenge", "max_votes", "duplicate_check",
    "vote_window_seconds", "retention_days", "results", "results_min_votes", "opens_at",
    "closes_at", "allowed_origins", "locale", "scale",
)
# Fields a poll may be created without (the demo and the page-feedback preset): defaults.
OPTIONAL_FIELDS = {"retention_days": None, "shuffle_options": False, "allow_change": False,
                   "challenge": "none", "max_votes": None, "scale": None}
SECONDS_PER_DAY = 86_400


def new_poll_id() -> str:
    return "".join(secrets.choice(POLL_ID_ALPHABET) for _ in range(POLL_ID_LENGTH))


def get_poll(*, session: Session, poll_id: str) -> Poll:
    """Return the poll with its options, or raise NotFound."""
    poll = session.scalar(
        select(Poll).where(Poll.id == poll_id).options(selectinload(Poll.options))
    )
    if poll is None:
        raise NotFound()
    return poll


def get_owned_poll(*, session: Session, poll_id: str, owner: Owner) -> Poll:
    """Return the owner's poll; 404 if unknown, 403 if another owner's."""
    poll = get_poll(session=session, poll_id=poll_id)
    if poll.owner_id != owner.id:
        raise Forbidden()
    return poll


def create_poll(*, session: Session, redis: RedisHandle, owner: Owner, data: dict,
                now: datetime) -> Poll:
    """Create a poll from validated fields."""
    if data["closes_at"] is not None and data["closes_at"] <= now:
        raise ValidationFailed({"closes_at": ["Must be in the future."]})
    fields = {name: data.get(name, OPTIONAL_FIELDS.get(name)) if name in OPTIONAL_FIELDS
              else data[name] for name in SETTABLE_FIELDS}
    retention = _retention_errors(**fields)
    if retention:
        raise ValidationFailed(retention)
    kind = kinds.of(data["kind"])
    fields["scale"] = _stored_scale(kind, fields["scale"])
    if fields["max_choices"] is None:
        fields["max_choices"] = 1 if kind.one_choice else len(data["options"])
    poll = Poll(
        id=new_poll_id(),
        owner_id=owner.id,
        closed_at=None,
        signing_secret=secrets.token_hex(SIGNING_SECRET_BYTES),
        created_at=now,
        updated_at=now,
        options=_scale_options(kind, fields["scale"]) if kind.scale else [
            Option(label=label, position=index) for index, label in enumerate(data["options"])
        ],
        **fields,
    )
    session.add(poll)
    session.commit()
    tallies.initialize(redis=redis, poll=poll)
    return poll


def _stored_scale(kind: kinds.Kind, scale: dict | None) -> dict | None:
    """What a poll keeps as its scale: a rating's own, with defaults; None otherwise (an
    NPS poll's is fixed: kinds.scale_of)."""
    return kinds.scale_of(kind, scale) if kind.scale_settable else None


def _scale_options(kind: kinds.Kind, scale: dict | None) -> list[Option]:
    """One option per point of the poll's scale, its number as label and value."""
    points = kinds.scale_points(kinds.scale_of(kind, scale))
    return [Option(label=str(value), position=index, value=value)
            for index, value in enumerate(points)]


def list_polls(
    *, session: Session, owner: Owner, offset: int, limit: int
) -> tuple[list[Poll], int]:
    """The owner's polls, newest first, and how many there are."""
    total = session.scalar(select(func.count(Poll.id)).where(Poll.owner_id == owner.id)) or 0
    polls = session.scalars(
        select(Poll)
        .where(Poll.owner_id == owner.id)
        .order_by(Poll.created_at.desc(), Poll.id)
        .offset(offset)
        .limit(limit)
        .options(selectinload(Poll.options))
    ).all()
    return list(polls), total


def has_votes(*, session: Session, poll: Poll) -> bool:
    """Whether the poll has ballots or a baseline (votes from before Pollbox)."""
    return poll.baseline is not None or bool(
        session.scalar(select(exists().where(Ballot.poll_id == poll.id))))


def _voted_option_ids(*, session: Session, poll: Poll) -> set[int]:
    """Options with ballots, or with votes in the poll's baseline."""
    voted = set(
        session.scalars(
            select(BallotChoice.option_id)
            .join(Option, Option.id == BallotChoice.option_id)
            .where(Option.poll_id == poll.id)
            .distinct()
        )
    )
    if poll.baseline is not None:
        voted.update(row.option_id for row in poll.baseline.options if row.votes)
    return voted


def _apply_options(*, session: Session, poll: Poll, changes: list[dict]) -> None:
    current = {option.id: option for option in poll.options}
    unknown = [c["id"] for c in changes if c["id"] is not None and c["id"] not in current]
    if unknown:
        raise ValidationFailed({"options": [f"Unknown option {i}." for i in unknown]})
    voted = _voted_option_ids(session=session, poll=poll)
    kept_ids = {c["id"] for c in changes if c["id"] is not None}
    removed_with_votes = sorted(voted - kept_ids)
    if removed_with_votes:
        raise PollHasVotes(
            f"Options {removed_with_votes} have votes and cannot be removed; relabel them instead."
        )
    old_order = [o.id for o in poll.options if o.id in voted]
    new_order = [c["id"] for c in changes if c["id"] in voted]
    if old_order != new_order:
        raise PollHasVotes("Options with votes cannot be reordered.")
    # Two steps so labels may be swapped or shifted without a transient clash.
    options: list[Option] = []
    for position, change in enumerate(changes):
        option = current[change["id"]] if change["id"] is not None else Option(poll_id=poll.id)
        option.label = change["label"]
        option.position = position
        options.append(option)
    poll.options = options


def update_poll(*, session: Session, poll: Poll, data: dict, now: datetime) -> Poll:
    """Apply a validated partial update, refusing changes that would corrupt votes; a
    poll it closes is announced to `poll.closed` webhooks."""
    was_closed = poll.status_at(now) == "closed"
    if "kind" in data and data["kind"] != poll.kind and has_votes(session=session, poll=poll):
        raise PollHasVotes("The kind of a poll cannot change after its first vote.")
    old_kind = kinds.of(poll.kind)
    for name in SETTABLE_FIELDS:
        if name in data and name not in ("options", "scale"):
            setattr(poll, name, data[name])
    _apply_kind_and_scale(session=session, poll=poll, data=data, old_kind=old_kind)
    if "options" in data:
        _apply_options(session=session, poll=poll, changes=data["options"])
        for option in poll.options:
            option.value = None
    if "kind" in data and kinds.of(poll.kind).one_choice and "max_choices" not in data:
        poll.max_choices = 1
    errors = {**_rule_errors(poll), **_apply_status(poll, data.get("status"), now=now)}
    if "max_votes" in data or data.get("status") == "open":
        errors.update(_max_votes_errors(session=session, poll=poll, now=now))
    if errors:
        session.rollback()
        raise ValidationFailed(errors)
    if data:  # an empty PATCH changes nothing, not even updated_at
        poll.updated_at = now
    session.commit()
    if not was_closed and poll.status_at(now) == "closed":
        dispatcher.announce_close(session=session, poll=poll, reason="manual", moment=now)
    return poll


def _apply_kind_and_scale(*, session: Session, poll: Poll, data: dict,
                          old_kind: kinds.Kind) -> None:
    """A scale kind's options follow its scale: made anew when the poll becomes one or its
    points change (never after the first vote); a poll that stops being one needs options."""
    kind = kinds.of(poll.kind)
    errors = {}
    if kind.scale and "options" in data:
        errors["options"] = [f"A {kind.name} poll takes no options: the service makes one "
                             "per point of its scale."]
    if data.get("scale") is not None and not kind.scale_settable:
        errors["scale"] = ["Only a rating poll has a scale."]
    if kind.scale and poll.allow_other:
        errors["allow_other"] = [f"A {kind.name} vote is one point of its scale."]
    if old_kind.scale and not kind.scale and "options" not in data:
        errors["options"] = [f"Required to make a {old_kind.name} poll a {kind.name} one."]
    if errors:
        session.rollback()
        raise ValidationFailed(errors)
    if not kind.scale:
        poll.scale = None
        return
    scale = _stored_scale(kind, data.get("scale", poll.scale if old_kind is kind else None))
    points = kinds.scale_points(kinds.scale_of(kind, scale))
    if [option.value for option in poll.options] != points:
        if has_votes(session=session, poll=poll):
            session.rollback()
            raise PollHasVotes("The points of a scale cannot change after its first vote.")
        poll.options = _scale_options(kind, scale)
    poll.scale = scale


def _rule_errors(poll: Poll) -> dict[str, list[str]]:
    """What the changed poll breaks of the rules between its fields."""
    errors: dict[str, list[str]] = {}
    if kinds.of(poll.kind).one_choice and poll.max_choices != 1:
        errors["max_choices"] = ["Must be 1 for a single-choice poll."]
    elif poll.max_choices > len(poll.options):
        errors["max_choices"] = [f"Must be at most the number of options ({len(poll.options)})."]
    if poll.opens_at is not None and poll.closes_at is not None and poll.closes_at <= poll.opens_at:
        errors["closes_at"] = ["Must be after opens_at."]
    errors.update(_retention_errors(
        retention_days=poll.retention_days, duplicate_check=poll.duplicate_check,
        vote_window_seconds=poll.vote_window_seconds))
    return errors


def _max_votes_errors(*, session: Session, poll: Poll, now: datetime) -> dict[str, list[str]]:
    """A poll that stays open must have a place left: its max_votes above its ballots."""
    if poll.max_votes is None or poll.status_at(now) == "closed":
        return {}
    ballots = session.scalar(select(func.count(Ballot.id)).where(Ballot.poll_id == poll.id))
    if ballots is not None and ballots >= poll.max_votes:
        return {"max_votes": [f"Must be above the {ballots} ballots cast while the poll is "
                              "open."]}
    return {}


def _retention_errors(*, retention_days: int | None, duplicate_check: str,
                      vote_window_seconds: int | None, **_other) -> dict[str, list[str]]:
    """A purge forgets who voted: a past voter may then vote again, which only a poll
    whose window has passed by then allows."""
    if retention_days is None or duplicate_check == "none":
        return {}
    if vote_window_seconds is None or vote_window_seconds > retention_days * SECONDS_PER_DAY:
        return {"retention_days": [
            "A poll that forgets its voters after retention_days cannot promise one vote "
            "ever: set vote_window_seconds to at most retention_days days, or "
            "duplicate_check to none."]}
    return {}


def _apply_status(poll: Poll, status: str | None, *, now: datetime) -> dict[str, list[str]]:
    """Close the poll now, or reopen it (opening a scheduled one at once)."""
    if status == "closed" and poll.closed_at is None:
        poll.closed_at = now
    elif status == "open":
        poll.closed_at = None
        poll.closed_reason = None
        if poll.opens_at is not None and poll.opens_at > now:
            poll.opens_at = now
        if poll.closes_at is not None and poll.closes_at <= now:
            return {"status": ["The poll's closes_at has passed: set a later closes_at to reopen."]}
    return {}


def rotate_signing_secret(*, session: Session, poll: Poll, now: datetime) -> str:
    """Give the poll a new signing secret; signatures made with the old one stop working.
    Votes already cast stay de-duplicated: user hashes do not depend on this secret."""
    poll.signing_secret = secrets.token_hex(SIGNING_SECRET_BYTES)
    poll.updated_at = now
    session.commit()
    return poll.signing_secret


def delete_poll(*, session: Session, redis: RedisHandle, poll: Poll) -> None:
    """Delete the poll, its ballots, and every Redis key of it."""
    poll_id = poll.id
    session.execute(delete(Poll).where(Poll.id == poll_id))
    session.commit()
    poll_cache.forget(redis=redis, poll_id=poll_id)
    forget_redis_keys(redis=redis, poll_id=poll_id)


def poll_view(poll: Poll, *, now: datetime, base_url: str, for_owner: bool,
              with_secret: bool = True) -> dict:
    """The poll as plain values: public fields, plus owner-only ones for its owner (the
    signing secret, which lets one vote as any user, only `with_secret`)."""
    view = {name: getattr(poll, name) for name in PUBLIC_FIELDS}
    view["status"] = poll.status_at(now)
    view["full"] = is_full(poll)
    view["options"] = [
        {"id": option.id, "label": option.label, "position": option.position,
         "value": option.value}
        for option in poll.options
    ]
    view["scale"] = kinds.scale_of(kinds.of(poll.kind), poll.scale)
    if for_owner:
        view.update({name: getattr(poll, name) for name in OWNER_FIELDS
                     if with_secret or name != "signing_secret"})
        view["embed"] = embed.snippets(poll, base_url)
    return view


def forget_redis_keys(*, redis: RedisHandle, poll_id: str) -> None:
    """Delete every Redis key of a poll (after the poll is gone from the database).
    Should Redis fail, the leftovers are harmless: a deleted poll's id is never reused."""
    with redis.fallback("deleting a poll's keys"):
        found = list(redis.client.scan_iter(match=keys.poll_pattern(poll_id), count=SCAN_BATCH))
        for start in range(0, len(found), SCAN_BATCH):
            redis.client.delete(*found[start : start + SCAN_BATCH])
