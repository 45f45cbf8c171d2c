"""Vote throughput on a poll that asks each vote for a proof of work (`challenge: pow`)
against the same poll without one, in interleaved rounds on one gunicorn: what checking
and spending a solution costs the service.

    .venv/bin/python bench/challenge_throughput.py [--db sqlite|postgresql|both]
        [--seconds 8] [--rounds 3]

Each pow request carries its own solution, made beforehand with the service's signing
key and solved in Python. The challenges are made with CHALLENGE_MAX_NUMBER=1000 (the
smallest allowed) so that solving them here is quick: the server's check is one HMAC
and one SHA-256 whatever the number, so the ratio does not depend on it. Needs wrk,
Redis (database 10, flushed) and, for PostgreSQL, the server on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import altcha
from harness import SECRET_KEY, create_poll, database, gunicorn, seed
from run import REDIS_URL, THREADS, wrk

from service.voting.challenge import new_challenge

MAX_NUMBER = 1000
TARGET_RATIO = 0.8
# More solutions than a round can send: wrk would reuse them (refused) past this many.
SOLUTIONS_PER_SECOND = 2500


def solutions(poll_id: str, count: int, path: Path) -> Path:
    """`count` solved challenges of the poll, one `altcha` payload per line."""
    now = datetime.now(UTC)
    with path.open("w") as out:
        for _ in range(count):
            made = new_challenge(secret=SECRET_KEY, poll_id=poll_id, now=now,
                                 max_number=MAX_NUMBER)
            found = altcha.solve_challenge_v1(made["challenge"], made["salt"],
                                              made["algorithm"], made["maxnumber"])
            fields = {"algorithm": made["algorithm"], "challenge": made["challenge"],
                      "number": found.number, "salt": made["salt"],
                      "signature": made["signature"]}
            out.write(base64.b64encode(json.dumps(fields).encode()).decode() + "\n")
    return path


def bench(db: str, seconds: int, rounds: int, workdir: Path) -> None:
    with database(db, workdir, REDIS_URL, CHALLENGE_MAX_NUMBER=str(MAX_NUMBER)) as env:
        owner = seed(env)
        results: dict[str, list] = {"none": [], "pow": []}
        with gunicorn("wsgi:app", env, workdir / f"pollbox-{db}.log") as (base, _):
            for round_ in range(rounds):
                for challenge in ("none", "pow"):
                    poll = create_poll(base, owner["key"], duplicate_check="ip",
                                       challenge=challenge)
                    extra = {"POLL": poll["id"], "OPTION": str(poll["options"][0]["id"])}
                    if challenge == "pow":
                        extra |= {"THREADS": str(THREADS), "SOLUTIONS": str(solutions(
                            poll["id"], SOLUTIONS_PER_SECOND * seconds,
                            workdir / f"solutions-{round_}.txt"))}
                    script = "vote_pow.lua" if challenge == "pow" else "new_client.lua"
                    result = wrk(f"vote POST, challenge {challenge}",
                                 f"{base}/api/v1/polls/{poll['id']}/votes", seconds, script,
                                 extra)
                    results[challenge].append(result)
                    print(f"{db} round {round_ + 1} {challenge:>4}: "
                          f"{result.requests_per_second:7.0f} req/s, p50 {result.p50_ms:.1f} "
                          f"ms, p99 {result.p99_ms:.1f} ms, errors {result.errors}")
        ratios = [p.requests_per_second / n.requests_per_second
                  for n, p in zip(results["none"], results["pow"], strict=True)]
        median = statistics.median(ratios)
        print(f"{db}: pow / none per round {', '.join(f'{r:.2f}' for r in ratios)}; "
              f"median {median:.2f} (target >= {TARGET_RATIO})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pollbox-bench-") as workdir:
        for db in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
            bench(db, args.seconds, args.rounds, Path(workdir))


if __name__ == "__main__":
    main()
