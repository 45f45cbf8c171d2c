"""What the vote use-case needs from the outside, as small interfaces: the poll, Redis,
the database and the tally. The real ones are `app.CachedPolls`, `redis_store`,
`records` and `app.TallyReader`; tests/unit/ drives the use-case with fakes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.infra.redis.scripts import (
    Admission,
    AdmitCall,
    CountCall,
    Counted,
    KeyHold,
    KeyState,
    WatchCall,
    Watched,
)
from service.tallies.counts import Counts


class PollSource(Protocol):
    def peek(self, poll_id: str):
        """This process's copy of the poll with its version token, unverified (the vote's
        admission checks the token), or None."""

    def get(self, poll_id: str):
        """The poll as committed now; NotFound when there is none."""

    def switch_challenge(self, poll_id: str, *, until: datetime | None,
                         expected: datetime | None) -> bool:
        """Set the poll's `challenge_until` if it still is `expected`, committed and told
        to every process: whether this call changed it."""

    def closed_full(self, poll_id: str, *, at: datetime) -> None:
        """The vote that took the poll's last place closed it (committed with its
        ballot): tell every process, and `poll.closed` webhooks once."""


class VoteScripts(Protocol):
    """The vote's Redis calls. Each degrades on an outage (logged and counted once):
    None where Redis could not say, nothing done otherwise."""

    def admit(self, call: AdmitCall) -> Admission | None: ...

    def count(self, call: CountCall, *, owner_id: int) -> Counted | None:
        """Count a committed ballot (and note it for the owner's webhooks); never raises."""

    def release(self, *, poll_id: str, identities: list[str], ballot_id: str) -> None: ...

    def release_dead(self, *, poll_id: str, identities: list[str], ballot_id: str,
                     at: datetime) -> None:
        """Release the claims of a vote known dead (its process gone, its ballot absent),
        counted in the integrity numbers and the metrics when there were any."""

    def confirm(self, *, poll_id: str, identities: list[str], claim: str) -> None:
        """Mark claims holding `claim` as their ballot's, known committed."""

    def key_begin(self, hold: KeyHold) -> KeyState | None: ...

    def key_finish(self, *, entry: str, token: str, answer: str, keep_ms: int) -> None: ...

    def key_abort(self, *, entry: str, token: str) -> None: ...

    def count_outcome(self, *, poll_id: str, outcome: str, at: datetime) -> None:
        """Count an attempt's outcome in the poll's integrity numbers."""

    def spend_challenge(self, *, poll_id: str, token: str, spender: str, keep_ms: int,
                        mark_ms: int) -> tuple[bool, bool] | None:
        """Spend a proof-of-work solution: (this attempt's, ask the database too), or
        None when Redis cannot say."""

    def watch_challenge(self, call: WatchCall) -> Watched | None:
        """Count a suspicious refusal of an `auto` poll; None when Redis cannot say."""


@dataclass(frozen=True)
class Recorded:
    """A ballot the database holds."""

    id: str
    created_at: datetime


class AlreadyRecorded(Exception):
    """The database refused the ballot: its voter's claim or its Idempotency-Key is
    recorded already (Redis had forgotten them, or released a claim it took for dead)."""


class BallotStore(Protocol):
    """The database: the record of every vote."""

    def record(self, row: dict, *, option_ids: tuple[int, ...], claims: list[str],
               claims_until: datetime | None, limited: bool = False) -> bool:
        """Write the ballot, its choices and its claims, committed; AlreadyRecorded.
        `limited`: only while the poll's max_votes leaves a place (PollFull otherwise);
        True when this ballot took the last one and closed the poll."""

    def keyed(self, *, poll_id: str, key_hash: str) -> Recorded | None: ...

    def claimed_kind(self, *, poll_id: str, identities: list[str],
                     at: datetime) -> str | None: ...

    def exists(self, ballot_id: str) -> bool: ...

    def spend_challenge(self, *, poll_id: str, token: str, spender: str,
                        expires_at: datetime) -> bool:
        """Spend a proof-of-work solution in the database: whether it is this spender's."""


class TallySource(Protocol):
    def read(self, poll) -> Counts:
        """The poll's tally now (rebuilt, or from the database, when Redis lacks it)."""
