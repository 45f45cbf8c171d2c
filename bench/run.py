"""Pollbox against the ceiling of its own stack and the same job bare, in one run.

Starts gunicorn with deploy/gunicorn.conf.py on loopback four times — Pollbox, a
hello-world Flask app (bench/hello.py), the same job bare (bench/bare.py) and its vote
with group commit (bench/bare_batched.py) — and drives them with wrk in interleaved
rounds, and prints for each row the medians of req/s and p50/p99 latency, and the median
ratios to hello-world and to the bare job, for SQLite and PostgreSQL; and the vote's
ratio to the bare job with group commit, which tells how much of the bare job's time on
this machine was its commits.

    .venv/bin/python bench/run.py [--db sqlite|postgresql|both] [--seconds 10] [--rounds 3]

Needs wrk (apt-get install wrk), Redis on 127.0.0.1:6379 (database 10 is flushed),
and for PostgreSQL the server on 127.0.0.1:5432 (a schema pollbox_bench_<pid> in
database `test`, dropped afterwards).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness import ROOT, create_poll, database, gunicorn, seed, worker_rss_mb

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
CONNECTIONS = 64
THREADS = 2


@dataclass
class Result:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(name: str, url: str, seconds: int, script: str | None = None,
        env: dict | None = None) -> Result:
    command = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", str(ROOT / "bench" / "wrk" / script)]
    run = subprocess.run([*command, url], env={**os.environ, **(env or {})},
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{name}: wrk failed ({run.returncode}): {run.stdout}{run.stderr}")
    output = run.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.M))
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: .*?(\d+) timeout"):
        found = re.search(pattern, output)
        errors += int(found[1]) if found else 0
    found = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", output)
    if found:
        errors += sum(int(n) for n in found.groups())
    return Result(name, rps, to_ms(percentiles["50"]), to_ms(percentiles["99"]), errors)


def to_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def poll_rows(base: str, bare: str, batched: str, owner_key: str,
              seconds: int) -> list[Result]:
    """One round: each Pollbox row beside its bare reference, on fresh polls (wrk's
    client addresses start again each run)."""
    polls = [create_poll(base, owner_key, duplicate_check="ip") for _ in range(3)]
    rows = []
    for name, server, poll in (("bare vote POST", bare, polls[0]),
                               (BATCHED, batched, polls[2]),
                               ("vote POST", base, polls[1])):
        rows.append(wrk(name, f"{server}/api/v1/polls/{poll['id']}/votes", seconds,
                        "new_client.lua", {"OPTION": str(poll["options"][0]["id"])}))
    rows.append(wrk("bare tallies GET", f"{bare}/api/v1/polls/{polls[0]['id']}/tallies",
                    seconds))
    tallies = f"{base}/api/v1/polls/{polls[1]['id']}/tallies"
    rows.append(wrk("tallies GET", tallies, seconds))
    etag = urllib.request.urlopen(tallies).headers["ETag"]
    rows.append(wrk("tallies GET, If-None-Match (304)", tallies, seconds, "conditional.lua",
                    {"ETAG": etag}))
    widget = f"{base}/polls/{polls[1]['id']}/widget"
    rows.append(wrk("widget GET", widget, seconds))
    rows.append(wrk(NEW_VISITOR, widget, seconds, "new_client.lua"))
    rows.append(wrk("embed.js GET", f"{base}/embed.js", seconds))
    return rows


BATCHED = "bare vote POST, group commit"
# The widget as page views bring it: a visitor not seen before each time, whose voted
# state the database tells (the row above is one visitor reading again and again).
NEW_VISITOR = "widget GET, a new visitor each read"
# Each row's reference in the same run: the bare job's vote for a vote, its tallies read
# for the reads.
BARE_OF = {"vote POST": "bare vote POST", BATCHED: "bare vote POST",
           "tallies GET": "bare tallies GET",
           "tallies GET, If-None-Match (304)": "bare tallies GET",
           "widget GET": "bare tallies GET", NEW_VISITOR: "bare tallies GET"}


def bench_database(db: str, seconds: int, rounds: int, workdir: Path) -> None:
    with database(db, workdir, REDIS_URL) as env:
        owner = seed(env)
        with gunicorn("bench.hello:app", env, workdir / f"hello-{db}.log") as (hello, _), \
                gunicorn("bench.bare:app", env, workdir / f"bare-{db}.log") as (bare, _), \
                gunicorn("bench.bare_batched:app", env,
                         workdir / f"bare-batched-{db}.log") as (batched, _), \
                gunicorn("wsgi:app", env, workdir / f"pollbox-{db}.log") as (base, master):
            per_round = []
            for number in range(rounds):
                row = [wrk("hello-world (ceiling)", f"{hello}/hello", seconds)]
                row += poll_rows(base, bare, batched, owner["key"], seconds)
                per_round.append({result.name: result for result in row})
                print(f"{db}: round {number + 1} of {rounds} done", flush=True)
            rss = worker_rss_mb(master)
        print_table(db, per_round, rss)


def print_table(db: str, per_round: list[dict[str, Result]], rss: list[float]) -> None:
    """Medians over the rounds; each ratio is the median of the rounds' own ratios."""
    def median(name: str, value) -> float:
        return statistics.median(value(r[name]) for r in per_round)

    def ratio(name: str, reference: str) -> float:
        return statistics.median(r[name].requests_per_second / r[reference].requests_per_second
                                 for r in per_round)

    print(f"\n{db}: {CONNECTIONS} connections, {THREADS} wrk threads, {os.cpu_count()} cores "
          f"shared with wrk; medians of {len(per_round)} interleaved rounds")
    print("| endpoint | req/s | p50 ms | p99 ms | / hello-world | / the same job bare "
          "| errors |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in per_round[0]:
        bare = BARE_OF.get(name)
        print(f"| {name} | {median(name, lambda r: r.requests_per_second):.0f} "
              f"| {median(name, lambda r: r.p50_ms):.2f} | {median(name, lambda r: r.p99_ms):.2f} "
              f"| {ratio(name, 'hello-world (ceiling)'):.2f} "
              f"| {f'{ratio(name, bare):.2f}' if bare else ''} "
              f"| {sum(r[name].errors for r in per_round)} |")
    print(f"vote POST / {BATCHED}: {ratio('vote POST', BATCHED):.2f}; p99 "
          f"{median('vote POST', lambda r: r.p99_ms):.0f} ms against "
          f"{median(BATCHED, lambda r: r.p99_ms):.0f} ms")
    print(f"worker RSS after the load: {', '.join(f'{mb:.0f} MB' for mb in rss)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    databases = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    with tempfile.TemporaryDirectory(prefix="pollbox-bench-") as workdir:
        for db in databases:
            bench_database(db, args.seconds, args.rounds, Path(workdir))


if __name__ == "__main__":
    main()
