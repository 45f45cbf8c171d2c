"""Jobs each worker process runs on a timer (the tally reconcile, the retention purge)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


def start(name: str, interval: int, job: Callable[[], object]) -> threading.Thread:
    """Run `job` every `interval` seconds in a daemon thread (a greenlet under gevent's
    patched threading), first at a random offset so that processes spread out."""

    def loop() -> None:
        time.sleep(random.uniform(0, interval))
        while True:
            job()
            time.sleep(interval)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
