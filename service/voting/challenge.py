"""Bot protection: a proof of work a poll may ask of every vote (`challenge: pow`), or
only while it looks attacked (`auto`). ALTCHA's protocol v1, through the `altcha`
package: the service hands out a challenge signed with a key derived from SECRET_KEY,
bound to the poll and valid CHALLENGE_SECONDS; the visitor's browser finds the number
whose SHA-256 with the salt gives the challenge, and the vote carries the answer.
Nothing leaves the visitor's browser but the answer, and no third party is asked.

A solution counts once: Redis remembers each one spent until it expires
(spend_challenge.lua); while Redis cannot be reached, the database does
(`spent_challenges`), and once Redis is back it tells every process to ask the database
too until those solutions have expired.

`auto`: every duplicate, rate-limited or challenge-refused attempt of the poll counts in
its watch (watch_challenge.lua). A minute with at least AutoThresholds.least of them, and
at least `factor` times the poll's own baseline (a moving average of its quiet minutes),
switches the challenge on until `quiet_seconds` after the last such minute. The switch is
written to the poll (`challenge_until`), so every process's copy of the poll knows it
without asking Redis on each vote.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import altcha

from service.infra import metrics
from service.infra.clock import iso
from service.infra.errors import ChallengeRequired
from service.infra.models import challenge_on
from service.infra.redis.scripts import WatchCall, Watched

__all__ = ["WatchCall", "Watched", "challenge_on"]

log = logging.getLogger(__name__)

ALGORITHM = "SHA-256"
CHALLENGE_SECONDS = 600
# Refusals of a poll that count as suspicious, by problem code.
SUSPICIOUS = frozenset({"duplicate_vote", "rate_limited", "challenge_required"})
MISSING = "This poll asks each vote for a proof of work; this vote carries none."
WRONG = "The proof of work of this vote is not a valid answer to a challenge of this poll."
EXPIRED = "The proof of work of this vote has expired; solve a fresh challenge."
REUSED = "The proof of work of this vote was used already; solve a fresh challenge."
WATCH_KEEP_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class AutoThresholds:
    """When an `auto` poll looks attacked (config: CHALLENGE_AUTO_*)."""

    least: int = 30  # suspicious refusals in one minute, at the least
    factor: float = 10.0  # times the poll's own baseline per minute
    quiet_seconds: int = 600  # on until this long after the last minute over the line
    smoothing: float = 1 / 60  # the baseline: about the last hour's quiet minutes


@dataclass(frozen=True)
class Solution:
    """A valid answer to one of the poll's challenges, not yet known unspent."""

    token: str  # the challenge it answers (unique: the salt is random)
    expires_at: datetime


def signing_key(secret: str) -> str:
    """The challenges' HMAC key: derived from SECRET_KEY, used for nothing else."""
    return hmac.new(secret.encode(), b"pollbox proof-of-work challenges",
                    hashlib.sha256).hexdigest()


def new_challenge(*, secret: str, poll_id: str, now: datetime, max_number: int) -> dict:
    """A fresh challenge for one vote in the poll, as ALTCHA's widget takes it."""
    made = altcha.create_challenge_v1(
        algorithm=ALGORITHM, max_number=max_number, hmac_key=signing_key(secret),
        expires=now + timedelta(seconds=CHALLENGE_SECONDS), params={"poll": poll_id})
    return {"algorithm": made.algorithm, "challenge": made.challenge, "salt": made.salt,
            "signature": made.signature, "maxnumber": made.max_number}


def solution_of(*, secret: str, poll_id: str, payload: str | None, now: datetime) -> Solution:
    """The solution a vote carries (ALTCHA's base64 payload), checked: signed by this
    service, for this poll, unexpired and right. ChallengeRequired otherwise."""
    if not payload:
        raise ChallengeRequired(MISSING)
    try:
        parsed = altcha.PayloadV1.from_base64(payload).to_dict()
        params = altcha.extract_params_v1(parsed)
        valid, _ = altcha.verify_solution_v1(parsed, signing_key(secret), check_expires=False)
        expires = datetime.fromtimestamp(int(params["expires"][0]), UTC)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError):
        raise ChallengeRequired(WRONG) from None
    if not valid or parsed["algorithm"] != ALGORITHM or params.get("poll") != [poll_id]:
        raise ChallengeRequired(WRONG)
    if expires <= now:
        raise ChallengeRequired(EXPIRED)
    return Solution(token=parsed["challenge"], expires_at=expires)


@dataclass
class SpentInDatabase:
    """This process's memory of the polls whose solutions it spent in the database while
    Redis was away, and until when those solutions live: told to Redis once it is back."""

    until: dict[str, datetime] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, poll_id: str, until: datetime) -> None:
        with self.lock:
            self.until[poll_id] = max(until, self.until.get(poll_id, until))

    def pending_ms(self, poll_id: str, now: datetime) -> int:
        """How long Redis must send this poll's solutions to the database too (0: no)."""
        until = self.until.get(poll_id)
        return 0 if until is None else max(0, int((until - now).total_seconds() * 1000))

    def told(self, poll_id: str) -> None:
        with self.lock:
            self.until.pop(poll_id, None)


def spend(solution: Solution, *, poll_id: str, spender: str, now: datetime, scripts,
          ballots, spent_in_database: SpentInDatabase) -> None:
    """Spend the solution for this vote attempt, in Redis (or, while Redis is away, in
    the database); ChallengeRequired when it was used already."""
    keep_ms = max(1, int((solution.expires_at - now).total_seconds() * 1000))
    mark_ms = spent_in_database.pending_ms(poll_id, now)
    spent = scripts.spend_challenge(poll_id=poll_id, token=solution.token, spender=spender,
                                    keep_ms=keep_ms, mark_ms=mark_ms)
    if spent is None:
        ask_database = True
        spent_in_database.note(poll_id, solution.expires_at)
    else:
        if mark_ms:
            spent_in_database.told(poll_id)
        mine, ask_database = spent
        if not mine:
            raise ChallengeRequired(REUSED)
    if ask_database and not ballots.spend_challenge(
            poll_id=poll_id, token=solution.token, spender=spender,
            expires_at=solution.expires_at):
        raise ChallengeRequired(REUSED)


def moment_of(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


def switched_on(poll_id: str, watched: Watched, *, until: datetime) -> None:
    log.warning("poll %s looks attacked (%d suspicious refusals this minute, line %.1f): "
                "its proof-of-work challenge is on until %s", poll_id, watched.count,
                watched.line, iso(until))
    metrics.CHALLENGE_SWITCHES.labels(to="on").inc()


def switched_off(poll_id: str, *, since: datetime) -> None:
    log.info("poll %s is quiet again: its proof-of-work challenge is off since %s",
             poll_id, iso(since))
    metrics.CHALLENGE_SWITCHES.labels(to="off").inc()
