"""Fakes of what the vote use-case needs from outside (service/voting/ports.py): a poll
source, Redis's scripts, the database and the tallies, all in memory. Each records what
it was asked, and the scripts answer admissions from a queue the test sets."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from service.infra.errors import NotFound, PollFull
from service.infra.identity import Voter
from service.infra.redis.lease import ProcessLease
from service.infra.redis.scripts import (
    Admission,
    AdmitCall,
    Admitted,
    CountCall,
    Counted,
    KeyHeld,
    KeyHold,
    KeyState,
)
from service.polls.cache import OptionSnapshot, PollSnapshot
from service.tallies.counts import Counts
from service.voting.ballot import VoteFacts
from service.voting.cast import Voting
from service.voting.ports import AlreadyRecorded, Recorded
from service.voting.ratelimits import MemoryLimits, parse_limits

SECRET = "unit-secret"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
OPTIONS = (11, 12, 13)


def a_poll(**fields) -> PollSnapshot:
    """An open single-choice poll, checked by browser and address, results always."""
    values = dict(
        id="UnitPoll0001", owner_id=1, question="Q?", kind="single", max_choices=1,
        allow_other=False, allow_comment=False, shuffle_options=False, allow_change=False,
        challenge="none", challenge_until=None,
        duplicate_check="cookie_and_ip",
        vote_window_seconds=None, results="always", results_min_votes=0, opens_at=None,
        closes_at=None, closed_at=None, allowed_origins=(), locale="en",
        signing_secret="s" * 64, created_at=NOW, updated_at=NOW,
        options=tuple(OptionSnapshot(option_id, f"Option {option_id}", position)
                      for position, option_id in enumerate(OPTIONS)),
        version="v1",
    )
    values.update(fields)
    return PollSnapshot(**values)


def facts(*, key: str | None = None, origin: str | None = None,
          address: str = "203.0.113.7") -> VoteFacts:
    return VoteFacts(voter=Voter(cookie_id="cookie-1", cookie_is_new=False, address=address),
                     origin=origin, own_origin="https://pollbox.example", idempotency_key=key)


@dataclass
class FakePolls:
    """This process's cached copy (`cached`, unverified) and the poll as committed."""

    current: PollSnapshot | None
    cached: PollSnapshot | None = None
    loads: int = 0
    closed_full_at: list[datetime] = field(default_factory=list)

    def closed_full(self, poll_id: str, *, at: datetime) -> None:
        self.closed_full_at.append(at)

    def peek(self, poll_id: str):
        return self.cached

    def get(self, poll_id: str):
        self.loads += 1
        if self.current is None:
            raise NotFound()
        return self.current


@dataclass
class FakeScripts:
    """Redis's scripts: admissions answered from `admissions` (then Admitted), or None
    for all of them while `down`."""

    admissions: deque = field(default_factory=deque)
    key_states: deque = field(default_factory=deque)
    down: bool = False
    tally: list[bytes] = field(default_factory=list)
    kept: bool = True
    admitted: list[AdmitCall] = field(default_factory=list)
    counted: list[CountCall] = field(default_factory=list)
    released: list[tuple[list[str], str]] = field(default_factory=list)
    released_dead: list[str] = field(default_factory=list)  # ballot ids
    confirmed: list[str] = field(default_factory=list)  # claims marked committed
    finished: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)

    def answer(self, *outcomes: Admission) -> FakeScripts:
        self.admissions.extend(outcomes)
        return self

    def admit(self, call: AdmitCall) -> Admission | None:
        self.admitted.append(call)
        if self.down:
            return None
        return self.admissions.popleft() if self.admissions else Admitted()

    def count(self, call: CountCall, *, owner_id: int) -> Counted | None:
        self.counted.append(call)
        if self.down:
            return None
        return Counted(noted=0, tally=self.tally, kept=self.kept)

    def release(self, *, poll_id: str, identities: list[str], ballot_id: str) -> None:
        self.released.append((identities, ballot_id))

    def release_dead(self, *, poll_id: str, identities: list[str], ballot_id: str,
                     at: datetime) -> None:
        self.released.append((identities, ballot_id))
        self.released_dead.append(ballot_id)

    def confirm(self, *, poll_id: str, identities: list[str], claim: str) -> None:
        self.confirmed.append(claim)

    def key_begin(self, hold: KeyHold) -> KeyState | None:
        if self.down:
            return None
        return self.key_states.popleft() if self.key_states else KeyHeld()

    def key_finish(self, *, entry: str, token: str, answer: str, keep_ms: int) -> None:
        self.finished.append(answer)

    def key_abort(self, *, entry: str, token: str) -> None:
        self.aborted.append(token)

    def count_outcome(self, *, poll_id: str, outcome: str, at: datetime) -> None:
        self.outcomes.append(outcome)


@dataclass
class FakeBallots:
    """The database: recorded ballots by id, claims, and Idempotency-Key hashes."""

    rows: dict[str, dict] = field(default_factory=dict)
    # identity -> (ballot id, until: None for ever)
    claims: dict[str, tuple[str, datetime | None]] = field(default_factory=dict)
    fail_with: BaseException | None = None
    max_votes: int | None = None  # the poll's, as the database holds it

    def _held(self, identity: str, at: datetime) -> bool:
        if identity not in self.claims:
            return False
        until = self.claims[identity][1]
        return until is None or until > at

    def record(self, row: dict, *, option_ids: tuple[int, ...], claims: list[str],
               claims_until: datetime | None, limited: bool = False) -> bool:
        if self.fail_with is not None:
            raise self.fail_with
        if limited and self.max_votes is not None and len(self.rows) >= self.max_votes:
            raise PollFull()
        keyed = row["idempotency_hash"]
        if any(self._held(claim, row["created_at"]) for claim in claims) or (
                keyed is not None and any(other["idempotency_hash"] == keyed
                                          for other in self.rows.values())):
            raise AlreadyRecorded()
        self.rows[row["id"]] = {**row, "option_ids": option_ids}
        self.claims.update(dict.fromkeys(claims, (row["id"], claims_until)))
        return limited and self.max_votes is not None and len(self.rows) == self.max_votes

    def keyed(self, *, poll_id: str, key_hash: str) -> Recorded | None:
        for row in self.rows.values():
            if row["idempotency_hash"] == key_hash:
                return Recorded(row["id"], row["created_at"])
        return None

    def claimed_kind(self, *, poll_id: str, identities: list[str],
                     at: datetime) -> str | None:
        held = next((identity for identity in identities if self._held(identity, at)), None)
        return held.split(":", 1)[0] if held else None

    def exists(self, ballot_id: str) -> bool:
        return ballot_id in self.rows


@dataclass
class FakeTallies:
    counts: Counts = field(default_factory=lambda: Counts(total=7, options={11: 7}))
    reads: int = 0

    def read(self, poll) -> Counts:
        self.reads += 1
        return self.counts


def a_voting(*, poll: PollSnapshot | None = None, cached: PollSnapshot | None = None,
             scripts: FakeScripts | None = None, ballots: FakeBallots | None = None,
             limits: str = "60 per minute", clock=lambda: NOW) -> Voting:
    """The use-case on fakes; its parts are on it (`voting.scripts`, ...)."""
    return Voting(
        polls=FakePolls(current=a_poll() if poll is None else poll, cached=cached),
        scripts=scripts or FakeScripts(), ballots=ballots or FakeBallots(),
        tallies=FakeTallies(), secret=SECRET, limits=parse_limits(limits),
        memory_limits=MemoryLimits(), clock=clock, lease=ProcessLease(),
    )


def stale(poll: PollSnapshot, **fields) -> PollSnapshot:
    """An older copy of the poll, as another process may still cache it."""
    return replace(poll, version="v0", **fields)
