"""The durable record: owners, keys, polls, options, ballots and baselines.

The database is the record of every vote; Redis only speeds up and coordinates.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry, relationship

from service.infra.clock import utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Store naive UTC on every engine; hand back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime()},
    )


class Owner(Base):
    __tablename__ = "owners"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    keys: Mapped[list[ApiKey]] = relationship(back_populates="owner", passive_deletes=True)


class ApiKey(Base):
    """An owner's API key, with the scope it may act in; only its SHA-256 is kept (keys
    carry 256 random bits)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(10))  # admin, write or read
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Written at most once a minute per key and process, never on every request.
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    owner: Mapped[Owner] = relationship(back_populates="keys")


class Poll(Base):
    __tablename__ = "polls"
    __table_args__ = (Index("ix_polls_owner_created", "owner_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"))
    question: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(10))
    max_choices: Mapped[int]
    allow_other: Mapped[bool]
    allow_comment: Mapped[bool]
    # The widget shows the options in an order of each visitor's own (widgets/order.py).
    shuffle_options: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A voter may change their vote (PUT /api/v1/receipts/<receipt>) while the poll is open.
    allow_change: Mapped[bool] = mapped_column(default=False, server_default=false())
    duplicate_check: Mapped[str] = mapped_column(String(16))
    # `none`, `pow` (every vote solves a proof of work) or `auto` (only while the poll
    # looks attacked: until `challenge_until`, service/voting/challenge.py).
    challenge: Mapped[str] = mapped_column(String(4), default="none", server_default="none")
    challenge_until: Mapped[datetime | None]
    vote_window_seconds: Mapped[int | None]
    results: Mapped[str] = mapped_column(String(16))
    results_min_votes: Mapped[int]
    opens_at: Mapped[datetime | None]
    closes_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # Why `closed_at` is set: `full` when the poll closed itself at `max_votes` ballots
    # (votes then answer `poll_full`), None for a close by its owner.
    closed_reason: Mapped[str | None] = mapped_column(String(10))
    # The poll closes itself at exactly this many ballots (None: no limit). The database
    # decides the last place under a lock on this row (service/voting/records.py).
    max_votes: Mapped[int | None]
    allowed_origins: Mapped[list[str]] = mapped_column(JSON)
    locale: Mapped[str] = mapped_column(String(35))
    # Days after which what identifies a ballot is purged (service/retention.py); None
    # keeps everything.
    retention_days: Mapped[int | None]
    # A rating's scale, `{"min", "max", "min_label", "max_label"}` (kinds.scale_of); None
    # for every other kind. Its points are the options, made by the service.
    scale: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    signing_secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    options: Mapped[list[Option]] = relationship(
        order_by="Option.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
        back_populates="poll",
    )
    # Votes from before the poll came to Pollbox (None: it started here).
    baseline: Mapped[PollBaseline | None] = relationship(
        cascade="all, delete-orphan", passive_deletes=True,
    )

    def status_at(self, now: datetime) -> str:
        """Return `scheduled`, `open` or `closed` at the given time."""
        return poll_status(self, now)


def poll_status(poll: Poll, now: datetime) -> str:
    """`scheduled`, `open` or `closed` at the given time, for a Poll or a snapshot of one:
    `closes_at` closes a poll by the clock, without any write."""
    if poll.closed_at is not None or (poll.closes_at is not None and poll.closes_at <= now):
        return "closed"
    if poll.opens_at is not None and poll.opens_at > now:
        return "scheduled"
    return "open"


CLOSED_FULL = "full"  # Poll.closed_reason of a poll that closed itself at max_votes


def is_full(poll: Poll) -> bool:
    """Whether the poll (a Poll or a snapshot of one) is closed because it reached its
    `max_votes`."""
    return poll.closed_at is not None and poll.closed_reason == CLOSED_FULL


def challenge_on(poll: Poll, now: datetime) -> bool:
    """Whether a vote in the poll (a Poll or a snapshot of one) must carry the solution of
    a proof of work now: always (`pow`), or while an `auto` poll looks attacked."""
    if poll.challenge == "pow":
        return True
    return (poll.challenge == "auto" and poll.challenge_until is not None
            and poll.challenge_until > now)


def next_change_at(poll: Poll, now: datetime) -> datetime | None:
    """The next moment after `now` at which the clock alone changes the poll's status or
    its challenge (`poll_status`, `challenge_on`), or None."""
    later = [moment for moment in (poll.opens_at, poll.closes_at, poll.challenge_until)
             if moment is not None and moment > now]
    return min(later, default=None)


class Option(Base):
    __tablename__ = "options"

    id: Mapped[int] = mapped_column(primary_key=True)
    poll_id: Mapped[str] = mapped_column(ForeignKey("polls.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    position: Mapped[int]
    # The number a scale point stands for (rating and NPS polls); None for other kinds.
    value: Mapped[int | None] = mapped_column(Integer, nullable=True)

    poll: Mapped[Poll] = relationship(back_populates="options")


class PollBaseline(Base):
    """The votes a poll had before it moved to Pollbox, as its owner states them.

    Never ballots (no ballot is invented) and never in the Redis tallies: the read model
    adds them when tallies are shown (service/tallies/baseline.py), so a rebuild from the
    ballots, a flushed Redis or reconciliation can neither lose nor double them.
    """

    __tablename__ = "poll_baselines"

    poll_id: Mapped[str] = mapped_column(
        ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True
    )
    total_votes: Mapped[int]
    source: Mapped[str] = mapped_column(String(200))
    as_of: Mapped[datetime]
    set_at: Mapped[datetime] = mapped_column(default=utcnow)

    options: Mapped[list[PollBaselineOption]] = relationship(
        order_by="PollBaselineOption.option_id", cascade="all, delete-orphan",
        passive_deletes=True,
    )


class PollBaselineOption(Base):
    """One option's votes in a poll's baseline (an option absent here had none)."""

    __tablename__ = "poll_baseline_options"

    poll_id: Mapped[str] = mapped_column(
        ForeignKey("poll_baselines.poll_id", ondelete="CASCADE"), primary_key=True
    )
    option_id: Mapped[int] = mapped_column(
        ForeignKey("options.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    votes: Mapped[int]


class Ballot(Base):
    """One accepted vote. Voter identities are per-poll keyed hashes, never raw values."""

    __tablename__ = "ballots"
    __table_args__ = (
        Index("ix_ballots_poll_created", "poll_id", "created_at"),
        Index("ix_ballots_poll_context", "poll_id", "context"),
        Index("ix_ballots_poll_cookie", "poll_id", "cookie_hash"),
        Index("ix_ballots_poll_ip", "poll_id", "ip_hash"),
        Index("ix_ballots_receipt_hash", "receipt_hash", unique=True),
        Index("ix_ballots_poll_idempotency", "poll_id", "idempotency_hash", unique=True),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    poll_id: Mapped[str] = mapped_column(ForeignKey("polls.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    other: Mapped[str | None] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    context: Mapped[str | None] = mapped_column(String(500))
    cookie_hash: Mapped[str | None] = mapped_column(String(32))
    ip_hash: Mapped[str | None] = mapped_column(String(32))
    user_hash: Mapped[str | None] = mapped_column(String(32))
    # SHA-256 of the voter's receipt; the receipt itself is only ever in the 201 answer.
    receipt_hash: Mapped[str | None] = mapped_column(String(64))
    # Keyed hash of the Idempotency-Key: one ballot per key, even when Redis forgot it.
    idempotency_hash: Mapped[str | None] = mapped_column(String(32))
    # Hidden by the owner: off every public surface, kept (marked) in the owner's exports.
    comment_hidden: Mapped[bool] = mapped_column(default=False, server_default=false())
    # When its voter last changed it (None: as cast); service/voting/change.py.
    changed_at: Mapped[datetime | None]
    # A ranked poll's ballot: its option ids in order of preference ("17,19,18"), a copy
    # of its choices' ranks that the runoff groups in one pass over the ballots
    # (service/tallies/irv.py). The choices stay the record; null for the other kinds.
    ranking: Mapped[str | None] = mapped_column(Text)


class BallotChoice(Base):
    __tablename__ = "ballot_choices"

    ballot_id: Mapped[str] = mapped_column(
        ForeignKey("ballots.id", ondelete="CASCADE"), primary_key=True
    )
    option_id: Mapped[int] = mapped_column(
        ForeignKey("options.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # The choice's place in the voter's order (1 first): a ranked poll's preference; the
    # other kinds keep the order the choices were sent in.
    rank: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class VoteClaim(Base):
    """The database's backstop for the duplicate check: one row per poll and voter
    identity, held by the identity's latest ballot until `expires_at` (a windowed poll's
    window; None: one vote ever).

    Redis answers the duplicate check first; this primary key makes a second ballot from
    the same identity impossible even after Redis lost its keys, or released the claim of
    a request it took for dead.
    """

    __tablename__ = "vote_claims"

    poll_id: Mapped[str] = mapped_column(
        ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True
    )
    identity: Mapped[str] = mapped_column(String(40), primary_key=True)
    ballot_id: Mapped[str] = mapped_column(
        ForeignKey("ballots.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime | None]


class Webhook(Base):
    """An owner's endpoint told about events; its secret signs every delivery."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    poll_id: Mapped[str | None] = mapped_column(
        ForeignKey("polls.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One message to one webhook, sent until it succeeds or its retries run out."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_webhook_created", "webhook_id", "created_at"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # One message per event and webhook, however many workers noticed the event.
        Index("ix_webhook_deliveries_message", "webhook_id", "message_id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))  # pending, succeeded, failed
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    attempts: Mapped[list[WebhookAttempt]] = relationship(
        order_by="WebhookAttempt.number", cascade="all, delete-orphan", passive_deletes=True
    )


class WebhookAttempt(Base):
    """One try at sending a delivery: when, the receiver's status code, or the error."""

    __tablename__ = "webhook_attempts"

    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(primary_key=True)
    attempted_at: Mapped[datetime]
    response_status: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int]


class SpentChallenge(Base):
    """A proof-of-work solution spent while Redis could not be reached (Redis remembers
    the others): a solution is used once either way. Purged once expired."""

    __tablename__ = "spent_challenges"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    poll_id: Mapped[str] = mapped_column(ForeignKey("polls.id", ondelete="CASCADE"))
    spender: Mapped[str] = mapped_column(String(32))  # the vote attempt that spent it
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ConsoleSession(Base):
    """A console sign-in. The cookie carries a random session id; only its SHA-256 is
    kept (ids carry 256 random bits), so a copy of this table opens no console."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the id
    api_key_id: Mapped[int] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]
