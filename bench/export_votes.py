"""Benchmark: export a big poll's votes as CSV (or XLSX) over HTTP through gunicorn.

    .venv/bin/python bench/export_votes.py --database sqlite --ballots 1000000
    .venv/bin/python bench/export_votes.py --database postgresql --ballots 1000000
    .venv/bin/python bench/export_votes.py --database sqlite --format xlsx --reuse

Seeds a poll with bench/seed_ballots.py (skipped with --reuse when the last seed of the
same size is still there), starts gunicorn with deploy/gunicorn.conf.py on loopback,
downloads `GET /api/v1/polls/<id>/export?data=votes&format=csv` with curl, checks the
file has one line per ballot (XLSX: one row, by the sheet's dimension), and reads the
workers' peak resident memory (VmHWM in /proc/<pid>/status). Targets: CSV under 10 s
and 150 MB peak RSS of the worker; XLSX under 60 s and 200 MB.

PostgreSQL: schema `pollbox_bench` of database `test` on 127.0.0.1:5432 (user
postgres); Redis: 127.0.0.1:6379 database 12. Everything stays on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
POSTGRES_SCHEMA = "pollbox_bench"
POSTGRES_URL = ("postgresql+psycopg://postgres@127.0.0.1:5432/test"
                f"?options=-csearch_path%3D{POSTGRES_SCHEMA}")
REDIS_URL = "redis://127.0.0.1:6379/12"
SECRET_KEY = "bench-secret-key"
TARGETS = {"csv": (10.0, 150.0), "xlsx": (60.0, 200.0)}  # seconds, peak worker RSS (MB)
STARTUP_TIMEOUT_SECONDS = 30
CURL_TIMEOUT_SECONDS = 300


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), required=True)
    parser.add_argument("--ballots", type=int, default=1_000_000)
    parser.add_argument("--format", choices=tuple(TARGETS), default="csv")
    parser.add_argument("--runs", type=int, default=3, help="downloads to time")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workdir", default="/tmp/pollbox-bench")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the last seeded poll of this size if there is one")
    return parser.parse_args()


def seed(args: argparse.Namespace, url: str, state_file: Path) -> dict:
    if args.reuse and state_file.exists():
        state = json.loads(state_file.read_text())
        if state["ballots"] == args.ballots:
            return state
    command = [sys.executable, str(ROOT / "bench" / "seed_ballots.py"), "--database-url", url,
               "--ballots", str(args.ballots)]
    if args.database == "postgresql":
        command += ["--schema", POSTGRES_SCHEMA]
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    print(f"seeding {args.ballots} ballots ({args.database}) ...", file=sys.stderr)
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    state = json.loads(output.strip().splitlines()[-1])
    state_file.write_text(json.dumps(state))
    print(f"seeded in {state['seconds']} s", file=sys.stderr)
    return state


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def wait_until_up(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("gunicorn exited during startup")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer /healthz in time")


def download(url: str, key: str, target: Path) -> dict:
    result = subprocess.run(
        ["curl", "-sS", "--max-time", str(CURL_TIMEOUT_SECONDS), "-o", str(target),
         "-H", f"Authorization: Bearer {key}",
         "-w", "%{http_code} %{size_download} %{time_starttransfer} %{time_total}", url],
        check=True, capture_output=True, text=True,
    )
    status, size, first_byte, total = result.stdout.split()
    return {"status": int(status), "bytes": int(size), "first_byte_s": float(first_byte),
            "seconds": float(total)}


def count_rows(path: Path, fmt: str) -> int:
    """Data rows in the downloaded file."""
    if fmt == "xlsx":
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True)
        return book.worksheets[0].max_row - 1  # the dimension XlsxWriter wrote
    return count_lines(path) - 1


def count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return lines


def main() -> None:
    args = parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    url = (f"sqlite:///{workdir / 'bench.db'}" if args.database == "sqlite" else POSTGRES_URL)
    state = seed(args, url, workdir / f"state-{args.database}.json")

    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS_URL, "SECRET_KEY": SECRET_KEY,
           "LOG_LEVEL": "warning"}
    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
         "--bind", f"127.0.0.1:{args.port}", "--access-logfile", str(workdir / "access.log"),
         "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(workdir / "gunicorn.log").open("w"),
    )
    runs = []
    try:
        wait_until_up(base, server)
        workers = worker_pids(server.pid)
        baseline = max(memory_mb(pid)["VmHWM"] for pid in workers)
        export_url = (f"{base}/api/v1/polls/{state['poll_id']}/export?data=votes"
                      f"&format={args.format}")
        target = workdir / f"votes.{args.format}"
        for _ in range(args.runs):
            load = os.getloadavg()[0]
            run = download(export_url, state["api_key"], target)
            run["rows"] = count_rows(target, args.format)
            run["load_before"] = round(load, 2)
            runs.append(run)
            print(json.dumps(run), file=sys.stderr)
            if run["status"] != 200 or run["rows"] != args.ballots:
                raise SystemExit(f"bad export: {run}")
        peak = max(memory_mb(pid)["VmHWM"] for pid in workers)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    seconds = [run["seconds"] for run in runs]
    summary = {
        "database": args.database,
        "format": args.format,
        "ballots": args.ballots,
        "file_mb": round(runs[0]["bytes"] / 1e6, 1),
        "seconds_best": min(seconds),
        "seconds_median": statistics.median(seconds),
        "worker_idle_rss_mb": round(baseline, 1),
        "worker_peak_rss_mb": round(peak, 1),
        "workers": len(workers),
        "machine": f"{os.cpu_count()} CPU {platform.processor() or platform.machine()}, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB",
        "target_met": (statistics.median(seconds) < TARGETS[args.format][0]
                       and peak < TARGETS[args.format][1]),
    }
    print(json.dumps(summary))
    if not summary["target_met"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
