"""Every Lua script of `lua/`, loaded once per client, and every call's keys and
arguments, named here and nowhere else.

redis-py's `register_script` runs a script by EVALSHA and loads it again on NOSCRIPT.
Each method below builds one call's KEYS and ARGV from named values, runs it, and turns
its answer into typed values; a Redis error passes through to the caller, which decides
inside `RedisHandle.fallback` what an outage means for it.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from importlib import resources

from redis.exceptions import NoScriptError

from service.infra import keys
from service.infra.batching import Coalescer

NAMES = ("admit", "release", "count", "change", "rebuild", "idempotency", "poll_and_tally",
         "webhook_take_batch", "spend_challenge", "watch_challenge")
# The vote's scripts, which concurrent votes of a process send in one pipeline.
BATCHED = ("admit", "count")
# How long a count waits in a tally's pending list for a rebuild to take it in. Only
# entries pushed after a rebuild took its lock matter, so a short list is kept.
PENDING_COUNT_SECONDS = 600
# `vote.created` batches waiting beyond this many (no worker running) are dropped rather
# than filling Redis, and each batch expires after a day.
WEBHOOK_MAX_WAITING_BATCHES = 100_000
WEBHOOK_BATCH_TTL_SECONDS = 86_400


# -- admit.lua: the vote's first round trip ------------------------------------------------


@dataclass(frozen=True)
class LimitWindow:
    """One moving-window rate limit: `amount` attempts per `window_ms`."""

    amount: int
    window_ms: int


@dataclass(frozen=True)
class KeyHold:
    """An Idempotency-Key entry a request asks to hold while its vote is admitted."""

    entry: str  # keys.idempotency(...)
    token: str  # who holds it
    body: str  # the keyed hash of the request body
    hold_ms: int  # how long an unanswered entry is held


@dataclass(frozen=True)
class AdmitCall:
    """What admit.lua is asked for one vote attempt: its rate limits, then its
    Idempotency-Key, then its duplicate-check claims, in one atomic step."""

    poll_id: str
    now_ms: int
    integrity_hour: str  # the hour whose integrity hash counts a refusal
    retention_seconds: int  # how long integrity hashes are kept
    limits: tuple[LimitWindow, ...] = ()
    limited_as: str = ""  # the keyed hash of the address the limits count
    key: KeyHold | None = None
    ballot_id: str = ""
    # (kind, identity) per checked voter identity, identity being "kind:keyed hash".
    identities: tuple[tuple[str, str], ...] = ()
    window_ms: int = 0  # 0: one vote ever
    orphan_ms: int = 0  # a claim older than this without its ballot is the caller's to judge
    lease: str = ""  # the calling process's lease token (service/infra/redis/lease.py)
    lease_ms: int = 0  # how long the lease lasts once set
    count_duplicate: bool = False  # count a duplicate refusal in the integrity hash
    version: str | None = None  # the caller's unverified copy of the poll
    # The poll's max_votes (0: none): refused as Full once its tally counts that many.
    max_votes: int = 0

    @property
    def claim(self) -> str:
        """The value admit.lua gives the voter's claims when it admits the vote."""
        until = self.now_ms + self.window_ms if self.window_ms else 0
        return f"{self.ballot_id}:{until}:{self.now_ms}:{self.lease}"

    def keys_and_args(self) -> tuple[list[str], list]:
        script_keys = [keys.poll_version(self.poll_id)] if self.version else []
        if self.max_votes:
            script_keys.append(keys.tally(self.poll_id))
        script_keys += [keys.rate_limit(self.poll_id, self.limited_as, limit.amount,
                                        limit.window_ms) for limit in self.limits]
        args: list = [self.now_ms, len(self.limits), "0" if self.key is None else "1",
                      self.retention_seconds, "1" if self.count_duplicate else "0",
                      self.version or "", self.max_votes]
        for limit in self.limits:
            args += [limit.amount, limit.window_ms]
        if self.key is not None:
            script_keys.append(self.key.entry)
            args += [self.key.token, self.key.body, self.key.hold_ms]
        script_keys.append(keys.integrity(self.poll_id, self.integrity_hour))
        script_keys.append(keys.lease(self.poll_id, self.lease))
        script_keys += [keys.seen(self.poll_id, identity) for _kind, identity in self.identities]
        args += [self.ballot_id, self.window_ms, self.orphan_ms, self.lease, self.lease_ms]
        args += [kind for kind, _identity in self.identities]
        return script_keys, args


@dataclass(frozen=True)
class Admitted:
    """Every identity is now claimed for the ballot (and the key, if any, held)."""


@dataclass(frozen=True)
class Duplicate:
    """An identity of the voter is claimed by a committed ballot."""

    kind: str  # which identity: cookie, ip or user
    holder: str  # the ballot id the claim is for
    counted: bool  # the script counted this refusal in the integrity hash


@dataclass(frozen=True)
class InFlight:
    """An identity of the voter is claimed by a vote not committed yet, whose process is
    alive: its fate is not known yet."""

    kind: str
    holder: str


@dataclass(frozen=True)
class Unresolved:
    """An identity of the voter is claimed by a vote not known to be committed, whose
    process is gone or which is older than any request may live: committed if its ballot
    is in the database, dead otherwise."""

    kind: str
    holder: str
    claim: str  # the claim's value as held


def committed_claim(claim: str) -> str:
    """A claim's value once its ballot is known to be committed (owner '-')."""
    ballot_id, until, claimed = [*claim.split(":"), "0", ""][:3]
    return f"{ballot_id}:{until}:{claimed}:-"


@dataclass(frozen=True)
class Limited:
    """Over a rate limit; nothing else was done."""

    retry_after_ms: int


@dataclass(frozen=True)
class Stale:
    """The caller's copy of the poll is out of date; nothing was done."""


@dataclass(frozen=True)
class Full:
    """The poll's tally counts its max_votes ballots already; nothing was claimed."""


@dataclass(frozen=True)
class KeyAnswered:
    """The Idempotency-Key has its answer already: the entry's fields."""

    entry: dict[bytes, bytes]


@dataclass(frozen=True)
class KeyPending:
    """Another request holds the Idempotency-Key and has not answered yet."""


@dataclass(frozen=True)
class KeyMismatch:
    """The Idempotency-Key was used with another request body."""


@dataclass(frozen=True)
class KeyHeld:
    """idempotency.lua's 'begin': the key is now the caller's to answer."""


Admission = (Admitted | Duplicate | InFlight | Unresolved | Limited | Stale | Full
             | KeyAnswered | KeyPending | KeyMismatch)
KeyState = KeyHeld | KeyAnswered | KeyPending | KeyMismatch


def _entry(fields: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(fields[::2], fields[1::2], strict=True))


def _admission(reply: list, call: AdmitCall) -> Admission:
    state = reply[0]
    if state == b"admitted":
        return Admitted()
    if state in (b"duplicate", b"in_flight", b"unresolved"):
        kind = call.identities[int(reply[1]) - 1][0]
        claim = reply[2].decode()
        holder = claim.partition(":")[0]
        if state == b"duplicate":
            return Duplicate(kind=kind, holder=holder, counted=bool(int(reply[3])))
        if state == b"in_flight":
            return InFlight(kind=kind, holder=holder)
        return Unresolved(kind=kind, holder=holder, claim=claim)
    return _refusal_or_key_state(reply)


def _refusal_or_key_state(reply: list) -> Admission:
    """An answer that claimed nothing: a refusal before the claim, or the key's state."""
    state = reply[0]
    if state == b"limited":
        return Limited(int(reply[1]))
    if state == b"stale":
        return Stale()
    if state == b"full":
        return Full()
    if state == b"done":
        return KeyAnswered(_entry(reply[1:]))
    if state == b"pending":
        return KeyPending()
    if state == b"mismatch":
        return KeyMismatch()
    raise ValueError(f"admit.lua answered {state!r}")


# -- count.lua: the vote's second round trip ------------------------------------------------


@dataclass
class CountCall:
    """count.lua: count a committed ballot in its poll's tally (and its context's), then
    run the steps added in order: each method adds one and names its keys and arguments."""

    poll_id: str
    ballot_id: str
    at_ms: int
    option_ids: tuple[int, ...] = ()
    has_other: bool = False
    context: str | None = None
    counted: bool = True  # False: only the steps (no tally scope)
    _keys: list[str] = field(default_factory=list)
    _steps: list = field(default_factory=list)

    def publish(self) -> CountCall:
        """Tell the poll's live streams (a hint: they re-read the tally)."""
        self._steps += ["publish", keys.tally_changes(self.poll_id)]
        return self

    def integrity(self, outcome: str, *, hour: str, retention_seconds: int) -> CountCall:
        """Count the attempt's outcome in this hour's integrity hash."""
        self._keys.append(keys.integrity(self.poll_id, hour))
        self._steps += ["integrity", outcome, retention_seconds]
        return self

    def note_webhook(self, *, owner_id: int, second: int) -> CountCall:
        """Note the ballot for `vote.created` webhooks if the owner subscribes: it joins
        the batch of its poll and (wall-clock) second."""
        member = f"{self.poll_id}:{second}"
        self._keys += [keys.webhook_subscribers(), keys.webhook_batches(),
                       keys.webhook_batch(member)]
        self._steps += ["webhook", owner_id, member, second, WEBHOOK_MAX_WAITING_BATCHES,
                        WEBHOOK_BATCH_TTL_SECONDS]
        return self

    def confirm(self, *, identities: list[str], claim: str) -> CountCall:
        """Mark the ballot's claims of these voter identities committed, where they still
        hold `claim`."""
        self._keys += [keys.seen(self.poll_id, identity) for identity in identities]
        self._steps += ["confirm", len(identities), claim, committed_claim(claim)]
        return self

    def read(self) -> CountCall:
        """Answer the poll's tally as it is after the count."""
        self._steps.append("read")
        return self

    def keep_answer(self, *, entry: str, token: str, answer: str, keep_ms: int,
                    with_tally: bool) -> CountCall:
        """Keep an Idempotency-Key's answer for its retries (after `read` when the answer
        shows the tally, which is kept with it)."""
        self._keys.append(entry)
        self._steps += ["answer", token, answer, keep_ms, "1" if with_tally else "0"]
        return self

    def keys_and_args(self) -> tuple[list[str], list]:
        scopes: list[str] = []
        if self.counted:
            scopes = keys.tally_scope(self.poll_id)
            if self.context is not None:
                scopes += keys.tally_scope(self.poll_id, self.context)
        args = [self.ballot_id, self.at_ms, "1" if self.has_other else "0",
                PENDING_COUNT_SECONDS, len(scopes) // 4, len(self.option_ids),
                *self.option_ids, *self._steps]
        return scopes + self._keys, args


@dataclass(frozen=True)
class Counted:
    """count.lua's answer."""

    noted: int  # the webhook step: 1 noted, 0 not subscribed (or no step), -1 too many waiting
    tally: list[bytes]  # the poll's tally as HGETALL lists it (with `read`; empty while rebuilt)
    kept: bool  # the Idempotency-Key's answer was kept


# -- change.lua: a changed vote moves in its tallies -------------------------------------


@dataclass(frozen=True)
class ChangeCall:
    """change.lua: move one committed change of a ballot in its poll's tallies (and its
    context's), count it in the hour's integrity hash and tell live streams."""

    poll_id: str
    token: str  # tallies.counts.change_token(ballot id, changed_at)
    at_ms: int
    old_option_ids: tuple[int, ...]
    new_option_ids: tuple[int, ...]
    had_other: bool
    has_other: bool
    context: str | None
    integrity_hour: str
    integrity_field: str
    retention_seconds: int

    def keys_and_args(self) -> tuple[list[str], list]:
        scopes = keys.tally_scope(self.poll_id)
        if self.context is not None:
            scopes += keys.tally_scope(self.poll_id, self.context)
        script_keys = [*scopes, keys.integrity(self.poll_id, self.integrity_hour)]
        args = [self.token, self.at_ms, len(scopes) // 4, "1" if self.had_other else "0",
                "1" if self.has_other else "0", len(self.old_option_ids),
                *self.old_option_ids, len(self.new_option_ids), *self.new_option_ids,
                keys.tally_changes(self.poll_id), self.integrity_field,
                self.retention_seconds]
        return script_keys, args


@dataclass(frozen=True)
class WatchCall:
    """watch_challenge.lua's call: one suspicious refusal of an `auto` poll, and the
    thresholds that decide whether it looks attacked."""

    poll_id: str
    now_ms: int
    least: int  # refusals in one minute that always switch it on
    factor: float  # times the poll's baseline per minute that switch it on
    quiet_ms: int  # on until this long after the last minute over the line
    smoothing: float  # the baseline's moving-average weight of each quiet minute
    keep_seconds: int  # how long the watch outlives the poll's last refusal


@dataclass(frozen=True)
class Watched:
    """watch_challenge.lua's answer."""

    until_ms: int  # the challenge is on until then (0: off)
    switched_on: bool  # this refusal switched it on
    count: int  # suspicious refusals this minute
    line: float  # what this minute had to reach


class Scripts:
    """The scripts registered on one client, and one method per call.

    The vote's two scripts (admit, count) of concurrent votes of the process are sent in
    one pipeline (service/infra/batching.py): one round trip, one connection, for all of
    them, each vote still given its own reply. Not on a Redis Cluster, where a pipeline
    is split by node anyway.

    With `deliver`, the scripts that publish a change message (count, change) are
    followed by one more round trip (`delivered`): one PING for every call that asked
    while the previous one was on its way (see RedisHandle.deliver)."""

    def __init__(self, client, *, batched: bool = True, deliver: bool = False) -> None:
        folder = resources.files(__package__).joinpath("lua")
        self._client = client
        self._deliver = deliver
        # One PING for the votes that ask meanwhile, beside the next batch of counts.
        self._delivery = Coalescer(self._pings)
        self._run = {name: client.register_script(folder.joinpath(f"{name}.lua").read_text())
                     for name in NAMES}
        self._batched = {name: Coalescer(functools.partial(self._pipeline, name))
                         for name in BATCHED} if batched else {}

    def _call(self, name: str, script_keys: list, args: list):
        batched = self._batched.get(name)
        if batched is None:
            return self._run[name](keys=script_keys, args=args)
        return batched.submit((script_keys, args))

    def _pipeline(self, name: str, calls: list[tuple[list, list]]) -> list:
        """Run a batch of one script's calls: alone, by EVALSHA; together, in a pipeline
        (a reply that is an error is that call's to raise)."""
        script = self._run[name]
        if len(calls) == 1:
            script_keys, args = calls[0]
            return [script(keys=script_keys, args=args)]
        pipe = self._client.pipeline(transaction=False)
        for script_keys, args in calls:
            pipe.evalsha(script.sha, len(script_keys), *script_keys, *args)
        replies = pipe.execute(raise_on_error=False)
        for index, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):  # Redis lost its scripts: loaded again
                script_keys, args = calls[index]
                try:
                    replies[index] = script(keys=script_keys, args=args)
                except Exception as error:
                    replies[index] = error
        return replies

    def delivered(self) -> None:
        """With `deliver`: one round trip after the change messages published by this
        process's calls answered so far, which are then on every subscriber's socket.
        Redis writes out all the output a command made, its pub/sub messages included,
        before it polls for more input, and this PING is sent only once the publishing
        call was answered. Never raises: a message not delivered is shown late, never
        lost (service/tallies/recent.py bounds how late)."""
        if self._deliver:
            with contextlib.suppress(Exception):
                self._delivery.submit(None)

    def _pings(self, asked: list[None]) -> list[None]:
        self._client.ping()
        return [None] * len(asked)
    def admit(self, call: AdmitCall) -> Admission:
        script_keys, args = call.keys_and_args()
        return _admission(self._call("admit", script_keys, args), call)

    def count(self, call: CountCall) -> Counted:
        script_keys, args = call.keys_and_args()
        noted, tally, kept = self._call("count", script_keys, args)
        self.delivered()
        return Counted(noted=int(noted), tally=tally, kept=bool(kept))

    def change(self, call: ChangeCall) -> int:
        """Move a changed ballot in its tallies: how many tallies moved (the others were
        missing or being rebuilt, and are rebuilt from the database)."""
        script_keys, args = call.keys_and_args()
        moved = int(self._run["change"](keys=script_keys, args=args))
        self.delivered()
        return moved

    def release(self, *, poll_id: str, identities: list[str], ballot_id: str) -> int:
        """Free the duplicate-check claims `ballot_id` holds; others' claims are kept."""
        if not identities:
            return 0
        return self._run["release"](keys=[keys.seen(poll_id, i) for i in identities],
                                    args=[ballot_id])

    def key_begin(self, hold: KeyHold) -> KeyState:
        """Hold an Idempotency-Key, or learn who holds it and whether it is answered."""
        reply = self._run["idempotency"](keys=[hold.entry],
                                         args=["begin", hold.token, hold.body, hold.hold_ms])
        if reply[0] == b"new":
            return KeyHeld()
        return _refusal_or_key_state(reply)

    def key_finish(self, *, entry: str, token: str, answer: str, keep_ms: int) -> None:
        """Keep the holder's answer for the key's retries."""
        self._run["idempotency"](keys=[entry], args=["finish", token, answer, keep_ms])

    def key_abort(self, *, entry: str, token: str) -> None:
        """The holder gives the key up: a retry decides afresh."""
        self._run["idempotency"](keys=[entry], args=["abort", token])

    def rebuild(self, *, poll_id: str, context: str | None, token: str,
                included_seconds: int, counts: dict[str, int], seen: list[str]) -> bool:
        """Store a tally read from a database snapshot while holding its rebuild lock;
        False when the lock was lost."""
        flat = [item for pair in counts.items() for item in pair]
        return bool(self._run["rebuild"](
            keys=keys.tally_scope(poll_id, context),
            args=[token, included_seconds, len(counts), *flat, *seen]))

    def poll_and_tally(self, *, poll_id: str,
                       context: str | None) -> tuple[bytes | None, list[bytes]]:
        """A poll's version token and one of its tallies (as HGETALL lists it)."""
        version, flat = self._run["poll_and_tally"](
            keys=[keys.poll_version(poll_id), keys.tally(poll_id, context)])
        return version, flat

    def spend_challenge(self, *, poll_id: str, token: str, spender: str, keep_ms: int,
                        mark_ms: int = 0) -> tuple[bool, bool]:
        """Spend a proof-of-work solution for one vote attempt: whether it is this
        attempt's (False: used already), and whether the database must be asked too."""
        spent, ask_database = self._run["spend_challenge"](
            keys=[keys.challenge_spent(poll_id, token),
                  keys.challenge_spent_in_database(poll_id)],
            args=[spender, keep_ms, mark_ms])
        return bool(spent), bool(ask_database)

    def watch_challenge(self, call: WatchCall) -> Watched:
        """Count a suspicious refusal of an `auto` poll; switch its challenge on when the
        minute's count crosses its line."""
        until, switched, count, line = self._run["watch_challenge"](
            keys=[keys.challenge_watch(call.poll_id)],
            args=[call.now_ms, call.now_ms // 60_000, call.least, call.factor,
                  call.quiet_ms, call.smoothing, call.keep_seconds])
        return Watched(until_ms=int(until), switched_on=bool(switched), count=int(count),
                       line=float(line))

    def take_webhook_batch(self, member: str) -> list[str]:
        """Take one `vote.created` batch whole, once: its ballot ids."""
        taken = self._run["webhook_take_batch"](
            keys=[keys.webhook_batches(), keys.webhook_batch(member)], args=[member])
        return [ballot_id.decode() for ballot_id in taken]
