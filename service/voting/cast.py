"""The vote use-case: from a parsed ballot and the request's facts to the whole answer,
or a typed refusal. The JSON API, the no-JS widget form and (through the widget) the
console's preview all cast votes here, so they share one rate limit and one count of
outcomes.

validate -> admit (Redis, atomic) -> record (database, committed) -> count (Redis).

The order is the guarantee: a ballot is committed before any tally counts it and before
the voter hears "201"; when the commit fails, the claims are released and nothing counts.
Two Redis round trips, because "counted only once committed" puts the commit between
them: admit.lua before it (the rate limits, the Idempotency-Key, the duplicate-check
claims), count.lua after it (the count, the claims marked committed, the live-stream
message, the `vote.created` webhook note, the integrity count, the tally shown, the
key's answer). Every attempt counts towards the rate limits and, once its answer is
decided, in the poll's integrity numbers, whether it is accepted or refused, and however
early.

A voter met by a claim is told `duplicate_vote` only when the claim's ballot is known
committed; while the vote that claimed them is in flight (its process's lease alive,
service/infra/redis/lease.py), `vote_pending`. A claim whose process is gone is settled
from the database: its ballot is there (a duplicate), or it is dead and released, and
the voter's vote goes on. The database's claim rows keep the voter to one ballot even if
a claim taken for dead belonged to a request that was only stalled.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from service.infra import kinds
from service.infra.clock import epoch_ms, iso
from service.infra.errors import (
    ChallengeRequired,
    DuplicateVote,
    IdempotencyKeyInUse,
    NotFound,
    PollClosed,
    PollFull,
    ServiceError,
    ValidationFailed,
    VotePending,
)
from service.infra.models import is_full
from service.infra.redis.lease import LEASE_MS, ProcessLease
from service.infra.redis.scripts import (
    Admission,
    AdmitCall,
    Admitted,
    CountCall,
    Counted,
    Duplicate,
    Full,
    InFlight,
    KeyAnswered,
    KeyHeld,
    KeyHold,
    KeyMismatch,
    KeyPending,
    Limited,
    Stale,
    Unresolved,
)
from service.tallies.counts import Counts
from service.tallies.results import is_suppressed, results_visible, tallies_view
from service.voting import captcha, challenge, idempotency, integrity
from service.voting.ballot import (
    CHECKED_IDENTITIES,
    DUPLICATE_DETAILS,
    Ballot,
    VoteFacts,
    check_origin,
    idempotency_hash,
    new_ballot_id,
    new_receipt,
    receipt_hash,
    validate,
    voter_hashes,
)
from service.voting.ports import (
    AlreadyRecorded,
    BallotStore,
    PollSource,
    Recorded,
    TallySource,
    VoteScripts,
)
from service.voting.ratelimits import Limit, MemoryLimits, RateLimited, address_hash

# Longer than any request may run (gunicorn kills a worker after its 30 s timeout): a
# claim this old not known committed is settled from the database even while its
# process's lease is alive (its request failed and could not release it).
ORPHAN_CLAIM_SECONDS = 45


@dataclass(frozen=True)
class Accepted:
    """The vote is recorded and counted (or was, for a replayed Idempotency-Key)."""

    answer: dict  # VoteResultSchema's shape: {"vote": {...}, "tallies": {...} | None}
    replayed: bool  # an Idempotency-Key's first answer, given again
    poll: object  # the poll voted in (its allowed origins answer CORS)


@dataclass(frozen=True)
class Refused:
    """The vote is refused; nothing was recorded."""

    error: ServiceError
    poll: object | None  # None when the poll is unknown


class StalePoll(Exception):
    """The process's unverified copy of the poll is out of date, or could not be checked
    before it would have refused the vote: vote again in the poll as it is now."""


@dataclass
class _Attempt:
    """One vote request: what it has counted so far."""

    poll_id: str
    facts: VoteFacts
    now: datetime
    poll: object | None = None
    limit_counted: bool = False
    outcome_counted: bool = False
    # Spends the vote's proof of work: the same attempt may spend it again (a retry in
    # the poll as it is now), no other.
    token: str = field(default_factory=lambda: secrets.token_hex(16))


@dataclass
class Voting:
    """The vote use-case, wired to its poll source, Redis, database and tallies."""

    polls: PollSource
    scripts: VoteScripts
    ballots: BallotStore
    tallies: TallySource
    secret: str
    limits: tuple[Limit, ...]
    memory_limits: MemoryLimits
    clock: Callable[[], datetime]
    lease: ProcessLease
    auto: challenge.AutoThresholds = field(default_factory=challenge.AutoThresholds)
    spent_in_database: challenge.SpentInDatabase = field(
        default_factory=challenge.SpentInDatabase)
    captcha: captcha.SiteVerify | None = None  # CAPTCHA_PROVIDER's check, if set

    def cast(self, *, poll_id: str, ballot: Ballot, facts: VoteFacts) -> Accepted | Refused:
        """Cast one vote: its whole answer, or why it is refused."""
        attempt = _Attempt(poll_id=poll_id, facts=facts, now=self.clock())
        try:
            return self._cast(attempt, ballot)
        except ServiceError as error:
            return self._refused(attempt, error)
        except Exception:
            self._count_limit(attempt)  # RateLimited answers first, as a limiter would
            raise

    def count_unparsed(self, *, poll_id: str, facts: VoteFacts) -> Refused | None:
        """Count an attempt whose body could not be parsed (it counts, as every attempt
        does): a refusal when it is over the rate limit, else None."""
        return self._limit_refusal(_Attempt(poll_id=poll_id, facts=facts, now=self.clock()))

    def _cast(self, attempt: _Attempt, ballot: Ballot) -> Accepted:
        key = idempotency.parse_key(attempt.facts.idempotency_key)
        poll = self.polls.peek(attempt.poll_id)
        if poll is not None:
            attempt.poll = poll
            try:
                return _Casting(self, attempt, poll, ballot, key, verified=False).run()
            except StalePoll:
                pass
        attempt.poll = poll = self.polls.get(attempt.poll_id)
        return _Casting(self, attempt, poll, ballot, key, verified=True).run()

    def _limit_refusal(self, attempt: _Attempt) -> Refused | None:
        """Count a refused attempt against the rate limits: a refusal when over them, or
        when the poll does not exist. An unknown poll is a 404 before anything is
        counted: an invented id never makes a Redis key (anyone could fill Redis)."""
        if attempt.poll is None:
            try:
                attempt.poll = self.polls.peek(attempt.poll_id) or self.polls.get(
                    attempt.poll_id)
            except NotFound as error:
                return Refused(error, None)
        try:
            self._count_limit(attempt)
        except RateLimited as limited:
            return Refused(limited, attempt.poll)
        return None

    def _refused(self, attempt: _Attempt, error: ServiceError) -> Refused:
        if attempt.poll is None and isinstance(error, NotFound):
            return Refused(error, None)  # the lookup already said so: not asked again
        limited = self._limit_refusal(attempt)
        if limited is not None:
            return limited
        if not attempt.outcome_counted:
            outcome = integrity.outcome_of(error)
            if outcome is not None:
                self.scripts.count_outcome(poll_id=attempt.poll_id, outcome=outcome,
                                           at=attempt.now)
        if attempt.poll.challenge == "auto" and error.code in challenge.SUSPICIOUS:
            self._watch(attempt)
        return Refused(error, attempt.poll)

    def _watch(self, attempt: _Attempt) -> None:
        """Count a suspicious refusal of an `auto` poll; switch its challenge on, or
        keep it on, when the poll looks attacked."""
        auto, poll = self.auto, attempt.poll
        watched = self.scripts.watch_challenge(challenge.WatchCall(
            poll_id=poll.id, now_ms=epoch_ms(attempt.now), least=auto.least,
            factor=auto.factor, quiet_ms=auto.quiet_seconds * 1000,
            smoothing=auto.smoothing, keep_seconds=challenge.WATCH_KEEP_SECONDS))
        if watched is None or not watched.until_ms:
            return
        until = challenge.moment_of(watched.until_ms)
        known = poll.challenge_until
        # Written when switched on, and again when half the quiet period has passed:
        # a few writes per attack, not one per refusal.
        if known is not None and until - known <= timedelta(seconds=auto.quiet_seconds / 2):
            return
        if self.polls.switch_challenge(poll.id, until=until, expected=known) and (
                known is None or known <= attempt.now):
            challenge.switched_on(poll.id, watched, until=until)

    def _count_limit(self, attempt: _Attempt) -> None:
        """Count an attempt refused before admit.lua counted it against the rate limits:
        RateLimited when over them (admit.lua counts that in the integrity numbers)."""
        if attempt.limit_counted:
            return
        attempt.limit_counted = True
        address = self.address_of(attempt.poll_id, attempt.facts)
        outcome = self.scripts.admit(AdmitCall(
            poll_id=attempt.poll_id, now_ms=epoch_ms(attempt.now),
            integrity_hour=integrity.hour_of(attempt.now),
            retention_seconds=integrity.RETENTION_SECONDS,
            limits=tuple(limit.window for limit in self.limits), limited_as=address))
        if outcome is None:
            self.memory_limits.hit(poll_id=attempt.poll_id, address=address, limits=self.limits)
        elif isinstance(outcome, Limited):
            raise RateLimited(outcome.retry_after_ms / 1000)

    def address_of(self, poll_id: str, facts: VoteFacts) -> str:
        """Whom the rate limits count: the voter's address, hashed for this poll."""
        return address_hash(secret=self.secret, poll_id=poll_id, address=facts.voter.address)


class _Casting:
    """One try at casting a ballot in one copy of the poll."""

    def __init__(self, voting: Voting, attempt: _Attempt, poll, ballot: Ballot,
                 key: str | None, *, verified: bool) -> None:
        self.voting = voting
        self.attempt = attempt
        self.poll = poll
        self.ballot = ballot
        self.key = key
        self.keyed = None if key is None else idempotency_hash(voting.secret, poll.id, key)
        # An unverified copy decides nothing alone: admit.lua checks its version token.
        self.verified = verified
        self.held: KeyHold | None = None  # the Idempotency-Key this request answers
        self.closed_full = False  # this vote took the poll's last place (max_votes)

    def run(self) -> Accepted:
        poll, now = self.poll, self.attempt.now
        try:
            check_origin(poll, self.attempt.facts)
        except ServiceError:
            if not self.verified:
                raise StalePoll() from None  # refuse only by the poll as it is now
            raise
        status = poll.status_at(now)
        if is_full(poll):
            return self._refuse(PollFull())
        if status != "open":
            return self._refuse(PollClosed("This poll has not opened yet." if status ==
                                           "scheduled" else "This poll is closed."))
        try:
            validate(poll, self.ballot)
            self._check_challenge()
        except (ValidationFailed, ChallengeRequired) as error:
            return self._refuse(error)
        self._identify()
        with self.voting.lease.voting_in(poll.id):
            return self._admit() or self._record() or self._count()

    def _check_challenge(self) -> None:
        """A poll that asks for a proof of work: the vote's solution, valid and spent by
        this attempt, or ChallengeRequired."""
        voting, poll, now = self.voting, self.poll, self.attempt.now
        if not challenge.challenge_on(poll, now):
            # Quiet again: of the processes that notice, one switches it off and says so.
            if poll.challenge == "auto" and poll.challenge_until is not None and \
                    voting.polls.switch_challenge(poll.id, until=None,
                                                  expected=poll.challenge_until):
                challenge.switched_off(poll.id, since=poll.challenge_until)
            return
        if voting.captcha is not None and self.ballot.captcha and not self.ballot.altcha:
            self._check_captcha()
            return
        solution = challenge.solution_of(secret=voting.secret, poll_id=poll.id,
                                         payload=self.ballot.altcha, now=now)
        challenge.spend(solution, poll_id=poll.id, spender=self.attempt.token, now=now,
                        scripts=voting.scripts, ballots=voting.ballots,
                        spent_in_database=voting.spent_in_database)

    def _check_captcha(self) -> None:
        """The third-party captcha standing for the proof of work: passed by its
        provider, or ChallengeRequired (also when the provider cannot be reached)."""
        verdict = self.voting.captcha.verify(self.ballot.captcha,
                                             remote_ip=self.attempt.facts.voter.address)
        if verdict is captcha.Verdict.UNREACHABLE:
            raise ChallengeRequired(captcha.UNREACHABLE)
        if verdict is not captcha.Verdict.PASSED:
            raise ChallengeRequired(captcha.FAILED)

    def _identify(self) -> None:
        voting, poll = self.voting, self.poll
        self.hashes = voter_hashes(poll=poll, voter=self.attempt.facts.voter,
                                   ballot=self.ballot, secret=voting.secret)
        self.kinds = CHECKED_IDENTITIES[poll.duplicate_check]
        self.identities = [f"{kind}:{self.hashes[kind]}" for kind in self.kinds]
        self.ballot_id = new_ballot_id()
        self.receipt = new_receipt(secret=voting.secret, poll_id=poll.id,
                                   ballot_id=self.ballot_id, idempotency_key=self.key)
        now = self.attempt.now
        self.call = AdmitCall(
            poll_id=poll.id, now_ms=epoch_ms(now), integrity_hour=integrity.hour_of(now),
            retention_seconds=integrity.RETENTION_SECONDS,
            limits=tuple(limit.window for limit in voting.limits),
            limited_as=voting.address_of(poll.id, self.attempt.facts),
            key=None if self.key is None else self._new_hold(),
            ballot_id=self.ballot_id,
            identities=tuple(zip(self.kinds, self.identities, strict=True)),
            window_ms=(poll.vote_window_seconds or 0) * 1000,
            orphan_ms=ORPHAN_CLAIM_SECONDS * 1000, lease=voting.lease.token, lease_ms=LEASE_MS,
            # With a key, a duplicate may still be its own recorded vote: counted once decided.
            count_duplicate=self.key is None,
            version=None if self.verified else poll.version, max_votes=poll.max_votes or 0)

    # -- admission (admit.lua) ----------------------------------------------------------

    def _admit(self) -> Accepted | None:
        """Claim the voter's identities (and the key); a replay, or None to go on."""
        outcome = self.voting.scripts.admit(self.call)
        if isinstance(outcome, Stale) or (outcome is None and not self.verified):
            raise StalePoll()
        self.verified = True
        self.attempt.limit_counted = True
        if outcome is None:
            return self._admit_without_redis()
        return self._admitted(outcome)

    def _admitted(self, outcome: Admission) -> Accepted | None:
        if isinstance(outcome, Limited):
            self.attempt.outcome_counted = True
            raise RateLimited(outcome.retry_after_ms / 1000)
        if isinstance(outcome, KeyMismatch):
            raise idempotency.mismatch()
        if isinstance(outcome, KeyAnswered):
            return self._replay_kept(outcome.entry)
        if isinstance(outcome, KeyPending):
            outcome = self._wait_for_key()
            if isinstance(outcome, Accepted):
                return outcome
        outcome = self._settle(outcome)
        if isinstance(outcome, Full):
            self.attempt.outcome_counted = True  # admit.lua counted it
            return self._refuse(PollFull(), key_checked=True)
        if isinstance(outcome, InFlight):
            self._give_key_up()
            return self._refuse(VotePending(identity=outcome.kind), key_checked=True)
        if isinstance(outcome, Duplicate):
            self._give_key_up()
            if outcome.counted:
                self.attempt.outcome_counted = True
            return self._refuse(DuplicateVote(DUPLICATE_DETAILS[outcome.kind],
                                              identity=outcome.kind), key_checked=True)
        if not isinstance(outcome, Admitted):
            # a retry's second admission met a new state: answer as its first would have
            self._give_key_up()
            raise IdempotencyKeyInUse()
        if self.held is None and self.call.key is not None:
            self.held = self.call.key
        return None

    def _wait_for_key(self) -> Admission | Accepted:
        """Another request holds the key: wait for its answer, or for it to give up, then
        claim the voter's identities without the key (held now, or Redis away)."""
        hold = self._new_hold()
        state = idempotency.wait(self.voting.scripts.key_begin, hold)
        if isinstance(state, KeyAnswered):
            return self._replay_kept(state.entry)
        if isinstance(state, KeyHeld):
            self.held = hold
        self.call = replace(self.call, limits=(), key=None, version=None)
        return self.voting.scripts.admit(self.call) or Admitted()

    def _settle(self, outcome: Admission) -> Admission:
        """Settle claims whose vote's fate Redis cannot tell (its process is gone, or it
        is older than any request) from the database: the ballot is there (a duplicate,
        its claims marked so), or the vote is dead: its claims are released and the voter
        claimed afresh. Each identity may meet one such claim."""
        voting = self.voting
        for _ in self.identities:
            if not isinstance(outcome, Unresolved):
                return outcome
            if voting.ballots.exists(outcome.holder):
                voting.scripts.confirm(poll_id=self.poll.id, identities=self.identities,
                                       claim=outcome.claim)
                return Duplicate(kind=outcome.kind, holder=outcome.holder, counted=False)
            voting.scripts.release_dead(poll_id=self.poll.id, identities=self.identities,
                                        ballot_id=outcome.holder, at=self.attempt.now)
            self.call = replace(self.call, limits=(), version=None,
                                key=None if self.held else self.call.key)
            outcome = voting.scripts.admit(self.call) or Admitted()
        if isinstance(outcome, Unresolved):  # settled above as often as it may be
            return InFlight(kind=outcome.kind, holder=outcome.holder)
        return outcome

    def _admit_without_redis(self) -> None:
        """Redis is down: count the attempt in memory; the database's claim rows judge
        the duplicate check when the ballot is written."""
        voting = self.voting
        voting.memory_limits.hit(poll_id=self.poll.id, address=self.call.limited_as,
                                 limits=voting.limits)

    # -- record (the database) ----------------------------------------------------------

    def _record(self) -> Accepted | None:
        """Commit the ballot; a replay when a concurrent retry recorded its key first."""
        poll, ballot = self.poll, self.ballot
        row = {
            "id": self.ballot_id, "poll_id": poll.id, "created_at": self.attempt.now,
            "other": ballot.other, "comment": ballot.comment, "context": ballot.context,
            "cookie_hash": self.hashes["cookie"], "ip_hash": self.hashes["ip"],
            "user_hash": self.hashes.get("user"), "receipt_hash": receipt_hash(self.receipt),
            "idempotency_hash": self.keyed,
            "ranking": kinds.of(poll.kind).ranking(ballot.choices),
        }
        window = poll.vote_window_seconds
        try:
            # With max_votes, the database gives the places out (records.py): the vote
            # taking the last one closes the poll, and is told so.
            self.closed_full = self.voting.ballots.record(
                row, option_ids=ballot.choices, claims=self.identities,
                claims_until=None if window is None else self.attempt.now + timedelta(
                    seconds=window), limited=poll.max_votes is not None)
        except AlreadyRecorded as refused:
            # Redis had lost this voter's claim (or this key); the database remembered it.
            self._undo()
            return self._recorded_before(refused)
        except BaseException:
            self._undo()
            raise
        return None

    def _recorded_before(self, refused: AlreadyRecorded) -> Accepted:
        if self.keyed is not None:
            recorded = self.voting.ballots.keyed(poll_id=self.poll.id, key_hash=self.keyed)
            if recorded is not None:  # a concurrent retry recorded it first
                return self._replay_recorded(recorded)
        kind = self.voting.ballots.claimed_kind(poll_id=self.poll.id,
                                                identities=self.identities, at=self.attempt.now)
        if kind is None:
            raise refused  # the database's refusal, unexplained: a 500
        raise DuplicateVote(DUPLICATE_DETAILS[kind], identity=kind) from None

    def _undo(self) -> None:
        self.voting.scripts.release(poll_id=self.poll.id, identities=self.identities,
                                    ballot_id=self.ballot_id)
        self._give_key_up()

    # -- count (count.lua) --------------------------------------------------------------

    def _count(self) -> Accepted:
        poll, now, ballot = self.poll, self.attempt.now, self.ballot
        shown = results_visible(poll, now=now, is_owner=False, has_voted=lambda: True)
        created_at = iso(now)
        call = CountCall(poll_id=poll.id, ballot_id=self.ballot_id, at_ms=epoch_ms(now),
                         option_ids=kinds.of(poll.kind).counted(ballot.choices),
                         has_other=ballot.other is not None, context=ballot.context)
        if self.identities:
            call.confirm(identities=self.identities, claim=self.call.claim)
        call.publish().integrity(
            integrity.ACCEPTED, hour=integrity.hour_of(now),
            retention_seconds=integrity.RETENTION_SECONDS)
        if shown:
            call.read()
        if self.held is not None:
            call.keep_answer(entry=self.held.entry, token=self.held.token,
                             answer=idempotency.kept_answer(
                                 poll=poll, status=poll.status_at(now), ballot_id=self.ballot_id,
                                 created_at=created_at, shown=shown,
                                 challenge=challenge.challenge_on(poll, now)),
                             keep_ms=idempotency.ANSWER_SECONDS * 1000, with_tally=shown)
        counted = self.voting.scripts.count(call, owner_id=poll.owner_id)
        self.attempt.outcome_counted = True
        if self.closed_full:
            # Counted first: the `poll.closed` webhook's total includes this vote.
            self.voting.polls.closed_full(poll.id, at=now)
        answer = {"vote": {"id": self.ballot_id, "receipt": self.receipt,
                           "created_at": created_at},
                  "tallies": self._shown(counted) if shown else None}
        if self.held is not None and not (counted is not None and counted.kept):
            self.voting.scripts.key_finish(entry=self.held.entry, token=self.held.token,
                                           answer=idempotency.finished_answer(answer),
                                           keep_ms=idempotency.ANSWER_SECONDS * 1000)
        return Accepted(answer, replayed=False, poll=poll)

    def _shown(self, counted: Counted | None) -> dict:
        """The tallies the voter sees after voting: as counted with the vote, or read."""
        if counted is not None and counted.tally:
            counts = Counts.from_flat(counted.tally)
        else:
            counts = self.voting.tallies.read(self.poll)
        return tallies_view(self.poll, counts, now=self.attempt.now,
                            suppressed=is_suppressed(self.poll, counts, is_owner=False))

    # -- refusals and replays -------------------------------------------------------------

    def _refuse(self, error: ServiceError, *, key_checked: bool = False) -> Accepted:
        """Raise the refusal, unless the vote's Idempotency-Key was answered: then that
        answer is given again, as Redis kept it, or from the recorded ballot."""
        if not self.verified:
            raise StalePoll()  # refuse only by the poll as it is now
        if self.keyed is not None and not key_checked:
            hold = self._new_hold()
            state = idempotency.wait(self.voting.scripts.key_begin, hold)
            if isinstance(state, KeyAnswered):
                return self._replay_kept(state.entry)
            if isinstance(state, KeyHeld):
                self.voting.scripts.key_abort(entry=hold.entry, token=hold.token)
        if self.keyed is not None:
            recorded = self.voting.ballots.keyed(poll_id=self.poll.id, key_hash=self.keyed)
            if recorded is not None:
                return self._replay_recorded(recorded)
        raise error

    def _new_hold(self) -> KeyHold:
        return idempotency.new_hold(secret=self.voting.secret, poll_id=self.poll.id,
                                    key=self.key, ballot=self.ballot)

    def _give_key_up(self) -> None:
        """The vote was refused or failed and counted nothing: a retry decides afresh."""
        if self.held is not None:
            self.voting.scripts.key_abort(entry=self.held.entry, token=self.held.token)

    def _receipt_of(self, ballot_id: str) -> str:
        return new_receipt(secret=self.voting.secret, poll_id=self.poll.id,
                           ballot_id=ballot_id, idempotency_key=self.key)

    def _replay_kept(self, entry: dict[bytes, bytes]) -> Accepted:
        """The answer the key's first request kept in Redis, given again."""
        kept = idempotency.stored_answer(entry)
        vote = {**kept["vote"], "receipt": self._receipt_of(kept["vote"]["id"])}
        return Accepted({"vote": vote, "tallies": kept["tallies"]}, replayed=True,
                        poll=self.poll)

    def _replay_recorded(self, recorded: Recorded) -> Accepted:
        """The key's ballot as the database recorded it, with the tallies as they are."""
        poll, now = self.poll, self.attempt.now
        shown = results_visible(poll, now=now, is_owner=False, has_voted=lambda: True)
        answer = {"vote": {"id": recorded.id, "receipt": self._receipt_of(recorded.id),
                           "created_at": iso(recorded.created_at)},
                  "tallies": self._shown(None) if shown else None}
        return Accepted(answer, replayed=True, poll=poll)
