"""How long a visitor's browser takes to solve a poll's proof of work: Debian's Chromium
on the widget of a `challenge: pow` poll, its CPU throttled (Chrome DevTools'
`Emulation.setCPUThrottlingRate`, 4x: a mid-range phone), the widget's own solver
(`window.PollboxPow.solve`, ALTCHA's vendored worker) timed from the challenge request
to the payload.

Chromium's CPU throttling slows the page's own thread but not its dedicated workers,
where the hashing runs (measured here: 20x throttling made a solve only 2.3x slower).
So the phone's figure is an estimate: the work measured unthrottled in the workers
times the rate, plus the throttled rest (the challenge request, starting the workers).

    .venv/bin/python bench/challenge_solve.py [--solves 40] [--rates 1,4]
        [--max-number 50000]

Needs /usr/bin/chromium (apt-get install chromium) and Redis database 10 (flushed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from harness import create_poll, database, gunicorn, seed
from playwright.sync_api import sync_playwright
from run import REDIS_URL

from service.infra.config import DEFAULT_CHALLENGE_MAX_NUMBER

CHROMIUM = "/usr/bin/chromium"
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
        with gunicorn("wsgi:app", env, Path(workdir) / "pollbox.log") as (base, _), \
                sync_playwright() as playwright:
            poll = create_poll(base, owner["key"], challenge="pow")
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            for rate in (int(r) for r in args.rates.split(",")):
                page = browser.new_page()
                page.context.new_cdp_session(page).send(
                    "Emulation.setCPUThrottlingRate", {"rate": rate})
                page.goto(f"{base}/polls/{poll['id']}/widget")
                page.evaluate(SOLVE)  # warm: the worker's script, the connection
                totals, works = [], []
                for _ in range(args.solves):
                    timed = page.evaluate(SOLVE)
                    totals.append(timed["total"])
                    works.append(timed["work"])
                page.close()
                phone = [total + work * (rate - 1) for total, work in zip(totals, works,
                                                                          strict=True)]
                print(f"CPU throttled {rate}x, max number {args.max_number}, "
                      f"{args.solves} solves: measured median {statistics.median(totals):.0f}"
                      f" ms, p90 {percentile(totals, 0.9):.0f} ms (work in the workers: "
                      f"median {statistics.median(works):.0f} ms); with the workers "
                      f"{rate}x slower too: median {statistics.median(phone):.0f} ms, p90 "
                      f"{percentile(phone, 0.9):.0f} ms, max {max(phone):.0f} ms; target p90 "
                      f"< {TARGET_MS} ms")
            browser.close()


if __name__ == "__main__":
    main()
