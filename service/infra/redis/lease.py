"""This process's lease: how other processes tell a vote in flight from a dead one.

A vote claims its voter in Redis before its ballot is committed (admit.lua), and marks
the claim committed after (count.lua). A claim not yet marked names the process that
made it by the process's lease token. While that process works on votes in the poll,
it keeps the poll's lease key (keys.lease) alive: admit.lua sets it with every claim,
and a timer refreshes it every REFRESH_SECONDS for each poll with a vote in flight. A
claim whose owner's lease has expired was left by a process that died (a killed worker,
a lost node): nobody will commit its ballot, and the voter's retry may release it once
the database confirms there is no ballot. Within LEASE_MS of a process's death, its
claims are known dead.

A process that is alive but stalled for longer than LEASE_MS (its event loop blocked)
may lose its lease while its request still runs; the database's claim rows
(records.py) then keep the voter to one ballot whichever request commits first.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from service.infra import keys, periodic

log = logging.getLogger(__name__)

LEASE_MS = 3000
REFRESH_SECONDS = 1


class ProcessLease:
    """The process's lease token and the polls it has votes in flight in."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(9)
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def voting_in(self, poll_id: str) -> Iterator[None]:
        """Keep the poll's lease alive while a vote in it is in flight."""
        with self._lock:
            self._in_flight[poll_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[poll_id] -= 1
                if not self._in_flight[poll_id]:
                    del self._in_flight[poll_id]

    def polls_in_flight(self) -> list[str]:
        with self._lock:
            return list(self._in_flight)

    def refresh(self, handle) -> None:
        """Set the lease of every poll with a vote in flight, in one pipeline; never raises."""
        polls = self.polls_in_flight()
        if not polls:
            return
        with handle.fallback("refreshing the process's lease"):
            pipeline = handle.client.pipeline(transaction=False)
            for poll_id in polls:
                pipeline.set(keys.lease(poll_id, self.token), 1, px=LEASE_MS)
            pipeline.execute()

    def start_refreshing(self, handle) -> threading.Thread:
        """Refresh the leases every REFRESH_SECONDS (a greenlet under gevent)."""
        return periodic.start("pollbox-lease", REFRESH_SECONDS, lambda: self.refresh(handle),
                              spread=False)
