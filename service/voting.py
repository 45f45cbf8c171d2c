"""The vote pipeline: validate -> identify -> claim (Redis, atomic) -> record (database,
committed) -> count (Redis tallies).

The order is the guarantee: a ballot is committed before any tally counts it and before
the voter hears "201"; when the commit fails, the claim is released and nothing counts.
The database's `vote_claims` primary key backs "one vote ever" up even when Redis has
lost its keys, and its unique (poll, Idempotency-Key hash) index keeps a key to one ballot.
Every ballot stores the SHA-256 of its receipt, the voter's secret to see or withdraw it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import string
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, exists, insert, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, scoped_session

from service import idempotency, integrity, keys, ratelimits, tallies, webhooks
from service.errors import DuplicateVote, PollClosed, ServiceError, ValidationFailed
from service.extensions import RedisHandle
from service.identity import Voter, keyed_hash
from service.models import Ballot, BallotChoice, Poll, UTCDateTime, VoteClaim
from service.redis_client import LazyCluster

log = logging.getLogger(__name__)

BALLOT_ID_ALPHABET = string.ascii_letters + string.digits
BALLOT_ID_LENGTH = 16
# Longer than any request may run (gunicorn kills a worker after its 30 s timeout): a
# claim this old without its ballot was left by a request that died; it blocks nobody.
ORPHAN_CLAIM_SECONDS = 45
RECEIPT_BYTES = 32  # a receipt withdraws a vote: as unguessable as an API key
ISO_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
# Which identities each duplicate check compares; a vote is refused if any was seen.
CHECKED_IDENTITIES = {
    "none": (),
    "cookie": ("cookie",),
    "ip": ("ip",),
    "cookie_and_ip": ("cookie", "ip"),
    "user": ("user",),
}
DUPLICATE_DETAILS = {
    "cookie": "This browser has already voted in this poll.",
    "ip": "A vote from this network address has already been counted in this poll.",
    "user": "This account has already voted in this poll.",
}


@dataclass(frozen=True)
class CastVote:
    ballot_id: str
    created_at: datetime
    receipt: str
    # True when an Idempotency-Key's ballot already existed: nothing was counted again.
    replayed: bool = False
    # The poll's tally right after this ballot was counted (asked with `read_tally`);
    # None when Redis could not say (the caller reads it, rebuilding it if need be).
    counts: tallies.Counts | None = None
    # A replayed Idempotency-Key's stored answer (without its receipt), when Redis kept it.
    answer: dict | None = None
    # The Idempotency-Key entry this request still holds (its answer not kept with the
    # count): the caller keeps the answer there (idempotency.finish).
    key_claim: idempotency.Claim | None = None


class StalePoll(Exception):
    """The caller's unverified copy of the poll is out of date, or could not be checked:
    load the poll afresh and vote again. Nothing was counted."""


@dataclass
class Attempt:
    """What a vote request has counted so far: its rate-limit hit, and its outcome in the
    integrity numbers (service/api/votes.py counts whatever the pipeline did not)."""

    limit_counted: bool = False
    outcome_counted: bool = False


def new_ballot_id() -> str:
    return "".join(secrets.choice(BALLOT_ID_ALPHABET) for _ in range(BALLOT_ID_LENGTH))


def idempotency_hash(secret: str, poll_id: str, idempotency_key: str) -> str:
    """The per-poll keyed hash an Idempotency-Key is known by (never the key itself)."""
    return keyed_hash(secret, poll_id, "idempotency", idempotency_key)


def new_receipt(*, secret: str, poll_id: str, ballot_id: str,
                idempotency_key: str | None) -> str:
    """The voter's receipt: random, or, for a keyed vote, derived from the key and the
    ballot so a retry can be answered with it again although only its hash is kept."""
    if idempotency_key is None:
        return secrets.token_urlsafe(RECEIPT_BYTES)
    message = f"receipt\x00{poll_id}\x00{ballot_id}\x00{idempotency_key}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def receipt_hash(receipt: str) -> str:
    """What is stored of a receipt: its SHA-256 (receipts carry 256 random bits)."""
    return hashlib.sha256(receipt.encode()).hexdigest()


def user_signature(secret: str, poll_id: str, user_id: str) -> str:
    """The signature an owner's site sends for a logged-in user: HMAC-SHA256, hex."""
    return hmac.new(secret.encode(), f"{poll_id}:{user_id}".encode(), hashlib.sha256).hexdigest()


def validate_vote(poll: Poll, vote: dict) -> list[int]:
    """Check the vote against the poll's rules; return the chosen option ids."""
    errors: dict[str, list[str]] = {}
    choices: list[int] = vote["choices"]
    known = {option.id for option in poll.options}
    messages = [f"Unknown option {choice}." for choice in choices if choice not in known]
    if len(set(choices)) != len(choices):
        messages.append("Each option can be chosen only once.")
    if len(choices) > poll.max_choices:
        messages.append(f"Choose at most {poll.max_choices} option(s).")
    other = vote["other"]
    if other is not None and not poll.allow_other:
        errors["other"] = ["This poll does not accept other answers."]
    if not choices and (other is None or not poll.allow_other):
        messages.append("Choose at least one option.")
    if messages:
        errors["choices"] = messages
    if vote["comment"] is not None and not poll.allow_comment:
        errors["comment"] = ["This poll does not accept comments."]
    if poll.duplicate_check == "user":
        voter = vote["voter"]
        if voter is None:
            errors["voter"] = ["This poll needs the site's signed user: {\"id\", \"sig\"}."]
        elif not hmac.compare_digest(
            voter["sig"].lower(), user_signature(poll.signing_secret, poll.id, voter["id"])
        ):
            errors["voter.sig"] = ["The signature does not match this poll and user id."]
    if errors:
        raise ValidationFailed(errors)
    return choices


def voter_hashes(*, poll: Poll, voter: Voter, vote: dict, secret: str) -> dict[str, str]:
    """The voter's per-poll keyed hashes, by identity kind."""
    hashes = {
        "cookie": keyed_hash(secret, poll.id, "cookie", voter.cookie_id),
        "ip": keyed_hash(secret, poll.id, "ip", voter.address),
    }
    if poll.duplicate_check == "user" and vote.get("voter"):
        hashes["user"] = keyed_hash(secret, poll.id, "user", vote["voter"]["id"])
    return hashes


def cast_vote(*, session: Session, redis: RedisHandle, poll: Poll, vote: dict, voter: Voter,
              secret: str, now: datetime, idempotency_key: str | None = None,
              limits: tuple[ratelimits.Limit, ...] = (), attempt: Attempt | None = None,
              read_tally: bool = False, verified: bool = True) -> CastVote:
    """Record one vote, or raise PollClosed / ValidationFailed / DuplicateVote /
    RateLimited / IdempotencyKeyInUse.

    Two Redis round trips, because "counted only once committed" puts the database
    commit between them: lua/admit.lua before it (the rate `limits`, the Idempotency-Key,
    the duplicate-check claim), lua/count.lua after it (the count, the live-stream
    message, the `vote.created` webhook note, the integrity count with an `attempt`, and
    the new tally with `read_tally`). One round trip cannot do: counting before the
    commit would count a ballot whose commit then fails.

    With an `idempotency_key`, a key already answered is answered again (`replayed`),
    from Redis, or from the database, whose unique key holds even when Redis forgot it.

    A `poll` that is not `verified` (a process's cached copy whose version token nobody
    checked) is checked inside lua/admit.lua; StalePoll when it is out of date, or before
    it could be checked when it would refuse the vote: nothing was counted then.
    """
    keyed = None if idempotency_key is None else idempotency_hash(secret, poll.id, idempotency_key)

    def refuse(error: ServiceError, *, key_checked: bool = False) -> CastVote:
        """A refused vote, unless its key was answered: then that answer is given again,
        as Redis kept it, or from the recorded ballot."""
        if not verified:
            raise StalePoll()  # refuse only by the poll as it is now
        if keyed is not None and not key_checked:
            claim = idempotency.begin(redis=redis, poll_id=poll.id, key=idempotency_key,
                                      vote=vote, secret=secret)
            if claim.answer is not None:
                return _replay_answer(claim.answer, secret=secret, poll_id=poll.id,
                                      idempotency_key=idempotency_key)
            idempotency.abort(redis=redis, claim=claim)
        if keyed is not None:
            earlier = _keyed_ballot(session=session, poll=poll, keyed=keyed)
            if earlier is not None:
                return _replay(earlier, secret=secret, idempotency_key=idempotency_key)
        raise error

    status = poll.status_at(now)
    if status != "open":
        return refuse(PollClosed(
            "This poll has not opened yet." if status == "scheduled" else "This poll is closed."
        ))
    try:
        choices = validate_vote(poll, vote)
    except ValidationFailed as error:
        return refuse(error)
    hashes = voter_hashes(poll=poll, voter=voter, vote=vote, secret=secret)
    kinds = CHECKED_IDENTITIES[poll.duplicate_check]
    identities = [f"{kind}:{hashes[kind]}" for kind in kinds]
    ballot_id = new_ballot_id()
    receipt = new_receipt(secret=secret, poll_id=poll.id, ballot_id=ballot_id,
                          idempotency_key=idempotency_key)
    claim_keys = [keys.seen(poll.id, identity) for identity in identities]
    admission = Admission(
        poll_id=poll.id, now=now, ballot_id=ballot_id, claim_keys=claim_keys, kinds=kinds,
        window_ms=(poll.vote_window_seconds or 0) * 1000, limits=limits,
        address=ratelimits.address_hash(secret=secret, poll_id=poll.id,
                                        address=voter.address) if limits else "",
        key=None if keyed is None else idempotency.new_claim(
            poll_id=poll.id, key=idempotency_key, key_hash=keyed, vote=vote, secret=secret),
        # With a key, a duplicate may still be its own recorded vote: counted once decided.
        count_duplicate=attempt is not None and keyed is None,
        version=None if verified else poll.version,
    )
    held = None
    outcome = admit(redis, admission)
    if (outcome is None and not verified) or (outcome is not None and outcome[0] == b"stale"):
        raise StalePoll()
    verified = True  # by admit.lua (`refuse` reads this)
    if attempt is not None:
        attempt.limit_counted = True
    if outcome is None:  # Redis is down
        if limits:
            ratelimits.hit_in_memory(poll_id=poll.id, address=admission.address, limits=limits)
        if poll.vote_window_seconds is not None:
            try:
                _check_window_in_database(session=session, poll=poll, hashes=hashes,
                                          kinds=kinds, now=now)
            except DuplicateVote as error:
                return refuse(error)
    else:
        state = outcome[0]
        if state == b"limited":
            if attempt is not None:
                attempt.outcome_counted = True
            raise ratelimits.RateLimited(int(outcome[1]) / 1000)
        if state == b"mismatch":
            raise idempotency.mismatch()
        if state == b"done":
            answer = idempotency.stored_answer(outcome[1:])
            return _replay_answer(answer, secret=secret, poll_id=poll.id,
                                  idempotency_key=idempotency_key)
        if state == b"pending":
            # Another request holds the key: wait for its answer, or for it to give up.
            held = idempotency.begin(redis=redis, poll_id=poll.id, key=idempotency_key,
                                     vote=vote, secret=secret)
            if held.answer is not None:
                return _replay_answer(held.answer, secret=secret, poll_id=poll.id,
                                      idempotency_key=idempotency_key)
            outcome = admit(redis, replace(admission, limits=(), key=None, version=None))
            state = b"admitted" if outcome is None else outcome[0]
        if state == b"duplicate" and _orphaned_claim(session=session, outcome=outcome,
                                                     now=now):
            # Its request died between claim and commit: nobody voted; claim afresh.
            release_claims(redis=redis, keys_=claim_keys,
                           ballot_id=outcome[2].decode().split(":")[0])
            outcome = admit(redis, replace(admission, limits=(), version=None,
                                           key=None if held else admission.key))
            state = b"admitted" if outcome is None else outcome[0]
        if state == b"duplicate":
            idempotency.abort(redis=redis, claim=held)
            if attempt is not None and int(outcome[3]):
                attempt.outcome_counted = True
            kind = kinds[int(outcome[1]) - 1]
            return refuse(DuplicateVote(DUPLICATE_DETAILS[kind], identity=kind),
                          key_checked=True)
        if state != b"admitted":
            # a retry's second admission met a new state: answer as its first would have
            idempotency.abort(redis=redis, claim=held)
            raise idempotency.in_use()
        if held is None and admission.key is not None:
            held = replace(admission.key, held=True)

    try:
        _record(session=session, poll=poll, ballot_id=ballot_id, choices=choices, vote=vote,
                hashes=hashes, identities=identities, now=now,
                receipt_hash=receipt_hash(receipt), idempotency_hash=keyed)
    except IntegrityError:
        # Redis had lost this voter's claim (or this Idempotency-Key); the database
        # remembered it.
        session.rollback()
        release_claims(redis=redis, keys_=claim_keys, ballot_id=ballot_id)
        idempotency.abort(redis=redis, claim=held)
        if keyed is not None:
            earlier = _keyed_ballot(session=session, poll=poll, keyed=keyed)
            if earlier is not None:  # a concurrent retry recorded it first
                return _replay(earlier, secret=secret, idempotency_key=idempotency_key)
        kind = _claimed_kind(session=session, poll=poll, identities=identities)
        if kind is None:
            raise
        raise DuplicateVote(DUPLICATE_DETAILS[kind], identity=kind) from None
    except BaseException:
        session.rollback()
        release_claims(redis=redis, keys_=claim_keys, ballot_id=ballot_id)
        idempotency.abort(redis=redis, claim=held)
        raise

    counts, kept = _count(redis=redis, poll=poll, ballot_id=ballot_id, vote=vote,
                          choices=choices, now=now, count_outcome=attempt is not None,
                          read_tally=read_tally, key_claim=held)
    if attempt is not None:
        attempt.outcome_counted = True
    return CastVote(ballot_id=ballot_id, created_at=now, receipt=receipt, counts=counts,
                    key_claim=None if kept else held)


@dataclass(frozen=True)
class Admission:
    """What lua/admit.lua is asked for one vote."""

    poll_id: str
    now: datetime
    ballot_id: str
    claim_keys: list[str]
    kinds: tuple[str, ...]
    window_ms: int
    limits: tuple[ratelimits.Limit, ...] = ()
    address: str = ""
    key: idempotency.Claim | None = None
    count_duplicate: bool = False
    # The version token of an unverified cached copy of the poll (see StalePoll).
    version: str | None = None


def admit(redis: RedisHandle, admission: Admission) -> list | None:
    """Run lua/admit.lua (see its header for the answers); None when Redis is down."""
    a = admission
    script_keys = [keys.poll_version(a.poll_id)] if a.version else []
    script_keys += ratelimits.limit_keys(poll_id=a.poll_id, address=a.address, limits=a.limits)
    args: list = [_ms(a.now), len(a.limits), "0" if a.key is None else "1",
                  integrity.RETENTION_SECONDS, "1" if a.count_duplicate else "0", a.version or ""]
    for limit in a.limits:
        args += [limit.amount, limit.window_ms]
    if a.key is not None:
        script_keys.append(a.key.entry)
        args += [a.key.token, a.key.body, idempotency.PENDING_SECONDS * 1000]
    script_keys.append(keys.integrity(a.poll_id, integrity.hour_of(a.now)))
    script_keys += a.claim_keys
    args += [a.ballot_id, a.window_ms, ORPHAN_CLAIM_SECONDS * 1000, *a.kinds]
    try:
        outcome = redis.scripts.admit(keys=script_keys, args=args)
    except tallies.REDIS_ERRORS as error:
        # The fallback metric keeps its operation name (dashboards watch it).
        tallies.redis_incident.failed(error, "checking for a duplicate vote")
        return None
    tallies.redis_incident.succeeded(redis)
    return outcome


def count_attempt(*, redis: RedisHandle, poll_id: str, address: str, secret: str,
                  limits: tuple[ratelimits.Limit, ...], now: datetime) -> None:
    """Count a vote attempt refused before lua/admit.lua counted it (an invalid body,
    another site's origin, a closed poll) against the rate limits: RateLimited when over
    them, already counted in the integrity numbers then."""
    hashed = ratelimits.address_hash(secret=secret, poll_id=poll_id, address=address)
    outcome = admit(redis, Admission(poll_id=poll_id, now=now, ballot_id="", claim_keys=[],
                                      kinds=(), window_ms=0, limits=limits, address=hashed))
    if outcome is None:
        ratelimits.hit_in_memory(poll_id=poll_id, address=hashed, limits=limits)
    elif outcome[0] == b"limited":
        raise ratelimits.RateLimited(int(outcome[1]) / 1000)


def _count(*, redis: RedisHandle, poll: Poll, ballot_id: str, vote: dict, choices: list[int],
           now: datetime, count_outcome: bool, read_tally: bool,
           key_claim: idempotency.Claim | None) -> tuple[tallies.Counts | None, bool]:
    """Everything after the commit, in one call of lua/count.lua: the counts read after it
    (with `read_tally`) and whether the key's answer was kept. Never raises (the ballot is
    committed: a tally that missed it is rebuilt from the database)."""
    context = vote["context"]
    script_keys, args = tallies.count_call(
        poll_id=poll.id, ballot_id=ballot_id, context=context, option_ids=choices,
        has_other=vote["other"] is not None, at=now)
    # Live streams (service/stream.py) re-read the tally when told; the message is a hint.
    args += ["publish", keys.tally_changes(poll.id)]
    if count_outcome:
        step_keys, step_args = integrity.count_step(poll_id=poll.id, outcome=integrity.ACCEPTED,
                                                    at=now)
        script_keys += step_keys
        args += step_args
    # Webhook keys share a hash tag of their own: a Redis Cluster, where one script
    # reaches one slot, notes the vote in a call of its own (webhooks.vote_created).
    on_cluster = isinstance(redis.client, LazyCluster)
    noting = False
    if not on_cluster:
        try:
            step_keys, step_args = webhooks.note_step(poll_id=poll.id, owner_id=poll.owner_id)
            script_keys += step_keys
            args += step_args
            noting = True
        except Exception:  # a vote never fails because of a webhook
            log.exception("could not note a vote for webhooks")
    if read_tally:
        args.append("read")
    if key_claim is not None:
        step_keys, step_args = idempotency.answer_step(claim=key_claim, poll=poll,
                                                       ballot_id=ballot_id, now=now,
                                                       shown=read_tally)
        script_keys += step_keys
        args += step_args
    counts, kept = None, False
    try:
        noted, tally, kept = redis.scripts.count(keys=script_keys, args=args)
        kept = bool(kept)
        if tally:
            counts = tallies.Counts.from_flat(tally)
        if noting:
            webhooks.after_note(redis=redis, noted=int(noted))
    except tallies.REDIS_ERRORS as error:
        tallies.redis_incident.failed(error, "counting a vote", poll_id=poll.id, context=context)
    except Exception:  # a committed vote is answered whatever happens here
        log.exception("could not count a committed vote; its tallies will be rebuilt")
        tallies.redis_incident.missed(poll_id=poll.id, context=context)
    if on_cluster:
        webhooks.vote_created(redis=redis, poll_id=poll.id, owner_id=poll.owner_id,
                              ballot_id=ballot_id)
    return counts, kept


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _orphaned_claim(*, session: Session, outcome: list, now: datetime) -> bool:
    """Whether admit.lua's duplicate is a claim left by a request that died before
    committing its ballot (a claim the script counted as a refusal is young)."""
    return not int(outcome[3]) and _orphaned(session=session, claim=outcome[2].decode(), now=now)


def _orphaned(*, session: Session, claim: str, now: datetime) -> bool:
    """Whether a claim belongs to a request that died before committing its ballot: older
    than any request may live, and its ballot is not in the database."""
    ballot_id, _, rest = claim.partition(":")
    claimed_ms = rest.partition(":")[2]
    if not claimed_ms.isdigit():
        return False
    if now.timestamp() * 1000 - int(claimed_ms) < ORPHAN_CLAIM_SECONDS * 1000:
        return False  # perhaps still on its way to the database
    return session.get(Ballot, ballot_id) is None


def release_claims(*, redis: RedisHandle, keys_: list[str], ballot_id: str) -> None:
    """Free the duplicate-check claims this ballot holds (others' claims are kept)."""
    if not keys_:
        return
    try:
        redis.scripts.release(keys=keys_, args=[ballot_id])
    except tallies.REDIS_ERRORS as error:
        tallies.redis_incident.failed(error, "releasing a vote's claim")


def _check_window_in_database(*, session: Session, poll: Poll, hashes: dict[str, str],
                              kinds: tuple[str, ...], now: datetime) -> None:
    """Without Redis, judge a windowed duplicate check from the recorded ballots."""
    columns = {"cookie": Ballot.cookie_hash, "ip": Ballot.ip_hash, "user": Ballot.user_hash}
    since = now - timedelta(seconds=poll.vote_window_seconds or 0)
    for kind in kinds:
        seen = session.scalar(
            select(exists().where(
                Ballot.poll_id == poll.id, Ballot.created_at > since, columns[kind] == hashes[kind]
            ))
        )
        if seen:
            raise DuplicateVote(DUPLICATE_DETAILS[kind], identity=kind)


def _claimed_kind(*, session: Session, poll: Poll, identities: list[str]) -> str | None:
    """Which of the identities the database already holds a claim for."""
    held = session.scalar(
        select(VoteClaim.identity).where(
            VoteClaim.poll_id == poll.id, VoteClaim.identity.in_(identities)
        ).limit(1)
    )
    return held.split(":", 1)[0] if held else None


def _replay(ballot: Ballot, *, secret: str, idempotency_key: str) -> CastVote:
    return CastVote(
        ballot_id=ballot.id, created_at=ballot.created_at, replayed=True,
        receipt=new_receipt(secret=secret, poll_id=ballot.poll_id, ballot_id=ballot.id,
                            idempotency_key=idempotency_key),
    )


def _replay_answer(answer: dict, *, secret: str, poll_id: str,
                   idempotency_key: str) -> CastVote:
    """The answer an Idempotency-Key's first request stored in Redis, given again."""
    vote = answer["vote"]
    return CastVote(
        ballot_id=vote["id"], created_at=datetime.strptime(vote["created_at"], ISO_SECONDS)
        .replace(tzinfo=UTC), replayed=True, answer=answer,
        receipt=new_receipt(secret=secret, poll_id=poll_id, ballot_id=vote["id"],
                            idempotency_key=idempotency_key),
    )


def _keyed_ballot(*, session: Session, poll: Poll, keyed: str) -> Ballot | None:
    return session.scalar(
        select(Ballot).where(Ballot.poll_id == poll.id, Ballot.idempotency_hash == keyed)
    )


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


def _record(*, session: Session, poll: Poll, ballot_id: str, choices: list[int], vote: dict,
            hashes: dict[str, str], identities: list[str], now: datetime, receipt_hash: str,
            idempotency_hash: str | None) -> None:
    """Write the ballot, its choices and (one vote ever) its claims, committed, on a
    connection of its own (the session holds no transaction open meanwhile)."""
    ballot = {
        "id": ballot_id, "poll_id": poll.id, "created_at": now, "other": vote["other"],
        "comment": vote["comment"], "context": vote["context"],
        "cookie_hash": hashes["cookie"], "ip_hash": hashes["ip"],
        "user_hash": hashes.get("user"), "receipt_hash": receipt_hash,
        "idempotency_hash": idempotency_hash,
    }
    claimed = identities if poll.vote_window_seconds is None else []
    if (session() if isinstance(session, scoped_session) else session).in_transaction():
        # What the request read (a poll loaded from the database, ...) is done with: the
        # session gives its connection back before the write takes one, so no request
        # ever holds two (with the pool full of such requests, none would get its second).
        session.commit()
    engine = session.get_bind()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(_INSERT_VOTE_POSTGRESQL,
                               {**ballot, "option_ids": choices, "identities": claimed})
        return
    with engine.begin() as connection:
        connection.execute(_INSERT_BALLOT, {**ballot, "comment_hidden": False})
        if choices:
            connection.execute(_INSERT_CHOICES, [{"ballot_id": ballot_id, "option_id": option_id}
                                                 for option_id in choices])
        if claimed:
            connection.execute(_INSERT_CLAIMS, [
                {"poll_id": poll.id, "identity": identity, "ballot_id": ballot_id}
                for identity in claimed
            ])


def has_voted(*, session: Session, poll: Poll, voter: Voter, secret: str) -> bool:
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
