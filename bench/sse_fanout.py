"""Live tallies fan-out: one vote reaching many open Server-Sent Event streams.

    .venv/bin/python bench/sse_fanout.py [--db sqlite|postgresql|both] [--streams 1000]
        [--votes 20] [--interval 0.5] [--clients 2]

Starts gunicorn with deploy/gunicorn.conf.py on a free loopback port, creates a poll,
opens `--streams` streams of `GET /api/v1/polls/<id>/tallies/stream` with asyncio httpx
clients (split over `--clients` processes: one asyncio process parsing a thousand streams
is itself a bottleneck on two cores), waits until every stream had its first event, then
casts `--votes` votes `--interval` seconds apart. For every stream and vote it measures
the time from just before the vote's POST to the stream receiving the event that carries
the new total. It also times ordinary tallies GETs while the streams are open (idle, and
right after each vote, during the fan-out), and reads the workers' resident memory
(VmRSS and peak VmHWM in /proc/<pid>/status) with the streams still open.

Target (issue 6): every update delivered, p99 under 1 s. Exits 1 when missed.

Redis: 127.0.0.1:6379 database 11 (flushed; `--redis-url` to change); PostgreSQL: a
schema pollbox_bench_<pid> of database `test`, dropped afterwards. Everything stays on
this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import create_poll, database, gunicorn, memory_mb, seed, worker_pids

REDIS_URL = "redis://127.0.0.1:6379/11"
UPDATE_DEADLINE_SECONDS = 1.0
OPEN_TIMEOUT_SECONDS = 120
DELIVERY_TIMEOUT_SECONDS = 10
IDLE_TALLIES_REQUESTS = 20
LAG_PROBE_SECONDS = 0.005
TCP_ESTABLISHED = "01"


# -- the client processes: each follows its share of the streams ----------------------


def raise_open_files_limit() -> int:
    """Let this process (and what it starts) open as many sockets as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Stream:
    """One open stream's `event: tallies` arrivals: (monotonic time, total_votes)."""

    events: list[tuple[float, int]] = field(default_factory=list)
    error: str | None = None


async def follow(client: httpx.AsyncClient, path: str, stream: Stream) -> None:
    try:
        async with client.stream("GET", path, headers={"Accept": "text/event-stream"}) as answer:
            if answer.status_code != 200:
                stream.error = f"HTTP {answer.status_code}"
                return
            name = None
            async for line in answer.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name == "tallies":
                    stream.events.append((time.monotonic(), json.loads(line[6:])["total_votes"]))
    except httpx.HTTPError as error:
        stream.error = type(error).__name__


async def probe_lag(samples: list[float]) -> None:
    """How late this process's event loop wakes up: the client's own delay."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(LAG_PROBE_SECONDS)
        samples.append(time.monotonic() - started - LAG_PROBE_SECONDS)


async def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def run_client(connection, base: str, path: str, count: int) -> None:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(OPEN_TIMEOUT_SECONDS, read=None)
    streams = [Stream() for _ in range(count)]
    lag: list[float] = []
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        started = time.monotonic()
        tasks = [asyncio.create_task(follow(client, path, stream)) for stream in streams]
        await wait_until(lambda: all(s.events or s.error for s in streams), OPEN_TIMEOUT_SECONDS)
        connection.send({"opened": sum(1 for s in streams if s.events),
                         "seconds": time.monotonic() - started,
                         "errors": [s.error for s in streams if s.error]})
        prober = asyncio.create_task(probe_lag(lag))
        cpu = time.process_time()
        expected = (await asyncio.to_thread(connection.recv))["expect"]
        await wait_until(lambda: all(s.events[-1][1] >= expected for s in streams if s.events),
                         DELIVERY_TIMEOUT_SECONDS)
        prober.cancel()
        connection.send({"events": [s.events[1:] for s in streams],
                         "cpu": time.process_time() - cpu,
                         "lag": lag, "errors": [s.error for s in streams if s.error]})
        await asyncio.to_thread(connection.recv)  # the memory is read with the streams open
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def client_process(connection, base: str, path: str, count: int) -> None:
    raise_open_files_limit()
    asyncio.run(run_client(connection, base, path, count))


# -- the measurement --------------------------------------------------------------------


@dataclass
class Figures:
    streams: int = 0
    opened_seconds: float = 0.0
    per_worker: list[int] = field(default_factory=list)
    votes: int = 0
    vote_ms: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    missing: int = 0
    spreads: list[tuple[float, float]] = field(default_factory=list)
    client_lag_ms: float = 0.0
    client_cpu_ms: float = 0.0
    worker_cpu_ms: float = 0.0
    idle_tallies_ms: list[float] = field(default_factory=list)
    busy_tallies_ms: list[float] = field(default_factory=list)
    memory_before: list[dict[str, float]] = field(default_factory=list)
    memory: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def established_per_worker(master, port: int) -> list[int]:
    """Open connections to the server's port held by each worker."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == TCP_ESTABLISHED:
                inodes.add(fields[9])
    counts = []
    for pid in worker_pids(master):
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        counts.append(held)
    return counts


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(client: httpx.Client, method: str, url: str, **kwargs) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = client.request(method, url, **kwargs)
    return answer, (time.monotonic() - started) * 1000


def send_votes(base: str, poll: dict, args: argparse.Namespace, figures: Figures,
               workers: list[int]) -> tuple[list[float], float]:
    """Read the tallies while idle, then vote at the set pace, reading the tallies after
    each vote; the times the votes were sent, and the workers' CPU seconds before."""
    tallies = f"/api/v1/polls/{poll['id']}/tallies"
    votes = f"/api/v1/polls/{poll['id']}/votes"
    sent = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(IDLE_TALLIES_REQUESTS):
            answer, ms = timed(client, "GET", tallies)
            answer.raise_for_status()
            figures.idle_tallies_ms.append(ms)
        cpu = sum(cpu_seconds(pid) for pid in workers)
        for _ in range(args.votes):
            time.sleep(args.interval)
            sent.append(time.monotonic())
            answer, ms = timed(client, "POST", votes,
                               json={"choices": [poll["options"][0]["id"]]})
            if answer.status_code != 201:
                raise SystemExit(f"vote answered {answer.status_code}: {answer.text}")
            figures.vote_ms.append(ms)
            answer, ms = timed(client, "GET", tallies)
            answer.raise_for_status()
            figures.busy_tallies_ms.append(ms)
    return sent, cpu


def measure(base: str, master, poll: dict, args: argparse.Namespace) -> Figures:
    path = f"/api/v1/polls/{poll['id']}/tallies/stream"
    context = multiprocessing.get_context("spawn")
    shares = [len(range(i, args.streams, args.clients)) for i in range(args.clients)]
    pipes, processes = [], []
    for share in shares:
        mine, theirs = context.Pipe()
        process = context.Process(target=client_process, args=(theirs, base, path, share),
                                  daemon=True)
        process.start()
        pipes.append(mine)
        processes.append(process)
    figures = Figures(votes=args.votes)
    figures.memory_before = [memory_mb(pid) for pid in worker_pids(master)]
    try:
        for ready in (pipe.recv() for pipe in pipes):
            figures.streams += ready["opened"]
            figures.opened_seconds = max(figures.opened_seconds, ready["seconds"])
            figures.errors += ready["errors"]
        figures.per_worker = established_per_worker(master, int(base.rsplit(":", 1)[1]))
        workers = worker_pids(master)
        sent, cpu = send_votes(base, poll, args, figures, workers)
        for pipe in pipes:
            pipe.send({"expect": args.votes})
        reports = [pipe.recv() for pipe in pipes]
        figures.worker_cpu_ms = (sum(cpu_seconds(pid) for pid in workers) - cpu) * 1000
        figures.memory = [memory_mb(pid) for pid in workers]
        for pipe in pipes:
            pipe.send("close")
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    streams = [events for report in reports for events in report["events"]]
    figures.errors += [error for report in reports for error in report["errors"]]
    figures.client_lag_ms = max((max(r["lag"], default=0) for r in reports), default=0) * 1000
    figures.client_cpu_ms = sum(report["cpu"] for report in reports) * 1000
    for number, started in enumerate(sent, start=1):
        arrivals = []
        for events in streams:
            # The first event carrying this vote (a later total too, when coalesced).
            arrived = next((at for at, total in events if total >= number), None)
            if arrived is None:
                figures.missing += 1
            else:
                arrivals.append(arrived - started)
        figures.latencies += arrivals
        if arrivals:
            figures.spreads.append((min(arrivals), max(arrivals)))
    figures.missing += (args.streams - len(streams)) * args.votes
    return figures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def print_table(db: str, args: argparse.Namespace, figures: Figures) -> bool:
    """Print the figures; whether the target is met."""
    lat = [seconds * 1000 for seconds in figures.latencies]
    expected = args.streams * args.votes
    delivered = expected - figures.missing
    within = sum(1 for ms in lat if ms < UPDATE_DEADLINE_SECONDS * 1000)
    first = statistics.median(low for low, _ in figures.spreads) * 1000 if lat else float("nan")
    last = statistics.median(high for _, high in figures.spreads) * 1000 if lat else float("nan")
    rows = [
        ("streams open", f"{figures.streams} of {args.streams} in {figures.opened_seconds:.1f} s"
                         f" (per worker: {', '.join(map(str, figures.per_worker))})"),
        ("votes", f"{figures.votes}, {args.interval} s apart (POST p50 "
                  f"{percentile(figures.vote_ms, 0.5):.0f} ms, max {max(figures.vote_ms):.0f} ms)"),
        ("updates delivered", f"{delivered} of {expected}"),
        ("latency p50 / p95 / p99 / max",
         " / ".join(f"{percentile(lat, q):.0f}" for q in (0.5, 0.95, 0.99)) + f" / {max(lat):.0f}"
         " ms" if lat else "-"),
        ("within 1 s", f"{within / expected * 100:.1f} %"),
        ("first / last stream per vote (median)", f"{first:.0f} / {last:.0f} ms"),
        ("client event-loop lag (max)", f"{figures.client_lag_ms:.0f} ms over {args.clients} "
                                        "client process(es)"),
        ("CPU per vote: workers / clients",
         f"{figures.worker_cpu_ms / args.votes:.0f} / {figures.client_cpu_ms / args.votes:.0f} ms"
         " (all processes together, while the votes fan out)"),
        ("tallies GET, streams idle p50 / max",
         f"{percentile(figures.idle_tallies_ms, 0.5):.1f} / {max(figures.idle_tallies_ms):.1f} ms"),
        ("tallies GET, right after a vote p50 / max",
         f"{percentile(figures.busy_tallies_ms, 0.5):.1f} / {max(figures.busy_tallies_ms):.1f} ms"),
        ("worker RSS before the streams", ", ".join(f"{m['VmRSS']:.0f} MB"
                                                    for m in figures.memory_before)),
        ("worker RSS / peak (VmHWM) after the load",
         ", ".join(f"{m['VmRSS']:.0f} / {m['VmHWM']:.0f} MB" for m in figures.memory)),
    ]
    if figures.errors:
        rows.append(("stream errors", ", ".join(sorted(set(figures.errors)))))
    print(f"\n{db}: {args.streams} streams, {args.votes} votes; gunicorn gevent, "
          f"{len(figures.memory)} workers; {os.cpu_count()} cores shared with the client")
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    met = figures.missing == 0 and bool(lat) and percentile(lat, 0.99) < 1000
    print("target (all delivered, p99 < 1 s):", "met" if met else "MISSED")
    return met


def bench_database(db: str, args: argparse.Namespace, workdir: Path) -> bool:
    log = workdir / f"pollbox-{db}.log"
    with database(db, workdir, args.redis_url) as env:
        owner = seed(env)
        with gunicorn("wsgi:app", env, log) as (base, master):
            poll = create_poll(base, owner["key"], duplicate_check="none")
            figures = measure(base, master, poll, args)
    met = print_table(db, args, figures)
    if not met or figures.errors:
        kept = Path(tempfile.gettempdir()) / f"pollbox-sse-fanout-{db}-{os.getpid()}.log"
        shutil.copyfile(log, kept)
        print(f"gunicorn's log: {kept}")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--votes", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between votes")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", REDIS_URL))
    args = parser.parse_args()
    limit = raise_open_files_limit()  # gunicorn inherits it: a worker may hold most streams
    if limit < args.streams + 100:
        raise SystemExit(f"open files limit {limit} is too low for {args.streams} streams")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    databases = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    met = True
    with tempfile.TemporaryDirectory(prefix="pollbox-bench-") as workdir:
        for db in databases:
            met &= bench_database(db, args, Path(workdir))
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
