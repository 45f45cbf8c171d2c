"""Ballots in the database, the record of every vote: writing one, and what the vote asks
of the record when Redis cannot say.

The `vote_claims` rows back the duplicate check up even when Redis has lost its keys or
released a claim of a request that was still alive: a ballot is written only with all
of its voter's claims, one row per poll and identity, taken when absent or expired (a
windowed poll's claim expires with its window; "one vote ever" never does). The unique
(poll, Idempotency-Key hash) index keeps a key to one ballot.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, exists, func, insert, or_, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, scoped_session

from service.infra.errors import PollClosed, PollFull
from service.infra.identity import Voter, keyed_hash
from service.infra.models import (
    CLOSED_FULL,
    Ballot,
    BallotChoice,
    Poll,
    SpentChallenge,
    UTCDateTime,
    VoteClaim,
)
from service.voting.ballot import CHECKED_IDENTITIES
from service.voting.ports import AlreadyRecorded, Recorded

# The hot insert, in SQLAlchemy Core: compiled once, no ORM objects, one transaction.
_INSERT_BALLOT = insert(Ballot.__table__)
_INSERT_CHOICES = insert(BallotChoice.__table__)
# On PostgreSQL, one statement takes the claims and writes the ballot and its choices only
# if it got them all (its CTEs' foreign keys are checked at its end: a claim taken for a
# ballot not written fails it whole) and, run in autocommit, commits them: one network
# round trip instead of five (BEGIN, three INSERTs, COMMIT). A claim held by a ballot not
# committed yet makes it wait for that ballot's fate.
_INSERT_VOTE_POSTGRESQL = text("""
WITH claims AS (
  INSERT INTO vote_claims (poll_id, identity, ballot_id, expires_at)
  SELECT :poll_id, identity, :id, :claims_until
  FROM unnest(CAST(:identities AS varchar[])) AS identity
  ON CONFLICT (poll_id, identity) DO UPDATE
    SET ballot_id = EXCLUDED.ballot_id, expires_at = EXCLUDED.expires_at
    WHERE vote_claims.expires_at <= :created_at
  RETURNING 1
), ballot AS (
  INSERT INTO ballots (id, poll_id, created_at, other, comment, context, cookie_hash,
                       ip_hash, user_hash, receipt_hash, idempotency_hash, comment_hidden,
                       ranking)
  SELECT :id, :poll_id, :created_at, :other, :comment, :context, :cookie_hash, :ip_hash,
         :user_hash, :receipt_hash, :idempotency_hash, false, :ranking
  WHERE (SELECT count(*) FROM claims) = cardinality(CAST(:identities AS varchar[]))
  RETURNING 1
), choices AS (
  INSERT INTO ballot_choices (ballot_id, option_id, rank)
  SELECT :id, option_id, rank
  FROM unnest(CAST(:option_ids AS integer[])) WITH ORDINALITY AS chosen(option_id, rank)
  WHERE EXISTS (SELECT FROM ballot)
)
SELECT count(*) FROM ballot
""").bindparams(bindparam("created_at", type_=UTCDateTime()),
                bindparam("claims_until", type_=UTCDateTime()))


class SqlBallots:
    """The vote's BallotStore on the app's SQLAlchemy session."""

    def __init__(self, session: Session | scoped_session) -> None:
        self.session = session

    def record(self, row: dict, *, option_ids: tuple[int, ...], claims: list[str],
               claims_until: datetime | None, limited: bool = False) -> bool:
        """Write the ballot, its choices and its claims (until `claims_until`, None for
        ever), committed, on a connection of its own (the session holds no transaction
        open meanwhile); AlreadyRecorded when a claim is held. `limited` (the poll has a
        max_votes): PollFull when no place is left; True when this ballot took the last
        place and closed the poll."""
        try:
            return self._write(row, option_ids=option_ids, claims=claims,
                               claims_until=claims_until, limited=limited)
        except IntegrityError as error:
            self.session.rollback()
            raise AlreadyRecorded() from error
        except BaseException:
            self.session.rollback()
            raise

    def _write(self, row: dict, *, option_ids: tuple[int, ...], claims: list[str],
               claims_until: datetime | None, limited: bool) -> bool:
        session = self.session
        if (session() if isinstance(session, scoped_session) else session).in_transaction():
            # What the request read (a poll loaded from the database, ...) is done with:
            # the session gives its connection back before the write takes one, so no
            # request ever holds two (with the pool full of such requests, none would get
            # its second).
            session.commit()
        engine = session.get_bind()
        vote = _Vote(row, option_ids, claims, claims_until)
        if limited:
            with engine.begin() as connection:
                return _write_in_place(connection, vote)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                vote.insert(connection)
            return False
        with engine.begin() as connection:
            vote.insert(connection)  # leaving the block on AlreadyRecorded rolls it back
        return False

    def keyed(self, *, poll_id: str, key_hash: str) -> Recorded | None:
        """The ballot recorded with this Idempotency-Key, if any."""
        found = self.session.execute(
            select(Ballot.id, Ballot.created_at)
            .where(Ballot.poll_id == poll_id, Ballot.idempotency_hash == key_hash)
        ).first()
        return None if found is None else Recorded(*found)

    def claimed_kind(self, *, poll_id: str, identities: list[str], at: datetime) -> str | None:
        """Which of the identities the database holds a claim for at `at`."""
        held = self.session.scalar(
            select(VoteClaim.identity).where(
                VoteClaim.poll_id == poll_id, VoteClaim.identity.in_(identities),
                or_(VoteClaim.expires_at.is_(None), VoteClaim.expires_at > at),
            ).limit(1)
        )
        return held.split(":", 1)[0] if held else None

    def spend_challenge(self, *, poll_id: str, token: str, spender: str,
                        expires_at: datetime) -> bool:
        """Spend a proof-of-work solution in the database (Redis cannot say), committed on
        a connection of its own: whether it is this attempt's (False: used already)."""
        engine = self.session.get_bind()
        try:
            with engine.begin() as connection:
                connection.execute(insert(SpentChallenge.__table__), {
                    "token": token, "poll_id": poll_id, "spender": spender,
                    "expires_at": expires_at})
        except IntegrityError:
            with engine.connect() as connection:
                held = connection.scalar(select(SpentChallenge.spender)
                                         .where(SpentChallenge.token == token))
            return held == spender
        return True

    def exists(self, ballot_id: str) -> bool:
        """Whether the ballot is committed (read afresh: the session may hold it already)."""
        return bool(self.session.scalar(select(exists().where(Ballot.id == ballot_id))))


class _Vote:
    """One ballot's rows, and how to insert them on either engine."""

    def __init__(self, row: dict, option_ids: tuple[int, ...], claims: list[str],
                 claims_until: datetime | None) -> None:
        self.row, self.option_ids, self.claims = row, option_ids, claims
        self.claims_until = claims_until

    def insert(self, connection) -> None:
        """Insert the ballot, its choices and its claims; AlreadyRecorded when a claim is
        held (the caller's transaction is then rolled back)."""
        row, claims = self.row, self.claims
        if connection.dialect.name == "postgresql":
            written = connection.scalar(_INSERT_VOTE_POSTGRESQL, {
                **row, "option_ids": list(self.option_ids), "identities": claims,
                "claims_until": self.claims_until})
            if not written:
                raise AlreadyRecorded()
            return
        connection.execute(_INSERT_BALLOT, {**row, "comment_hidden": False})
        if self.option_ids:
            connection.execute(_INSERT_CHOICES, [
                {"ballot_id": row["id"], "option_id": option_id, "rank": rank}
                for rank, option_id in enumerate(self.option_ids, start=1)])
        if claims:
            taken = connection.execute(_take_claims(row, claims, self.claims_until)).rowcount
            if taken != len(claims):
                raise AlreadyRecorded()


def _write_in_place(connection, vote: _Vote) -> bool:
    """Write a ballot of a poll with max_votes in the transaction of `connection`, only if
    a place is left; close the poll when it takes the last one. The database, the record,
    decides: the write lock on the poll's row comes first (PostgreSQL locks the row,
    SQLite the database), so concurrent votes of the poll take places one at a time,
    whether Redis is there or not, and the ballots never exceed max_votes."""
    poll_id, now = vote.row["poll_id"], vote.row["created_at"]
    polls = Poll.__table__
    connection.execute(update(polls).where(polls.c.id == poll_id)
                       .values(max_votes=polls.c.max_votes))
    max_votes, closed_at, reason = connection.execute(
        select(polls.c.max_votes, polls.c.closed_at, polls.c.closed_reason)
        .where(polls.c.id == poll_id)).one()
    if closed_at is not None:
        raise PollFull() if reason == CLOSED_FULL else PollClosed("This poll is closed.")
    taken = 0
    if max_votes is not None:
        taken = connection.scalar(select(func.count()).select_from(Ballot.__table__)
                                  .where(Ballot.__table__.c.poll_id == poll_id))
        if taken >= max_votes:
            raise PollFull()
    vote.insert(connection)
    if max_votes is None or taken + 1 < max_votes:
        return False
    connection.execute(update(polls).where(polls.c.id == poll_id).values(
        closed_at=now, closed_reason=CLOSED_FULL, updated_at=now))
    return True


def _take_claims(row: dict, claims: list[str], until: datetime | None):
    """SQLite: insert the voter's claims, or take over expired ones; the statement's row
    count says how many it got."""
    table = VoteClaim.__table__
    statement = sqlite_insert(table).values([
        {"poll_id": row["poll_id"], "identity": identity, "ballot_id": row["id"],
         "expires_at": until} for identity in claims])
    return statement.on_conflict_do_update(
        index_elements=[table.c.poll_id, table.c.identity],
        set_={"ballot_id": statement.excluded.ballot_id,
              "expires_at": statement.excluded.expires_at},
        where=table.c.expires_at <= row["created_at"])


def own_ballot(*, session: Session, poll, voter: Voter, secret: str) -> Ballot | None:
    """The ballot this browser cast (by its voter cookie alone, never by its address: a
    neighbour's vote is not theirs to see or change), if any."""
    if voter.cookie_is_new:
        return None
    return session.scalar(select(Ballot).where(
        Ballot.poll_id == poll.id,
        Ballot.cookie_hash == keyed_hash(secret, poll.id, "cookie", voter.cookie_id),
    ).order_by(Ballot.created_at.desc()).limit(1))


def has_voted(*, session: Session, poll, voter: Voter, secret: str) -> bool:
    """Whether this browser (or, where the poll checks addresses, this address) voted."""
    conditions = []
    if not voter.cookie_is_new:
        conditions.append(
            Ballot.cookie_hash == keyed_hash(secret, poll.id, "cookie", voter.cookie_id)
        )
    if "ip" in CHECKED_IDENTITIES[poll.duplicate_check]:
        conditions.append(Ballot.ip_hash == keyed_hash(secret, poll.id, "ip", voter.address))
    if not conditions:
        return False
    return bool(
        session.scalar(select(exists().where(Ballot.poll_id == poll.id, or_(*conditions))))
    )
