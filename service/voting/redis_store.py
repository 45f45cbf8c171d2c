"""The vote's Redis calls, each under the outage policy (RedisHandle.fallback): Redis is
speed and coordination, so a failed call is logged and counted once, and the vote goes
on from the database."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from service.infra import metrics
from service.infra.redis import RedisHandle, incident
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
from service.tallies import recent
from service.voting import integrity

log = logging.getLogger(__name__)


class RedisVoteScripts:
    """The vote's VoteScripts on the app's Redis."""

    def __init__(self, redis: RedisHandle) -> None:
        self.redis = redis

    def admit(self, call: AdmitCall) -> Admission | None:
        # The fallback metric keeps its operation name (dashboards watch it).
        with self.redis.fallback("checking for a duplicate vote"):
            return self.redis.scripts.admit(call)
        return None  # Redis is down

    def count(self, call: CountCall, *, owner_id: int) -> Counted | None:
        """Everything after the commit in one call of count.lua. Never raises: the ballot
        is committed, and a tally that missed it is rebuilt from the database."""
        scopes = ((call.poll_id, None),) if call.context is None else (
            (call.poll_id, None), (call.poll_id, call.context))
        # Webhook keys share a hash tag of their own: on a Redis Cluster, where one script
        # reaches one slot, the vote is noted in a call of its own.
        if not self.redis.on_cluster:
            try:
                call.note_webhook(owner_id=owner_id, second=int(time.time()))
            except Exception:  # a vote never fails because of a webhook
                log.exception("could not note a vote for webhooks")
        counted = None
        try:
            with self.redis.fallback("counting a vote", missed=scopes):
                counted = self.redis.scripts.count(call)
        except Exception:  # a committed vote is answered whatever happens here
            log.exception("could not count a committed vote; its tallies will be rebuilt")
            incident.missed(scopes)
        recent.changed(call.poll_id)  # this process's next read sees it, heard or not
        if self.redis.on_cluster:
            self._note_alone(call, owner_id=owner_id)
        elif counted is not None:
            _warn_if_piling_up(counted.noted)
        return counted

    def _note_alone(self, call: CountCall, *, owner_id: int) -> None:
        """Note the vote for `vote.created` webhooks in a call of its own (count.lua with
        no tally scope runs just the step); never raises."""
        try:
            note = CountCall(poll_id=call.poll_id, ballot_id=call.ballot_id, at_ms=0,
                             counted=False).note_webhook(owner_id=owner_id,
                                                         second=int(time.time()))
            with self.redis.fallback("noting a vote for webhooks"):
                _warn_if_piling_up(self.redis.scripts.count(note).noted)
        except Exception:  # a vote never fails because of a webhook
            log.exception("could not note a vote for webhooks")

    def release(self, *, poll_id: str, identities: list[str], ballot_id: str) -> None:
        with self.redis.fallback("releasing a vote's claim"):
            self.redis.scripts.release(poll_id=poll_id, identities=identities,
                                       ballot_id=ballot_id)

    def release_dead(self, *, poll_id: str, identities: list[str], ballot_id: str,
                     at: datetime) -> None:
        released = 0
        with self.redis.fallback("releasing a vote's claim"):
            released = self.redis.scripts.release(poll_id=poll_id, identities=identities,
                                                  ballot_id=ballot_id)
        if released:
            log.info("released the claims of a vote whose process is gone and whose ballot "
                     "was never recorded", extra={"poll_id": poll_id})
            metrics.DEAD_CLAIMS_RELEASED.inc()
            integrity.record(redis=self.redis, poll_id=poll_id,
                             outcome=integrity.RELEASED_DEAD_CLAIMS, at=at)

    def confirm(self, *, poll_id: str, identities: list[str], claim: str) -> None:
        # A claim left unconfirmed is judged again from the database by the next duplicate.
        with self.redis.fallback("confirming a vote's claim"):
            self.redis.scripts.count(CountCall(poll_id=poll_id, ballot_id="", at_ms=0,
                                               counted=False).confirm(identities=identities,
                                                                      claim=claim))

    def key_begin(self, hold: KeyHold) -> KeyState | None:
        # The database's unique key still keeps the key to one ballot when Redis is down.
        with self.redis.fallback("checking an Idempotency-Key"):
            return self.redis.scripts.key_begin(hold)
        return None

    def key_finish(self, *, entry: str, token: str, answer: str, keep_ms: int) -> None:
        # An unfinished entry expires after its hold; the ballot is the record.
        with self.redis.fallback("storing an Idempotency-Key's answer"):
            self.redis.scripts.key_finish(entry=entry, token=token, answer=answer,
                                          keep_ms=keep_ms)

    def key_abort(self, *, entry: str, token: str) -> None:
        with self.redis.fallback("storing an Idempotency-Key's answer"):
            self.redis.scripts.key_abort(entry=entry, token=token)

    def count_outcome(self, *, poll_id: str, outcome: str, at: datetime) -> None:
        integrity.record(redis=self.redis, poll_id=poll_id, outcome=outcome, at=at)

    def spend_challenge(self, *, poll_id: str, token: str, spender: str, keep_ms: int,
                        mark_ms: int) -> tuple[bool, bool] | None:
        # The database keeps a solution to one use while Redis is away (records.py).
        with self.redis.fallback("spending a proof of work"):
            return self.redis.scripts.spend_challenge(poll_id=poll_id, token=token,
                                                      spender=spender, keep_ms=keep_ms,
                                                      mark_ms=mark_ms)
        return None

    def watch_challenge(self, call: WatchCall) -> Watched | None:
        # Without Redis nothing is watched: an `auto` poll stays as it is.
        with self.redis.fallback("watching a poll for attacks"):
            return self.redis.scripts.watch_challenge(call)
        return None


def _warn_if_piling_up(noted: int) -> None:
    if noted == -1:
        log.warning("too many vote batches wait for webhooks (is the worker running?)")
