"""The timer that runs each worker's periodic jobs."""

from __future__ import annotations

import threading

from service.infra import periodic

INTERVAL_SECONDS = 1


def test_a_periodic_job_runs_again_and_again_in_a_daemon_thread():
    runs: list[int] = []
    twice = threading.Event()

    def job() -> None:
        runs.append(1)
        if len(runs) == 2:
            twice.set()

    thread = periodic.start("pollbox-test", INTERVAL_SECONDS, job)

    assert thread.daemon and thread.name == "pollbox-test"
    assert twice.wait(timeout=3 * INTERVAL_SECONDS + 1)
