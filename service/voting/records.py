"""Ballots in the database, the record of every vote: writing one, and what the vote asks
of the record when Redis cannot say.

The `vote_claims` rows back the duplicate check up even when Redis has lost its keys or
released a claim of a request that was still alive: a ballot is written only with all
of its voter's claims, one row per poll and identity, taken when absent or expired (a
windowed poll's claim expires with its window; "one vote ever" never does). The unique
(poll, Idempotency-Key hash) index keeps a key to one ballot.
"""

from __future__ import annotations

import threading
import weakref
from datetime import UTC, datetime

from sqlalchemy import Select, bindparam, exists, func, insert, or_, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, scoped_session

from service.infra import metrics
from service.infra.batching import Coalescer
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

# PostgreSQL, a batch of ballots (group commit): the same statement over arrays, one row
# per ballot, claim and choice. A ballot is written when it got all of its claims; one
# that got none is left out (its voter is told by the database, alone); one that got
# only some fails the statement whole (a claim of a ballot not written breaks its
# foreign key), and so does a batch of two ballots claiming the same identity: the batch
# is then written again ballot by ballot. Datetimes are naive UTC, as UTCDateTime stores.
_INSERT_VOTES_POSTGRESQL = text("""
WITH claims AS (
  INSERT INTO vote_claims (poll_id, identity, ballot_id, expires_at)
  SELECT * FROM unnest(CAST(:claim_polls AS varchar[]), CAST(:claim_identities AS varchar[]),
                       CAST(:claim_ballots AS varchar[]), CAST(:claim_untils AS timestamp[]))
  ON CONFLICT (poll_id, identity) DO UPDATE
    SET ballot_id = EXCLUDED.ballot_id, expires_at = EXCLUDED.expires_at
    WHERE vote_claims.expires_at <= :earliest
  RETURNING ballot_id
), input AS (
  SELECT * FROM unnest(
    CAST(:ids AS varchar[]), CAST(:poll_ids AS varchar[]), CAST(:created_ats AS timestamp[]),
    CAST(:others AS varchar[]), CAST(:comments AS text[]), CAST(:contexts AS varchar[]),
    CAST(:cookie_hashes AS varchar[]), CAST(:ip_hashes AS varchar[]),
    CAST(:user_hashes AS varchar[]), CAST(:receipt_hashes AS varchar[]),
    CAST(:idempotency_hashes AS varchar[]), CAST(:rankings AS text[]),
    CAST(:claim_counts AS integer[]))
  AS b(id, poll_id, created_at, other, comment, context, cookie_hash, ip_hash, user_hash,
       receipt_hash, idempotency_hash, ranking, claim_count)
), ballot AS (
  INSERT INTO ballots (id, poll_id, created_at, other, comment, context, cookie_hash,
                       ip_hash, user_hash, receipt_hash, idempotency_hash, comment_hidden,
                       ranking)
  SELECT id, poll_id, created_at, other, comment, context, cookie_hash, ip_hash, user_hash,
         receipt_hash, idempotency_hash, false, ranking
  FROM input
  WHERE claim_count = (SELECT count(*) FROM claims WHERE claims.ballot_id = input.id)
  RETURNING id
), choices AS (
  INSERT INTO ballot_choices (ballot_id, option_id, rank)
  SELECT * FROM unnest(CAST(:choice_ballots AS varchar[]), CAST(:choice_options AS integer[]),
                       CAST(:choice_ranks AS integer[])) AS c(ballot_id, option_id, rank)
  WHERE c.ballot_id IN (SELECT id FROM ballot)
)
SELECT id FROM ballot
""").bindparams(bindparam("earliest", type_=UTCDateTime()))

# SQLite: a voter's claim, inserted or taking over an expired one; built once, run with
# executemany over every claim of a vote (or of a batch), whose row count says how many
# were got.
_CLAIMS = VoteClaim.__table__
_TAKE_CLAIM_SQLITE = sqlite_insert(_CLAIMS)
_TAKE_CLAIM_SQLITE = _TAKE_CLAIM_SQLITE.on_conflict_do_update(
    index_elements=[_CLAIMS.c.poll_id, _CLAIMS.c.identity],
    set_={"ballot_id": _TAKE_CLAIM_SQLITE.excluded.ballot_id,
          "expires_at": _TAKE_CLAIM_SQLITE.excluded.expires_at},
    where=_CLAIMS.c.expires_at <= bindparam("created_at", type_=UTCDateTime()))


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
        if _current(session).in_transaction():
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
        group_commit(engine).write(vote)
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
            taken = connection.execute(_TAKE_CLAIM_SQLITE, self.claim_rows()).rowcount
            if taken != len(claims):
                raise AlreadyRecorded()

    def claim_rows(self) -> list[dict]:
        """SQLite: the parameters of _TAKE_CLAIM_SQLITE, one set per claim."""
        row = self.row
        return [{"poll_id": row["poll_id"], "identity": identity, "ballot_id": row["id"],
                 "expires_at": self.claims_until, "created_at": row["created_at"]}
                for identity in self.claims]


def _write_one(engine: Engine, vote: _Vote) -> None:
    """Write one ballot, committed (on PostgreSQL one statement in autocommit)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            vote.insert(connection)
        return
    with engine.begin() as connection:
        vote.insert(connection)  # leaving the block on AlreadyRecorded rolls it back


class _Rewrite(Exception):
    """A batch is not taken whole: each of its ballots is written alone."""


class GroupCommit:
    """Group commit, per process and database: the ballots of concurrent votes are
    written in one statement (PostgreSQL) or transaction (SQLite) and one commit (the
    WAL flush, the write lock), each vote still told its own outcome, and only once
    committed (service/infra/batching.py coalesces them). A batch the database does not
    take whole (a claim held by another ballot of it, a unique key, a lock, the database
    away) is written again ballot by ballot, so each vote gets the answer it would have
    got alone: the guarantees are the single write's."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.coalescer: Coalescer[_Vote, None] = Coalescer(self._write)

    def write(self, vote: _Vote) -> None:
        """Write the ballot, committed; the single write's exception if it failed."""
        self.coalescer.submit(vote)

    def _write(self, votes: list[_Vote]) -> list[BaseException | None]:
        if len(votes) > 1:
            try:
                refused = self._write_batch(votes)
            except Exception:  # written again ballot by ballot below
                pass
            else:
                metrics.BALLOT_BATCHES.observe(len(votes))
                return [AlreadyRecorded() if vote.row["id"] in refused else None
                        for vote in votes]
        outcomes: list[BaseException | None] = []
        for vote in votes:
            try:
                _write_one(self.engine, vote)
            except Exception as error:  # its own request raises it
                outcomes.append(error)
            else:
                outcomes.append(None)
                metrics.BALLOT_BATCHES.observe(1)
        return outcomes

    def _write_batch(self, votes: list[_Vote]) -> set[str]:
        """Write the ballots in one transaction: the ids of those the database refused
        (each of whose claims were all held already); an exception when the batch must
        be written ballot by ballot."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as connection:
                written = set(connection.scalars(_INSERT_VOTES_POSTGRESQL,
                                                 _batch_arrays(votes)))
            return {vote.row["id"] for vote in votes} - written
        with self.engine.begin() as connection:
            connection.execute(_INSERT_BALLOT, [{**vote.row, "comment_hidden": False}
                                                for vote in votes])
            choices = [{"ballot_id": vote.row["id"], "option_id": option_id, "rank": rank}
                       for vote in votes
                       for rank, option_id in enumerate(vote.option_ids, start=1)]
            if choices:
                connection.execute(_INSERT_CHOICES, choices)
            claims = [claim for vote in votes for claim in vote.claim_rows()]
            if claims and connection.execute(_TAKE_CLAIM_SQLITE, claims).rowcount != len(claims):
                raise _Rewrite()  # rolled back: which one, each ballot alone will say
        return set()


def _batch_arrays(votes: list[_Vote]) -> dict:
    """The PostgreSQL batch statement's arrays: a column per field, naive UTC datetimes."""
    def naive(moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)

    rows = [vote.row for vote in votes]
    columns = {name: [row[name] for row in rows] for name in (
        "other", "comment", "context", "cookie_hash", "ip_hash", "user_hash", "receipt_hash",
        "idempotency_hash", "ranking")}
    claims = [(vote, identity) for vote in votes for identity in vote.claims]
    choices = [(vote.row["id"], option_id, rank) for vote in votes
               for rank, option_id in enumerate(vote.option_ids, start=1)]
    return {
        "ids": [row["id"] for row in rows], "poll_ids": [row["poll_id"] for row in rows],
        "created_ats": [naive(row["created_at"]) for row in rows],
        "others": columns["other"], "comments": columns["comment"],
        "contexts": columns["context"], "cookie_hashes": columns["cookie_hash"],
        "ip_hashes": columns["ip_hash"], "user_hashes": columns["user_hash"],
        "receipt_hashes": columns["receipt_hash"],
        "idempotency_hashes": columns["idempotency_hash"], "rankings": columns["ranking"],
        "claim_counts": [len(vote.claims) for vote in votes],
        "claim_polls": [vote.row["poll_id"] for vote, _identity in claims],
        "claim_identities": [identity for _vote, identity in claims],
        "claim_ballots": [vote.row["id"] for vote, _identity in claims],
        "claim_untils": [naive(vote.claims_until) for vote, _identity in claims],
        # A claim expired for the batch's earliest vote is expired for all of them.
        "earliest": min(row["created_at"] for row in rows),
        "choice_ballots": [ballot for ballot, _option, _rank in choices],
        "choice_options": [option for _ballot, option, _rank in choices],
        "choice_ranks": [rank for _ballot, _option, rank in choices],
    }


_group_commits: weakref.WeakKeyDictionary[Engine, GroupCommit] = weakref.WeakKeyDictionary()
_group_commits_lock = threading.Lock()


def group_commit(engine: Engine) -> GroupCommit:
    """The process's group commit for this database."""
    found = _group_commits.get(engine)
    if found is None:
        with _group_commits_lock:
            found = _group_commits.setdefault(engine, GroupCommit(engine))
    return found


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


def own_ballot(*, session: Session, poll, voter: Voter, secret: str) -> Ballot | None:
    """The ballot this browser cast (by its voter cookie alone, never by its address: a
    neighbour's vote is not theirs to see or change), if any."""
    if voter.cookie_is_new:
        return None
    return session.scalar(select(Ballot).where(
        Ballot.poll_id == poll.id,
        Ballot.cookie_hash == keyed_hash(secret, poll.id, "cookie", voter.cookie_id),
    ).order_by(Ballot.created_at.desc()).limit(1))


def has_voted(*, session: Session | scoped_session, poll, voter: Voter, secret: str) -> bool:
    """Whether this browser (or, where the poll checks addresses, this address) voted."""
    return voted_as(session=session, poll_id=poll.id,
                    identities=voted_identities(poll=poll, voter=voter, secret=secret))


def voted_identities(*, poll, voter: Voter, secret: str) -> tuple[str | None, str | None]:
    """What has_voted looks a voter up by: her cookie's keyed hash (None for a new
    cookie) and her address's (None where the poll does not check addresses)."""
    cookie = None if voter.cookie_is_new else keyed_hash(secret, poll.id, "cookie",
                                                          voter.cookie_id)
    address = (keyed_hash(secret, poll.id, "ip", voter.address)
               if "ip" in CHECKED_IDENTITIES[poll.duplicate_check] else None)
    return cookie, address


def voted_as(*, session: Session | scoped_session, poll_id: str,
             identities: tuple[str | None, str | None]) -> bool:
    """Whether a ballot of the poll has either of these identities (voted_identities).

    Asked on every widget read of a visitor not seen before, so read as cheaply as the
    database allows: a statement built once, on a connection of its own in autocommit
    while the session holds no transaction (on PostgreSQL the SELECT alone, without the
    BEGIN and ROLLBACK round trips of a session's read); in the session's transaction
    when it holds one (a request holds one connection at a time)."""
    cookie, address = identities
    if cookie is None and address is None:
        return False
    parameters = {"poll_id": poll_id, "cookie_hash": cookie, "ip_hash": address}
    statement = _VOTED[cookie is not None, address is not None]
    if _current(session).in_transaction():
        return bool(session.scalar(statement, parameters))
    with session.get_bind().connect().execution_options(
            isolation_level="AUTOCOMMIT") as connection:
        return bool(connection.scalar(statement, parameters))


def _voted_where(*conditions) -> Select:
    ballots = Ballot.__table__
    return select(exists().where(ballots.c.poll_id == bindparam("poll_id"), or_(*conditions)))


# has_voted's statements, by (by cookie, by address): built once, so that SQLAlchemy's
# compiled cache finds them without working out a new statement's key each time.
_COOKIE = Ballot.__table__.c.cookie_hash == bindparam("cookie_hash")
_ADDRESS = Ballot.__table__.c.ip_hash == bindparam("ip_hash")
_VOTED = {(True, False): _voted_where(_COOKIE), (False, True): _voted_where(_ADDRESS),
          (True, True): _voted_where(_COOKIE, _ADDRESS)}


def _current(session: Session | scoped_session) -> Session:
    """The request's session itself, where `session` is its scoped registry."""
    return session() if isinstance(session, scoped_session) else session
