"""Pollbox against the ceiling of its own stack, side by side in one run.

Starts gunicorn with deploy/gunicorn.conf.py on loopback twice — Pollbox and a
hello-world Flask app — seeds a poll, drives both with wrk, and prints req/s, p50/p99
latency and the ratio to the hello-world ceiling, for SQLite and PostgreSQL.

    .venv/bin/python bench/run.py [--db sqlite|postgresql|both] [--seconds 10]

Needs wrk (apt-get install wrk), Redis on 127.0.0.1:6379 (database 10 is flushed),
and for PostgreSQL the server on 127.0.0.1:5432 (a schema pollbox_bench_<pid> in
database `test`, dropped afterwards).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
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
    output = subprocess.run([*command, url], env={**os.environ, **(env or {})}, check=True,
                            capture_output=True, text=True).stdout
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


def bench_database(db: str, seconds: int, workdir: Path) -> list[Result]:
    with database(db, workdir, REDIS_URL) as env:
        owner = seed(env)
        results = []
        with gunicorn("bench.hello:app", env, workdir / f"hello-{db}.log") as (base, _):
            results.append(wrk("hello-world (ceiling)", f"{base}/hello", seconds))
        with gunicorn("wsgi:app", env, workdir / f"pollbox-{db}.log") as (base, master):
            poll = create_poll(base, owner["key"], duplicate_check="ip")
            option = str(poll["options"][0]["id"])
            tallies = f"{base}/api/v1/polls/{poll['id']}/tallies"
            results.append(wrk("vote POST", f"{base}/api/v1/polls/{poll['id']}/votes", seconds,
                               "vote.lua", {"POLL": poll["id"], "OPTION": option}))
            results.append(wrk("tallies GET", tallies, seconds))
            etag = urllib.request.urlopen(tallies).headers["ETag"]
            results.append(wrk("tallies GET, If-None-Match (304)", tallies, seconds,
                               "conditional.lua", {"ETAG": etag}))
            for name, path in (("widget GET", f"/polls/{poll['id']}/widget"),
                               ("embed.js GET", "/embed.js")):
                try:
                    urllib.request.urlopen(base + path)
                except OSError:
                    continue  # not served by this version
                results.append(wrk(name, base + path, seconds))
            rss = worker_rss_mb(master)
        print_table(db, results, rss)
        return results


def print_table(db: str, results: list[Result], rss: list[float]) -> None:
    ceiling = results[0].requests_per_second
    print(f"\n{db}: {CONNECTIONS} connections, {THREADS} wrk threads, "
          f"{os.cpu_count()} cores shared with wrk")
    print(f"| {'endpoint':<34} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | "
          f"{'ratio':>5} | {'errors':>6} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 7}|{'-' * 8}|")
    for r in results:
        print(f"| {r.name:<34} | {r.requests_per_second:>8.0f} | {r.p50_ms:>7.2f} | "
              f"{r.p99_ms:>7.2f} | {r.requests_per_second / ceiling:>5.2f} | {r.errors:>6} |")
    print(f"worker RSS after the load: {', '.join(f'{mb:.0f} MB' for mb in rss)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    databases = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    with tempfile.TemporaryDirectory(prefix="pollbox-bench-") as workdir:
        for db in databases:
            bench_database(db, args.seconds, Path(workdir))


if __name__ == "__main__":
    main()
