"""Run calls of a Coalescer (service/infra/batching.py) as one batch, on purpose: each
from a thread of its own while a batch is running (the lead held, as a call running one
holds it), then let them go together, as the queue behind a batch goes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from service.infra.batching import Coalescer

WAIT_SECONDS = 10


def run_as_one_batch(coalescer: Coalescer, calls: list[Callable[[], object]]) -> list:
    """Each call's result, or the exception it raised, in order."""
    outcomes: list = [None] * len(calls)

    def run(index: int) -> None:
        try:
            outcomes[index] = calls[index]()
        except Exception as error:  # the outcome under test
            outcomes[index] = error

    with coalescer._lock:
        assert not coalescer._leading, "another batch is running"
        coalescer._leading = True
    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while len(coalescer._queue) < len(calls):
        assert time.monotonic() < deadline, "the calls did not queue"
        time.sleep(0.01)
    with coalescer._lock:  # the batch running meanwhile is done: the lead is handed on
        coalescer._queue[0].lead = True
        coalescer._queue[0].done.set()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert coalescer.idle
    return outcomes
