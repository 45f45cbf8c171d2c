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
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET_KEY = "bench-secret"
CONNECTIONS = 64
THREADS = 2
START_TIMEOUT_SECONDS = 30


@dataclass
class Result:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: list[str], env: dict) -> str:
    return subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


@contextlib.contextmanager
def gunicorn(app: str, env: dict, log: Path):
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "--bind",
             f"127.0.0.1:{port}", "--access-logfile", "/dev/null", app],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz" if "wsgi" in app else f"{base}/hello")
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"{app} did not start; see {log}") from None
            time.sleep(0.1)
    try:
        yield base, process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def worker_rss_mb(master: subprocess.Popen) -> list[float]:
    """Resident memory of each gunicorn worker (children of the master)."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


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


def seed(env: dict) -> dict:
    """Migrate, create an owner and polls; return ids for the load scripts."""
    run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], env)
    key = run([str(BIN / "flask"), "--app", "wsgi", "owners", "create",
               f"bench-{os.getpid()}-{time.monotonic_ns()}"], env).strip().splitlines()[-1]
    return {"key": key}


def create_poll(base: str, key: str, **fields) -> dict:
    body = {"question": "Are you currently taking or have you ever been prescribed "
                        "anti-depressants?",
            "options": ["Yes, currently", "Yes, in the past", "No, never"], **fields}
    request = urllib.request.Request(
        f"{base}/api/v1/polls", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request))


def bench_database(db: str, seconds: int, workdir: Path) -> list[Result]:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "SECRET_KEY": SECRET_KEY,
           "TRUSTED_PROXY_COUNT": "1", "RATELIMIT_VOTES": "100000000 per minute",
           "FLASK_APP": "wsgi"}
    schema = None
    if db == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
    else:
        schema = f"pollbox_bench_{os.getpid()}"
        subprocess.run(["psql", POSTGRES_URL, "-qc",
                        f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"],
                       check=True, capture_output=True)
        env["DATABASE_URL"] = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], check=True, capture_output=True)
    try:
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
    finally:
        if schema:
            subprocess.run(["psql", POSTGRES_URL, "-qc", f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
                           capture_output=True)


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
