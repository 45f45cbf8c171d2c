"""What the benchmarks share: a database and Redis to run on, gunicorn with
deploy/gunicorn.conf.py on a free loopback port, an owner and a poll, the workers' memory.

Imported by the scripts beside it (`python bench/run.py` puts bench/ on sys.path).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET_KEY = "bench-secret"
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: list[str], env: dict) -> str:
    return subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


@contextlib.contextmanager
def database(db: str, workdir: Path, redis_url: str, **settings: str) -> Iterator[dict]:
    """The environment of a Pollbox on an empty SQLite file or PostgreSQL schema and a
    flushed Redis database; a PostgreSQL schema is dropped afterwards."""
    env = {**os.environ, "REDIS_URL": redis_url, "SECRET_KEY": SECRET_KEY,
           "TRUSTED_PROXY_COUNT": "1", "RATELIMIT_VOTES": "100000000 per minute",
           "FLASK_APP": "wsgi", **settings}
    schema = None
    if db == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{workdir / f'bench-{os.getpid()}.db'}"
    else:
        schema = f"pollbox_bench_{os.getpid()}"
        subprocess.run(["psql", POSTGRES_URL, "-qc",
                        f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"],
                       check=True, capture_output=True)
        env["DATABASE_URL"] = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    subprocess.run(["redis-cli", "-u", redis_url, "flushdb"], check=True, capture_output=True)
    try:
        yield env
    finally:
        if schema:
            subprocess.run(["psql", POSTGRES_URL, "-qc", f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
                           capture_output=True)


@contextlib.contextmanager
def gunicorn(app: str, env: dict, log: Path):
    """gunicorn with the production config on a free loopback port: (base URL, master)."""
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "--bind",
             f"127.0.0.1:{port}", app],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                urllib.request.urlopen(f"{base}/hello" if app.endswith("hello:app")
                                       else f"{base}/healthz")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"{app} did not start; see {log}") from None
                time.sleep(0.1)
        yield base, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def worker_pids(master: subprocess.Popen) -> list[int]:
    """The gunicorn workers: the master's children."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory now (`VmRSS`) and at its peak (`VmHWM`) of one process, in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found


def worker_rss_mb(master: subprocess.Popen) -> list[float]:
    """Resident memory of each gunicorn worker."""
    return [memory_mb(pid)["VmRSS"] for pid in worker_pids(master)]


def seed(env: dict) -> dict:
    """Migrate, create an owner and return its API key."""
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
