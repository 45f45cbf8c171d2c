"""`Idempotency-Key` on votes: a retry with the same key and body gets the first answer.

Redis decides, in one Lua step, who answers a key: the first request holds it while it
votes, retries that race it wait for its answer, a different body is refused. A vote takes
the key inside its admission (admit.lua, with its rate limit and duplicate check) and
keeps its answer inside its count (count.lua); idempotency.lua waits for another
request's answer, keeps one the count could not, or gives a key up. Only accepted votes'
answers are kept (24 h), without the receipt, which is derived again from the key
(ballot.new_receipt). The database is the record: its unique (poll, key hash) index keeps
a key to one ballot even when Redis forgot the key or is down (the vote use-case answers
the recorded ballot again).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from service.infra import keys
from service.infra.errors import IdempotencyKeyInUse, ValidationFailed
from service.infra.identity import keyed_hash
from service.infra.redis.scripts import KeyHold, KeyMismatch, KeyPending, KeyState
from service.tallies import baseline as baselines
from service.tallies.baseline import Baseline
from service.tallies.counts import Counts
from service.tallies.results import is_suppressed, tallies_view
from service.voting.ballot import Ballot, idempotency_hash

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
ISO_MICROSECONDS = "%Y-%m-%dT%H:%M:%S.%fZ"


def parse_key(raw: str | None) -> str | None:
    """The request's Idempotency-Key, None without one; 422 when it is malformed."""
    if raw is None:
        return None
    if not 1 <= len(raw) <= KEY_MAX_LENGTH:
        raise ValidationFailed({HEADER: [f"Must be 1 to {KEY_MAX_LENGTH} characters."]})
    return raw


def body_hash(*, secret: str, poll_id: str, ballot: Ballot) -> str:
    """A keyed hash of the parsed vote: two bodies that mean the same vote are the same."""
    return keyed_hash(secret, poll_id, "idempotency-body", ballot.canonical())


def new_hold(*, secret: str, poll_id: str, key: str, ballot: Ballot) -> KeyHold:
    """A request's hold on its key, as it asks Redis for it."""
    return KeyHold(entry=keys.idempotency(poll_id, idempotency_hash(secret, poll_id, key)),
                   token=secrets.token_hex(8),
                   body=body_hash(secret=secret, poll_id=poll_id, ballot=ballot),
                   hold_ms=PENDING_SECONDS * 1000)


def wait(begin, hold: KeyHold) -> KeyState | None:
    """Ask for the key (`begin`: the scripts' key_begin) until it is held, answered or
    refused, waiting while another request holds it: 422 for a different body, 409
    `idempotency_key_in_use` when the wait runs out, None when Redis could not say."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        state = begin(hold)
        if not isinstance(state, KeyPending):
            if isinstance(state, KeyMismatch):
                raise mismatch()
            return state
        if time.monotonic() >= deadline:
            raise IdempotencyKeyInUse()
        time.sleep(WAIT_INTERVAL_SECONDS)


def mismatch() -> ValidationFailed:
    return ValidationFailed({HEADER: ["This key was already used with a different request body."]})


def kept_answer(*, poll, status: str, ballot_id: str, created_at: str, shown: bool,
                challenge: bool = False) -> str:
    """The answer count.lua keeps for the key's retries, inside the vote's count. One
    showing tallies is kept as the poll answered it (status, options, ...) and, stored by
    the script, the tally read after the count: replayed, it is the same."""
    stored: dict = {"vote": {"id": ballot_id, "created_at": created_at}}
    if shown:
        stored["shown"] = {
            "poll_id": poll.id, "status": status,
            "created_at": poll.created_at.strftime(ISO_MICROSECONDS),
            "kind": poll.kind,
            "options": [[option.id, option.label, option.value] for option in poll.options],
            "min_votes": poll.results_min_votes,
            "baseline": _kept_baseline(baselines.of_poll(poll)),
            "challenge": challenge,
        }
    else:
        stored["tallies"] = None
    return json.dumps(stored, separators=(",", ":"))


def finished_answer(answer: dict) -> str:
    """An accepted vote's answer as kept for the key's retries: without its receipt."""
    stored = {"vote": {k: v for k, v in answer["vote"].items() if k != "receipt"},
              "tallies": answer["tallies"]}
    return json.dumps(stored, separators=(",", ":"))


@dataclass(frozen=True)
class _OptionShown:
    id: int
    label: str
    value: int | None = None


def _kept_baseline(baseline: Baseline | None) -> dict | None:
    if baseline is None:
        return None
    return {"total_votes": baseline.total_votes, "options": list(map(list, baseline.options)),
            "source": baseline.source, "as_of": baseline.as_of.strftime(ISO_MICROSECONDS)}


def _shown_baseline(kept: dict | None) -> Baseline | None:
    if kept is None:
        return None
    as_of = datetime.strptime(kept["as_of"], ISO_MICROSECONDS).replace(tzinfo=UTC)
    return Baseline(total_votes=kept["total_votes"], source=kept["source"], as_of=as_of,
                    options=tuple((option_id, n) for option_id, n in kept["options"]))


@dataclass(frozen=True)
class _PollShown:
    """The poll as a kept answer showed it: what results.tallies_view reads."""

    id: str
    created_at: datetime
    options: tuple[_OptionShown, ...]
    status: str
    results_min_votes: int
    baseline: Baseline | None
    # Whether the proof of work was on, as the tallies said: `pow` stands for "on".
    challenge: str = "none"
    challenge_until: None = None
    # A ranked poll's replayed tallies add its runoff (read anew from the database).
    kind: str = "single"

    def status_at(self, _now) -> str:
        return self.status


def stored_answer(entry: dict[bytes, bytes]) -> dict:
    """The answer kept in a key's entry (without its receipt)."""
    answer = json.loads(entry[b"answer"])
    shown = answer.pop("shown", None)
    if shown is not None:
        counts = Counts.from_hash(
            {name[2:]: value for name, value in entry.items() if name.startswith(b"c:")})
        poll = _PollShown(
            id=shown["poll_id"], status=shown["status"],
            created_at=datetime.strptime(shown["created_at"], ISO_MICROSECONDS)
            .replace(tzinfo=UTC),
            # Kept with their values since scale kinds exist; older answers had none.
            options=tuple(_OptionShown(*option) for option in shown["options"]),
            # Kept by answers since ranked and scale kinds exist; older answers had none.
            kind=shown.get("kind", "single"),
            results_min_votes=shown["min_votes"],
            # Kept by answers since baselines exist; older answers had none.
            baseline=_shown_baseline(shown.get("baseline")),
            challenge="pow" if shown.get("challenge") else "none",
        )
        answer["tallies"] = tallies_view(
            poll, counts, now=None, suppressed=is_suppressed(poll, counts, is_owner=False))
    return answer
