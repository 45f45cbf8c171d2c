"""Ballots in the database, the record of every vote: writing one, and what the vote asks
of the record when Redis cannot say.

The `vote_claims` primary key backs "one vote ever" up even when Redis has lost its keys,
and the unique (poll, Idempotency-Key hash) index keeps a key to one ballot.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, exists, insert, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, scoped_session

from service.infra.identity import Voter, keyed_hash
from service.infra.models import Ballot, BallotChoice, UTCDateTime, VoteClaim
from service.voting.ballot import CHECKED_IDENTITIES
from service.voting.ports import AlreadyRecorded, Recorded

# The hot insert, in SQLAlchemy Core: compiled once, no ORM objects, one transaction.
_INSERT_BALLOT = insert(Ballot.__table__)
_INSERT_CHOICES = insert(BallotChoice.__table__)
_INSERT_CLAIMS = insert(VoteClaim.__table__)
# On PostgreSQL, one statement writes all three (its CTEs' foreign keys are checked at its
# end) and, run in autocommit, commits them: one network round trip instead of five
# (BEGIN, three INSERTs, COMMIT). A single statement is atomic: all rows or none.
_INSERT_VOTE_POSTGRESQL = text("""
WITH ballot AS (
  INSERT INTO ballots (id, poll_id, created_at, other, comment, context, cookie_hash,
                       ip_hash, user_hash, receipt_hash, idempotency_hash, comment_hidden)
  VALUES (:id, :poll_id, :created_at, :other, :comment, :context, :cookie_hash, :ip_hash,
          :user_hash, :receipt_hash, :idempotency_hash, false)
), choices AS (
  INSERT INTO ballot_choices (ballot_id, option_id)
  SELECT :id, option_id FROM unnest(CAST(:option_ids AS integer[])) AS option_id
)
INSERT INTO vote_claims (poll_id, identity, ballot_id)
SELECT :poll_id, identity, :id FROM unnest(CAST(:identities AS varchar[])) AS identity
""").bindparams(bindparam("created_at", type_=UTCDateTime()))
IDENTITY_COLUMNS = {"cookie": Ballot.cookie_hash, "ip": Ballot.ip_hash, "user": Ballot.user_hash}


class SqlBallots:
    """The vote's BallotStore on the app's SQLAlchemy session."""

    def __init__(self, session: Session | scoped_session) -> None:
        self.session = session

    def record(self, row: dict, *, option_ids: tuple[int, ...], claims: list[str]) -> None:
        """Write the ballot, its choices and (one vote ever) its claims, committed, on a
        connection of its own (the session holds no transaction open meanwhile)."""
        try:
            self._write(row, option_ids=option_ids, claims=claims)
        except IntegrityError as error:
            self.session.rollback()
            raise AlreadyRecorded() from error
        except BaseException:
            self.session.rollback()
            raise

    def _write(self, row: dict, *, option_ids: tuple[int, ...], claims: list[str]) -> None:
        session = self.session
        if (session() if isinstance(session, scoped_session) else session).in_transaction():
            # What the request read (a poll loaded from the database, ...) is done with:
            # the session gives its connection back before the write takes one, so no
            # request ever holds two (with the pool full of such requests, none would get
            # its second).
            session.commit()
        engine = session.get_bind()
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(_INSERT_VOTE_POSTGRESQL,
                                   {**row, "option_ids": list(option_ids), "identities": claims})
            return
        with engine.begin() as connection:
            connection.execute(_INSERT_BALLOT, {**row, "comment_hidden": False})
            if option_ids:
                connection.execute(_INSERT_CHOICES, [
                    {"ballot_id": row["id"], "option_id": option_id} for option_id in option_ids])
            if claims:
                connection.execute(_INSERT_CLAIMS, [
                    {"poll_id": row["poll_id"], "identity": identity, "ballot_id": row["id"]}
                    for identity in claims])

    def keyed(self, *, poll_id: str, key_hash: str) -> Recorded | None:
        """The ballot recorded with this Idempotency-Key, if any."""
        found = self.session.execute(
            select(Ballot.id, Ballot.created_at)
            .where(Ballot.poll_id == poll_id, Ballot.idempotency_hash == key_hash)
        ).first()
        return None if found is None else Recorded(*found)

    def claimed_kind(self, *, poll_id: str, identities: list[str]) -> str | None:
        """Which of the identities the database already holds a claim for."""
        held = self.session.scalar(
            select(VoteClaim.identity).where(
                VoteClaim.poll_id == poll_id, VoteClaim.identity.in_(identities)
            ).limit(1)
        )
        return held.split(":", 1)[0] if held else None

    def exists(self, ballot_id: str) -> bool:
        return self.session.get(Ballot, ballot_id) is not None

    def voted_since(self, *, poll_id: str, hashes: dict[str, str], kinds: tuple[str, ...],
                    since: datetime) -> str | None:
        """Without Redis, a windowed duplicate check judged from the recorded ballots."""
        for kind in kinds:
            seen = self.session.scalar(select(exists().where(
                Ballot.poll_id == poll_id, Ballot.created_at > since,
                IDENTITY_COLUMNS[kind] == hashes[kind])))
            if seen:
                return kind
        return None


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
