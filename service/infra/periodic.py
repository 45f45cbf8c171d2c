"""Jobs each worker process runs on a timer (the tally reconcile, the retention purge,
the process's lease)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


def start(name: str, interval: float, job: Callable[[], object], *,
          spread: bool = True) -> threading.Thread:
    """Run `job` every `interval` seconds in a daemon thread (a greenlet under gevent's
    patched threading), first at a random offset so that processes spread out (or at
    once, without `spread`)."""

    def loop() -> None:
        if spread:
            time.sleep(random.uniform(0, interval))
        while True:
            job()
            time.sleep(interval)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
