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
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import keys, tallies, webhooks
from service.errors import DuplicateVote, PollClosed, ValidationFailed
from service.extensions import RedisHandle
from service.identity import Voter, keyed_hash
from service.models import Ballot, BallotChoice, Poll, VoteClaim

log = logging.getLogger(__name__)

BALLOT_ID_ALPHABET = string.ascii_letters + string.digits
BALLOT_ID_LENGTH = 16
# Longer than any request may run (gunicorn kills a worker after its 30 s timeout): a
# claim this old without its ballot was left by a request that died; it blocks nobody.
ORPHAN_CLAIM_SECONDS = 45
RECEIPT_BYTES = 32  # a receipt withdraws a vote: as unguessable as an API key
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
              secret: str, now: datetime, idempotency_key: str | None = None) -> CastVote:
    """Record one vote, or raise PollClosed / ValidationFailed / DuplicateVote.

    With an `idempotency_key` whose ballot is already recorded, answer that ballot again
    (`replayed`): the database's unique key holds even when Redis forgot the key.
    """
    keyed = None if idempotency_key is None else idempotency_hash(secret, poll.id, idempotency_key)
    if keyed is not None:
        earlier = _keyed_ballot(session=session, poll=poll, keyed=keyed)
        if earlier is not None:
            return _replay(earlier, secret=secret, idempotency_key=idempotency_key)
    status = poll.status_at(now)
    if status != "open":
        raise PollClosed(
            "This poll has not opened yet." if status == "scheduled" else "This poll is closed."
        )
    choices = validate_vote(poll, vote)
    hashes = voter_hashes(poll=poll, voter=voter, vote=vote, secret=secret)
    kinds = CHECKED_IDENTITIES[poll.duplicate_check]
    identities = [f"{kind}:{hashes[kind]}" for kind in kinds]
    ballot_id = new_ballot_id()
    receipt = new_receipt(secret=secret, poll_id=poll.id, ballot_id=ballot_id,
                          idempotency_key=idempotency_key)
    claim_keys = [keys.seen(poll.id, identity) for identity in identities]

    if claim_keys:
        seen = _claim(redis=redis, keys_=claim_keys, ballot_id=ballot_id, poll=poll, now=now)
        if seen is not None and seen.index and _orphaned(session=session, claim=seen.held,
                                                         now=now):
            # Its request died between claim and commit: nobody voted; claim afresh.
            release_claims(redis=redis, keys_=claim_keys, ballot_id=seen.held.split(":")[0])
            seen = _claim(redis=redis, keys_=claim_keys, ballot_id=ballot_id, poll=poll,
                          now=now)
        if seen is None and poll.vote_window_seconds is not None:
            _check_window_in_database(session=session, poll=poll, hashes=hashes, kinds=kinds,
                                      now=now)
        elif seen is not None and seen.index:
            kind = kinds[seen.index - 1]
            raise DuplicateVote(DUPLICATE_DETAILS[kind], identity=kind)

    try:
        _record(session=session, poll=poll, ballot_id=ballot_id, choices=choices, vote=vote,
                hashes=hashes, identities=identities, now=now,
                receipt_hash=receipt_hash(receipt), idempotency_hash=keyed)
    except IntegrityError:
        # Redis had lost this voter's claim (or this Idempotency-Key); the database
        # remembered it.
        session.rollback()
        release_claims(redis=redis, keys_=claim_keys, ballot_id=ballot_id)
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
        raise

    tallies.count_ballot(redis=redis, poll_id=poll.id, ballot_id=ballot_id,
                         context=vote["context"],
                         option_ids=choices, has_other=vote["other"] is not None, at=now)
    # One Redis call for `vote.created` webhooks; it never raises (service/webhooks.py).
    webhooks.vote_created(redis=redis, poll_id=poll.id, owner_id=poll.owner_id,
                          ballot_id=ballot_id)
    return CastVote(ballot_id=ballot_id, created_at=now, receipt=receipt)


@dataclass(frozen=True)
class Seen:
    """A claim's outcome: index 0 when claimed, else the 1-based index of the identity
    already seen and that claim's value (`<ballot id>:<until ms>:<claimed ms>`)."""

    index: int
    held: str = ""


def _claim(*, redis: RedisHandle, keys_: list[str], ballot_id: str, poll: Poll,
           now: datetime) -> Seen | None:
    """Claim the voter's identities in Redis; None when Redis is down."""
    window_ms = (poll.vote_window_seconds or 0) * 1000
    try:
        result = redis.scripts.claim(
            keys=keys_, args=[ballot_id, int(now.timestamp() * 1000), window_ms]
        )
    except tallies.REDIS_ERRORS as error:
        tallies.redis_incident.failed(error, "checking for a duplicate vote")
        return None
    tallies.redis_incident.succeeded(redis)
    if int(result[0]) == 0:
        return Seen(index=0)
    return Seen(index=int(result[0]), held=result[1].decode())


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


def _keyed_ballot(*, session: Session, poll: Poll, keyed: str) -> Ballot | None:
    return session.scalar(
        select(Ballot).where(Ballot.poll_id == poll.id, Ballot.idempotency_hash == keyed)
    )


def _record(*, session: Session, poll: Poll, ballot_id: str, choices: list[int], vote: dict,
            hashes: dict[str, str], identities: list[str], now: datetime, receipt_hash: str,
            idempotency_hash: str | None) -> None:
    session.execute(
        insert(Ballot).values(
            id=ballot_id,
            poll_id=poll.id,
            created_at=now,
            other=vote["other"],
            comment=vote["comment"],
            context=vote["context"],
            cookie_hash=hashes["cookie"],
            ip_hash=hashes["ip"],
            user_hash=hashes.get("user"),
            receipt_hash=receipt_hash,
            idempotency_hash=idempotency_hash,
        )
    )
    if choices:
        session.execute(
            insert(BallotChoice),
            [{"ballot_id": ballot_id, "option_id": option_id} for option_id in choices],
        )
    if identities and poll.vote_window_seconds is None:
        session.execute(
            insert(VoteClaim),
            [{"poll_id": poll.id, "identity": identity, "ballot_id": ballot_id}
             for identity in identities],
        )
    session.commit()


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
