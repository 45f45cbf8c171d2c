"""How long a visitor's browser takes to solve a poll's proof of work: Debian's Chromium
on the widget of a `challenge: pow` poll, its CPU slowed down as a mid-range phone's
(4x), the widget's own solver (`window.PollboxPow.solve`, ALTCHA's vendored worker)
timed from the challenge request to the payload.

    .venv/bin/python bench/challenge_solve.py [--solves 40] [--rates 1,4]
        [--max-number 50000]

How the CPU is slowed: Chromium's own throttling (DevTools'
`Emulation.setCPUThrottlingRate`) slows the page's thread but not its dedicated workers,
where the hashing runs (seen here: 20x made a solve 2.3x slower). So where the cgroup v1
CPU controller is writable (/sys/fs/cgroup/cpu, as root), the whole browser runs in a
cgroup whose quota is 1/rate of the machine's cores: every thread of it is that much
slower, workers included. Elsewhere it falls back to DevTools' throttling and an
estimate: the workers' measured work times the rate, plus the throttled rest.

Needs /usr/bin/chromium (apt-get install chromium) and Redis database 10 (flushed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness import create_poll, database, gunicorn, seed
from playwright.sync_api import sync_playwright
from run import REDIS_URL

from service.infra.config import DEFAULT_CHALLENGE_MAX_NUMBER

CHROMIUM = "/usr/bin/chromium"
CGROUP_ROOT = Path("/sys/fs/cgroup/cpu")
CFS_PERIOD_US = 100_000
TARGET_MS = 1000
SOLVE = """async () => {
  const config = JSON.parse(document.getElementById("pb-config").textContent);
  const started = performance.now();
  const payload = await window.PollboxPow.solve(config.challengeUrl, config.powWorkerUrl);
  return {total: performance.now() - started, work: JSON.parse(atob(payload)).took};
}"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@contextlib.contextmanager
def slowed(rate: int) -> Iterator[str]:
    """Run what starts inside (the browser) on 1/rate of the machine's CPU: how."""
    if rate == 1:
        yield "not slowed"
        return
    if not CGROUP_ROOT.is_dir() or not os.access(CGROUP_ROOT, os.W_OK):
        yield "devtools"
        return
    group = CGROUP_ROOT / f"pollbox-bench-{os.getpid()}"
    group.mkdir(exist_ok=True)
    (group / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
    (group / "cpu.cfs_quota_us").write_text(str(CFS_PERIOD_US * os.cpu_count() // rate))
    (group / "cgroup.procs").write_text(str(os.getpid()))  # children are born inside
    try:
        yield "cgroup"
    finally:
        (CGROUP_ROOT / "cgroup.procs").write_text(str(os.getpid()))
        group.rmdir()


def solve_times(base: str, poll_id: str, rate: int, solves: int) -> tuple[str, list, list]:
    """(how it was slowed, total times, work times), in ms."""
    with slowed(rate) as how, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        if how == "devtools":
            page.context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate",
                                                    {"rate": rate})
        page.goto(f"{base}/polls/{poll_id}/widget")
        page.evaluate(SOLVE)  # warm: the worker's script, the connection
        timed = [page.evaluate(SOLVE) for _ in range(solves)]
        browser.close()
    totals, works = [t["total"] for t in timed], [t["work"] for t in timed]
    if how == "devtools":  # the workers ran at full speed: the estimate
        totals = [total + work * (rate - 1) for total, work in zip(totals, works, strict=True)]
    return how, totals, works


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solves", type=int, default=40)
    parser.add_argument("--rates", default="1,4")
    parser.add_argument("--max-number", type=int, default=DEFAULT_CHALLENGE_MAX_NUMBER)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pollbox-bench-") as workdir, \
            database("sqlite", Path(workdir), REDIS_URL,
                     CHALLENGE_MAX_NUMBER=str(args.max_number)) as env:
        owner = seed(env)
        with gunicorn("wsgi:app", env, Path(workdir) / "pollbox.log") as (base, _):
            poll = create_poll(base, owner["key"], challenge="pow")
            for rate in (int(r) for r in args.rates.split(",")):
                how, totals, works = solve_times(base, poll["id"], rate, args.solves)
                print(f"CPU {rate}x slower ({how}), max number {args.max_number}, "
                      f"{args.solves} solves: median {statistics.median(totals):.0f} ms, "
                      f"p90 {percentile(totals, 0.9):.0f} ms, max {max(totals):.0f} ms "
                      f"(the workers' part: median {statistics.median(works):.0f} ms); "
                      f"target p90 < {TARGET_MS} ms")


if __name__ == "__main__":
    main()
