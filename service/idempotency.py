"""`Idempotency-Key` on votes: a retry with the same key and body gets the first answer.

Redis decides, in one Lua step, who answers a key: the first request holds it while it
votes, retries that race it wait for its answer, a different body is refused. A vote takes
the key inside its admission (lua/admit.lua, with its rate limit and duplicate check) and
keeps its answer inside its count (lua/count.lua); lua/idempotency.lua waits for another
request's answer, keeps one the count could not, or gives a key up. Only accepted votes'
answers are kept (24 h), without the receipt, which is derived again from the key
(voting.new_receipt). The database is the record: its unique
(poll, key hash) index keeps a key to one ballot even when Redis forgot the key or is down
(voting.cast_vote answers the recorded ballot again).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from service import keys, tallies, voting
from service.errors import IdempotencyKeyInUse, ValidationFailed
from service.extensions import RedisHandle
from service.identity import keyed_hash

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
KEY_MAX_LENGTH = 255
ANSWER_SECONDS = 24 * 3600
# Longer than any request may run (gunicorn's timeout is 30 s): an entry never expires
# under the request still answering it.
PENDING_SECONDS = 60
# How long a retry waits for the request holding its key before answering 409.
WAIT_SECONDS = 10
WAIT_INTERVAL_SECONDS = 0.02
ISO_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
ISO_MICROSECONDS = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class Claim:
    """This request's standing on its key: an answer to replay, or the duty to answer."""

    key: str
    entry: str
    token: str
    answer: dict | None = None
    held: bool = False
    body: str = ""  # the keyed hash of the request body


def new_claim(*, poll_id: str, key: str, key_hash: str, vote: dict, secret: str) -> Claim:
    """This request's claim on its key, not yet held: what lua/admit.lua is given."""
    return Claim(key=key, entry=keys.idempotency(poll_id, key_hash), token=secrets.token_hex(8),
                 body=body_hash(secret=secret, poll_id=poll_id, vote=vote))


def answer_step(*, claim: Claim, poll, ballot_id: str, now: datetime,
                shown: bool) -> tuple[list[str], list]:
    """The keys and arguments of lua/count.lua's 'answer' step: keep the vote's answer
    for its key's retries inside the vote's count, instead of a round trip of its own.
    An answer showing tallies is kept as the poll answered it (status, options, ...) and,
    stored by the script, the tally read after the count: replayed, it is the same."""
    stored: dict = {"vote": {"id": ballot_id, "created_at": now.strftime(ISO_SECONDS)}}
    if shown:
        stored["shown"] = {
            "poll_id": poll.id, "status": poll.status_at(now),
            "created_at": poll.created_at.strftime(ISO_MICROSECONDS),
            "options": [[option.id, option.label] for option in poll.options],
            "min_votes": poll.results_min_votes,
        }
    else:
        stored["tallies"] = None
    return [claim.entry], ["answer", claim.token, json.dumps(stored, separators=(",", ":")),
                           ANSWER_SECONDS * 1000, "1" if shown else "0"]


@dataclass(frozen=True)
class _OptionShown:
    id: int
    label: str


@dataclass(frozen=True)
class _PollShown:
    """The poll as a kept answer showed it: what tallies.tallies_view reads."""

    id: str
    created_at: datetime
    options: tuple[_OptionShown, ...]
    status: str

    def status_at(self, _now) -> str:
        return self.status


def stored_answer(fields: list[bytes]) -> dict:
    """The answer in a key's entry (without its receipt), from the entry's fields as
    HGETALL lists them."""
    entry = dict(zip(fields[::2], fields[1::2], strict=True))
    answer = json.loads(entry[b"answer"])
    shown = answer.pop("shown", None)
    if shown is not None:
        counts = tallies.Counts.from_hash(
            {name[2:]: value for name, value in entry.items() if name.startswith(b"c:")})
        poll = _PollShown(
            id=shown["poll_id"], status=shown["status"],
            created_at=datetime.strptime(shown["created_at"], ISO_MICROSECONDS)
            .replace(tzinfo=UTC),
            options=tuple(_OptionShown(option_id, label) for option_id, label in shown["options"]),
        )
        answer["tallies"] = tallies.tallies_view(poll, counts, now=None,
                                                 suppressed=counts.total < shown["min_votes"])
    return answer


def mismatch() -> ValidationFailed:
    return ValidationFailed({HEADER: ["This key was already used with a different request body."]})


def in_use() -> IdempotencyKeyInUse:
    return IdempotencyKeyInUse()


def request_key(headers: Mapping[str, str]) -> str | None:
    """The request's Idempotency-Key, None without one; 422 when it is malformed."""
    raw = headers.get(HEADER)
    if raw is None:
        return None
    if not 1 <= len(raw) <= KEY_MAX_LENGTH:
        raise ValidationFailed({HEADER: [f"Must be 1 to {KEY_MAX_LENGTH} characters."]})
    return raw


def body_hash(*, secret: str, poll_id: str, vote: dict) -> str:
    """A keyed hash of the parsed vote: two bodies that mean the same vote are the same."""
    canonical = json.dumps(vote, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return keyed_hash(secret, poll_id, "idempotency-body", canonical)


def begin(*, redis: RedisHandle, poll_id: str, key: str, vote: dict, secret: str) -> Claim:
    """Hold the key, or get its stored answer (waiting while another request holds it);
    422 for a different body, 409 `idempotency_key_in_use` when the wait runs out."""
    entry = keys.idempotency(poll_id, voting.idempotency_hash(secret, poll_id, key))
    token = secrets.token_hex(8)
    body = body_hash(secret=secret, poll_id=poll_id, vote=vote)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            result = redis.scripts.idempotency(
                keys=[entry], args=["begin", token, body, PENDING_SECONDS * 1000]
            )
        except tallies.REDIS_ERRORS as error:
            # The database's unique key still keeps the key to one ballot.
            tallies.redis_incident.failed(error, "checking an Idempotency-Key")
            return Claim(key=key, entry=entry, token=token)
        state = result[0].decode()
        if state == "new":
            return Claim(key=key, entry=entry, token=token, held=True)
        if state == "mismatch":
            raise mismatch()
        if state == "done":
            return Claim(key=key, entry=entry, token=token, answer=stored_answer(result[1:]))
        if time.monotonic() >= deadline:
            raise in_use()
        time.sleep(WAIT_INTERVAL_SECONDS)


def finish(*, redis: RedisHandle, claim: Claim | None, answer: dict) -> None:
    """Keep an accepted vote's answer (without its receipt) for the key's retries."""
    if claim is None or not claim.held:
        return
    stored = {"vote": {k: v for k, v in answer["vote"].items() if k != "receipt"},
              "tallies": answer["tallies"]}
    _run(redis, claim, "finish", json.dumps(stored, separators=(",", ":")), ANSWER_SECONDS * 1000)


def abort(*, redis: RedisHandle, claim: Claim | None) -> None:
    """Give the key up: the vote was refused or failed and counted nothing."""
    if claim is not None and claim.held:
        _run(redis, claim, "abort")


def replay(claim: Claim, *, secret: str, poll_id: str) -> dict:
    """The stored answer with its receipt derived again."""
    answer = claim.answer or {}
    vote = answer["vote"]
    receipt = voting.new_receipt(secret=secret, poll_id=poll_id, ballot_id=vote["id"],
                                 idempotency_key=claim.key)
    return {"vote": {**vote, "receipt": receipt}, "tallies": answer["tallies"]}


def forget(*, redis: RedisHandle, poll_id: str, key_hash: str) -> None:
    """Drop a withdrawn vote's key, so that a retry with it votes afresh."""
    try:
        redis.client.delete(keys.idempotency(poll_id, key_hash))
    except tallies.REDIS_ERRORS as error:
        tallies.redis_incident.failed(error, "forgetting an Idempotency-Key")


def _run(redis: RedisHandle, claim: Claim, op: str, *args) -> None:
    try:
        redis.scripts.idempotency(keys=[claim.entry], args=[op, claim.token, *args])
    except tallies.REDIS_ERRORS as error:
        # An unfinished entry expires after PENDING_SECONDS; the ballot is the record.
        tallies.redis_incident.failed(error, "storing an Idempotency-Key's answer")
