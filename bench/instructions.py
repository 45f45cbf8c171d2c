"""What one request costs the app, in instructions: repeatable where wall-clock time is not.

The app is called in-process through WSGI (no gunicorn, no network, one request at a
time, so a vote is a batch of one) under valgrind's callgrind, which counts only while
the measured requests run; the count is the same from run to run on the same code,
whatever else the machine is doing. Use it to tell whether a change made a request
cheaper; the wrk ratios of run.py say what the machine makes of it. hello-world and the
same job bare (bench/hello.py, bench/bare.py) are counted the same way.

    .venv/bin/python bench/instructions.py [--requests 300] [tallies widget embed.js vote]

Needs valgrind (apt-get install valgrind), Redis on 127.0.0.1:6379 (database 10 is
flushed) and writes an SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import ROOT, database, seed

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
ENDPOINTS = ("hello-world", "bare tallies", "tallies", "widget", "embed.js", "bare vote",
             "vote")
WARM_UP = 50


def call(app, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> str:
    """One request through the app's WSGI callable; its status line."""
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    status = []
    b"".join(app(environ, lambda line, _headers, _exc=None: status.append(line)))
    return status[0]


def measured(endpoint: str, requests: int) -> None:
    """Under callgrind: set up, warm up, then count `requests` requests."""
    with tempfile.TemporaryDirectory() as workdir, \
            database("sqlite", Path(workdir), REDIS_URL) as env:
        owner = seed(env)
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        from wsgi import app

        poll = json.loads(app.test_client().post(
            "/api/v1/polls", headers={"Authorization": f"Bearer {owner['key']}"},
            json={"question": "Which?", "options": ["a", "b", "c"],
                  "duplicate_check": "ip"}).data)
        poll_id, option = poll["id"], poll["options"][0]["id"]
        vote = b'{"choices": [%d]}' % option
        if endpoint == "hello-world":
            from bench.hello import app
        elif endpoint.startswith("bare "):
            from bench.bare import app
            endpoint = endpoint.removeprefix("bare ")
        requests_of = {
            "hello-world": lambda n: call(app, "GET", "/hello"),
            "tallies": lambda n: call(app, "GET", f"/api/v1/polls/{poll_id}/tallies"),
            "widget": lambda n: call(app, "GET", f"/polls/{poll_id}/widget"),
            "embed.js": lambda n: call(app, "GET", "/embed.js"),
            # A new voter each time (TRUSTED_PROXY_COUNT=1): every vote a 201.
            "vote": lambda n: call(app, "POST", f"/api/v1/polls/{poll_id}/votes", vote, {
                "Content-Type": "application/json",
                "X-Forwarded-For": f"198.18.{n // 256 % 256}.{n % 256}"}),
        }
        request = requests_of[endpoint]
        for n in range(WARM_UP):
            request(60_000 + n)
        status = request(0)
        if not status.startswith(("200", "201")):
            raise SystemExit(f"{endpoint}: {status}")
        toggle = ["callgrind_control", "--instr"]
        subprocess.run([*toggle, "on", str(os.getpid())], check=True, capture_output=True)
        for n in range(1, requests + 1):
            request(n)
        subprocess.run([*toggle, "off", str(os.getpid())], check=True, capture_output=True)


def count(endpoint: str, requests: int) -> int:
    """Instructions per request of one endpoint, from a callgrind run of this script."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}/callgrind.%p", sys.executable, __file__,
             "--measure", endpoint, "--requests", str(requests)],
            check=True, capture_output=True, cwd=ROOT)
        total = 0
        for found in Path(out).glob("callgrind.*"):
            for line in found.read_text(errors="replace").splitlines():
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
        return total // requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoints", nargs="*", default=list(ENDPOINTS))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measured(args.measure, args.requests)
        return
    print("| endpoint | instructions per request |\n| --- | --- |")
    for endpoint in args.endpoints:
        print(f"| {endpoint} | {count(endpoint, args.requests):,} |", flush=True)


if __name__ == "__main__":
    main()
