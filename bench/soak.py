"""Soak: minutes of mixed traffic at about half of capacity, with live streams held open.

    .venv/bin/python bench/soak.py [--db sqlite|postgresql] [--minutes 10] [--rate N]
        [--streams 200] [--calibrate-seconds 15]

Starts gunicorn with deploy/gunicorn.conf.py (gevent, 2 workers) on a free loopback port,
creates a poll (`duplicate_check: ip`), and opens `--streams` Server-Sent Event streams
of `GET /api/v1/polls/<id>/tallies/stream` (held by a child process for the whole run).
Without `--rate` it then measures capacity: wrk (64 connections, 2 threads,
`--calibrate-seconds`) sends the soak's mix to that poll as fast as it can, the streams
following, and the soak runs at half of wrk's req/s. The mix, over and over: a vote
(`POST /api/v1/polls/<id>/votes` from a new client address each, through
`X-Forwarded-For` with `TRUSTED_PROXY_COUNT=1`; every twentieth vote repeats an address
that already voted and must get `409 duplicate_vote`), a tallies read
(`GET /api/v1/polls/<id>/tallies`), a widget load (`GET /polls/<id>/widget`, from a
voter and a new visitor in turn), a tallies read.

The load is open-loop, at a constant rate: a request leaves at its scheduled time
whatever the server's pace, and its latency counts from that time, so a stall shows in
the p99 instead of slowing the load down (as wrk2 does; wrk, closed-loop, would hide it).
The generator speaks HTTP/1.1 over asyncio itself, up to 1,000 connections: httpx spent
2.1 ms of CPU per request here, a whole core at the rates two cores serve; this client
spends about 0.25 ms. It reports the rate it sustained, how late requests left, and its
own CPU; when it fell behind the figures are not the server's and it exits 3.

It prints per minute the rate, the p99 latency of each kind of request (from its
scheduled time), errors, and each worker's CPU and RSS (/proc); then the workers' RSS
growth after the first (warm-up) minute, every error, the streams' fate, the poll's
tallies against the database's own rows (SQLite file or PostgreSQL schema) and the 201
answers the generator saw, and the service's counters from /metrics.

Targets, exit 1 when one is missed: worker RSS growth after warm-up at most 10 %; no
error (any answer but 201 to a new voter, 409 duplicate_vote to a repeat, 200 to a read;
connection errors and timeouts; a stream dropped, silent for 30 s or behind the final
total; a worker restarted); tallies total = ballot rows = 201 answers (+ wrk's ballots),
per option too. gunicorn's log is kept in /tmp when a target is missed.

Redis: BENCH_SOAK_REDIS_URL (default 127.0.0.1:6379 database 11, flushed); PostgreSQL:
a schema pollbox_bench_<pid> of database `test`. gunicorn is stopped and the schema
dropped also on failure, Ctrl-C or SIGTERM. Everything stays on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import random
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from harness import create_poll, database, gunicorn, memory_mb, seed, worker_pids

REDIS_URL = os.environ.get("BENCH_SOAK_REDIS_URL", "redis://127.0.0.1:6379/11")
# The soak's mix, sent in this order over and over.
MIX = ("vote", "tallies", "widget", "tallies")
KINDS = ("vote", "tallies", "widget")
REPEAT_EVERY = 20  # every 20th vote repeats an address that already voted: 409 expected
LOAD_SHARE = 0.5  # of the capacity wrk measured
CALIBRATE_CONNECTIONS = 64
CALIBRATE_THREADS = 2
WARMUP_MINUTES = 1
RSS_GROWTH_LIMIT = 0.10
MAX_CONNECTIONS = 1000  # the generator's; a request waits for one when all are busy
REQUEST_TIMEOUT_SECONDS = 30
IDLE_REUSE_SECONDS = 3.0  # below gunicorn's keepalive (5 s): never reuse one it closed
SUSTAINED_SHARE = 0.98  # of the set rate sent, and of the requests on time, or invalid
LATE_LIMIT_SECONDS = 0.1  # a request leaving later than this behind schedule is "late"
STREAM_OPEN_TIMEOUT_SECONDS = 60
STREAM_SILENCE_LIMIT_SECONDS = 30  # twice the service's 15 s heartbeat
STREAM_SETTLE_SECONDS = 10  # for every stream to show the final total
STREAMS_EXIT_SECONDS = 5
CALIBRATE_SETTLE_SECONDS = 2
SECONDS_PER_MINUTE = 60
TOTAL_VOTES = re.compile(rb'"total_votes":\s*(\d+)')
METRIC_LINE = re.compile(
    r"^(pollbox_votes|pollbox_redis_fallbacks|pollbox_reconcile_drift)_total(\{.*?\})? (\S+)$",
    re.M)
EXIT_MISSED = 1
EXIT_INVALID = 3


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


# -- a small HTTP/1.1 client on asyncio -------------------------------------------------


class Dechunker:
    """Undo `Transfer-Encoding: chunked`, a piece at a time."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.size: int | None = None
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        self.pending += data
        out = bytearray()
        while not self.finished:
            if self.size is None:
                end = self.pending.find(b"\r\n")
                if end < 0:
                    break
                self.size = int(bytes(self.pending[:end]).split(b";")[0], 16)
                del self.pending[:end + 2]
                self.finished = self.size == 0
            elif len(self.pending) >= self.size + 2:
                out += self.pending[:self.size]
                del self.pending[:self.size + 2]
                self.size = None
            else:
                break
        return bytes(out)


@dataclass
class Head:
    status: int
    headers: dict[bytes, bytes]

    @classmethod
    def parse(cls, raw: bytes) -> Head:
        status_line, *lines = raw.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return cls(int(status_line.split()[1]), headers)

    @property
    def keep_alive(self) -> bool:
        return self.headers.get(b"connection", b"").lower() != b"close"


class Response:
    """One answer read from a keep-alive connection: its head, then its body."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.head: Head | None = None
        self.dechunker: Dechunker | None = None
        self.body = bytearray()

    def feed(self, data: bytes) -> bool:
        """Add bytes; whether the answer is complete."""
        self.buffer += data
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            self.head = Head.parse(bytes(self.buffer[:end]))
            del self.buffer[:end + 4]
            if self.head.headers.get(b"transfer-encoding") == b"chunked":
                self.dechunker = Dechunker()
        if self.dechunker:
            self.body += self.dechunker.feed(bytes(self.buffer))
            self.buffer.clear()
            return self.dechunker.finished
        length = int(self.head.headers.get(b"content-length", b"0"))
        if len(self.buffer) >= length:
            self.body = self.buffer[:length]
            return True
        return False


class Connection(asyncio.Protocol):
    """A keep-alive connection: one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.response is None:
            self.closed = True  # bytes nobody asked for: do not reuse
            return
        if self.response.feed(data) and not self.waiter.done():
            self.waiter.set_result(self.response)
            self.response = None

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("closed by the server"))

    def exchange(self, raw: bytes) -> asyncio.Future:
        self.response = Response()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        self.transport.close()


class Pool:
    """Keep-alive connections to one server, at most MAX_CONNECTIONS requests at once."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.idle: list[Connection] = []
        self.opened = 0

    async def connection(self) -> Connection:
        now = asyncio.get_running_loop().time()
        while self.idle:
            connection = self.idle.pop()  # the most recently used one
            if not connection.closed and now - connection.idle_since < IDLE_REUSE_SECONDS:
                return connection
            connection.close()
        self.opened += 1
        _, connection = await asyncio.get_running_loop().create_connection(
            Connection, self.host, self.port)
        return connection

    async def request(self, raw: bytes) -> Response:
        async with self.slots:
            connection = await self.connection()
            try:
                response = await asyncio.wait_for(connection.exchange(raw),
                                                  REQUEST_TIMEOUT_SECONDS)
            except BaseException:
                connection.close()
                raise
            if connection.closed or not response.head.keep_alive:
                connection.close()
            else:
                connection.idle_since = asyncio.get_running_loop().time()
                self.idle.append(connection)
            return response

    def close(self) -> None:
        for connection in self.idle:
            connection.close()


def http_request(method: str, path: str, host: str, headers: tuple[str, ...] = (),
                 body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# -- the load ---------------------------------------------------------------------------


@dataclass
class Minute:
    """What the generator saw for the requests scheduled in one minute."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sent: int = 0
    errors: int = 0
    late: int = 0
    max_lag: float = 0.0
    rss: dict[int, float] = field(default_factory=dict)  # worker pid -> MB, at its end
    cpu: dict[int, float] = field(default_factory=dict)  # worker pid -> CPU s, at its end


@dataclass
class Outcome:
    """The generator's whole run."""

    minutes: list[Minute]
    created: Counter = field(default_factory=Counter)  # option id -> 201 answers
    duplicates: int = 0  # 409 duplicate_vote to a repeated address, as expected
    errors: Counter = field(default_factory=Counter)
    send_seconds: float = 0.0  # from the first request sent to the last
    seconds: float = 0.0  # to the last answer
    cpu_seconds: float = 0.0
    max_in_flight: int = 0
    connections: int = 0


class Traffic:
    """The requests of the mix, each built when it is due."""

    def __init__(self, host: str, poll: dict) -> None:
        self.host = host
        self.poll_id = poll["id"]
        self.options = [option["id"] for option in poll["options"]]
        self.voted: list[str] = []  # addresses that got a 201
        self.votes = 0
        self.visits = 0
        self.random = random.Random(poll["id"])
        self.tallies = http_request("GET", f"/api/v1/polls/{self.poll_id}/tallies", host)

    def vote(self) -> tuple[bytes, dict]:
        self.votes += 1
        option = self.options[self.votes % len(self.options)]
        repeat = self.votes % REPEAT_EVERY == 0 and bool(self.voted)
        if repeat:
            address = self.random.choice(self.voted)
        else:
            address = f"2001:db8:{self.votes >> 16:x}:{self.votes & 0xffff:x}::1"
        raw = http_request("POST", f"/api/v1/polls/{self.poll_id}/votes", self.host,
                           (f"X-Forwarded-For: {address}",),
                           json.dumps({"choices": [option]}).encode())
        return raw, {"address": address, "option": option, "repeat": repeat}

    def widget(self) -> bytes:
        """A voter coming back and a new visitor in turn."""
        self.visits += 1
        if self.visits % 2 and self.voted:
            address = self.random.choice(self.voted)
        else:
            address = f"2001:db8:ffff:{self.visits & 0xffff:x}::1"
        return http_request("GET", f"/polls/{self.poll_id}/widget", self.host,
                            (f"X-Forwarded-For: {address}",))

    def next(self, number: int) -> tuple[str, bytes, dict]:
        kind = MIX[number % len(MIX)]
        if kind == "vote":
            return (kind, *self.vote())
        if kind == "widget":
            return kind, self.widget(), {}
        return kind, self.tallies, {}

    def judge(self, kind: str, response: Response, meta: dict, outcome: Outcome) -> str | None:
        """Count a vote's answer; the error an unexpected answer is."""
        status = response.head.status
        if kind != "vote":
            return None if status == 200 else f"{kind}: HTTP {status}"
        if status == 201:
            outcome.created[meta["option"]] += 1
            if not meta["repeat"]:
                self.voted.append(meta["address"])
                return None
            return "vote: 201 to an address that had voted"
        if status == 409 and meta["repeat"] and b"duplicate_vote" in response.body:
            outcome.duplicates += 1
            return None
        return f"vote: HTTP {status} {bytes(response.body[:80])!r}"


class Generator:
    """Send the mix at a constant rate, whatever the server's pace (open loop)."""

    def __init__(self, base: str, poll: dict, rate: float, minutes: int, on_minute) -> None:
        host = base.removeprefix("http://")
        self.address = host.rsplit(":", 1)
        self.traffic = Traffic(host, poll)
        self.rate = rate
        self.minutes = minutes
        self.on_minute = on_minute
        self.outcome = Outcome([Minute() for _ in range(minutes)])
        self.in_flight = 0

    async def one(self, pool: Pool, number: int, due: float) -> None:
        kind, raw, meta = self.traffic.next(number)
        minute = self.outcome.minutes[int(number / self.rate / SECONDS_PER_MINUTE)]
        self.in_flight += 1
        self.outcome.max_in_flight = max(self.outcome.max_in_flight, self.in_flight)
        try:
            response = await pool.request(raw)
            error = self.traffic.judge(kind, response, meta, self.outcome)
        except (TimeoutError, OSError, ValueError) as exc:  # ValueError: an unreadable answer
            error = f"{kind}: {type(exc).__name__}"
        finally:
            self.in_flight -= 1
        minute.latencies[kind].append(asyncio.get_running_loop().time() - due)
        if error:
            minute.errors += 1
            self.outcome.errors[error] += 1

    def launch(self, pool: Pool, number: int, due: float, now: float,
               tasks: set[asyncio.Task]) -> None:
        minute = self.outcome.minutes[int(number / self.rate / SECONDS_PER_MINUTE)]
        minute.sent += 1
        minute.max_lag = max(minute.max_lag, now - due)
        minute.late += now - due > LATE_LIMIT_SECONDS
        task = asyncio.create_task(self.one(pool, number, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        pool = Pool(self.address[0], int(self.address[1]))
        tasks: set[asyncio.Task] = set()
        total = int(self.rate * self.minutes * SECONDS_PER_MINUTE)
        cpu, start, number, minute = time.process_time(), loop.time(), 0, 0
        while number < total:
            due = start + number / self.rate
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
                now = loop.time()
            while number < total and start + number / self.rate <= now:
                self.launch(pool, number, start + number / self.rate, now, tasks)
                number += 1
            if now - start >= (minute + 1) * SECONDS_PER_MINUTE:
                self.on_minute(self.outcome.minutes[minute])
                minute += 1
        self.outcome.send_seconds = loop.time() - start
        await asyncio.gather(*tasks)
        self.outcome.seconds = loop.time() - start
        self.outcome.cpu_seconds = time.process_time() - cpu
        self.outcome.connections = pool.opened
        pool.close()
        for late in self.outcome.minutes[minute:]:
            self.on_minute(late)
        return self.outcome


# -- the streams, held by a child process -----------------------------------------------


class Stream(asyncio.Protocol):
    """One Server-Sent Event stream: the last total it showed, and how it ended."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.transport = None
        self.head: bytearray | None = bytearray()  # None once the head was read
        self.dechunker = Dechunker()
        self.pending = b""
        self.event = b""
        self.events = 0
        self.total = -1
        self.last_bytes_at = time.monotonic()
        self.max_silence = 0.0
        self.dropped: str | None = None
        self.closing = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.raw)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.max_silence = max(self.max_silence, now - self.last_bytes_at)
        self.last_bytes_at = now
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = Head.parse(bytes(self.head[:end])).status
            data = bytes(self.head[end + 4:])
            self.head = None
            if status != 200:
                self.dropped = f"HTTP {status}"
                self.transport.close()
                return
        self.lines(self.dechunker.feed(data))

    def lines(self, text: bytes) -> None:
        *complete, self.pending = (self.pending + text).split(b"\n")
        for line in complete:
            if line.startswith(b"event: "):
                self.event = line[7:].strip()
            elif line.startswith(b"data: ") and self.event == b"tallies":
                self.events += 1
                self.total = int(TOTAL_VOTES.search(line)[1])

    def connection_lost(self, exc) -> None:
        if not self.closing and self.dropped is None:
            self.dropped = type(exc).__name__ if exc else "closed by the server"

    def silence(self) -> float:
        return max(self.max_silence, time.monotonic() - self.last_bytes_at)


async def settle(streams: list[Stream], condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(condition(s) or s.dropped for s in streams) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


def stream_report(streams: list[Stream], expected: int | None) -> dict:
    return {
        "open": sum(1 for s in streams if s.events and not s.dropped),
        "dropped": Counter(s.dropped for s in streams if s.dropped),
        "behind": sum(1 for s in streams if expected is not None and s.total < expected),
        "silent": sum(1 for s in streams if s.silence() > STREAM_SILENCE_LIMIT_SECONDS),
        "max_silence": max((s.silence() for s in streams), default=0.0),
        "events": sum(s.events for s in streams),
        "cpu": time.process_time(),
    }


async def hold_streams(pipe, host: str, port: int, path: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    raw = http_request("GET", path, f"{host}:{port}", ("Accept: text/event-stream",))
    streams = []
    for _ in range(count):
        _, stream = await loop.create_connection(lambda: Stream(raw), host, port)
        streams.append(stream)
    await settle(streams, lambda s: s.events, STREAM_OPEN_TIMEOUT_SECONDS)
    pipe.send(stream_report(streams, None))
    await asyncio.to_thread(pipe.recv)  # the calibration is over: silences count from here
    pipe.send(stream_report(streams, None))
    for stream in streams:
        stream.max_silence = 0.0
    expected = (await asyncio.to_thread(pipe.recv))["expect"]
    await settle(streams, lambda s: s.total >= expected, STREAM_SETTLE_SECONDS)
    pipe.send(stream_report(streams, expected))
    for stream in streams:
        stream.closing = True
        stream.transport.close()


def streams_process(pipe, base: str, path: str, count: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops this process
    raise_open_files_limit()
    host, port = base.removeprefix("http://").rsplit(":", 1)
    asyncio.run(hold_streams(pipe, host, int(port), path, count))


# -- capacity, the database, the run ----------------------------------------------------

CALIBRATION_LUA = """
-- The soak's mix as fast as wrk can send it. Env: POLL, OPTION, MIX (kinds, comma-separated).
local poll = os.getenv("POLL")
local body = '{"choices": [' .. os.getenv("OPTION") .. ']}'
local mix = {}
local counter = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  for kind in string.gmatch(os.getenv("MIX"), "[^,]+") do table.insert(mix, kind) end
end

function request()
  counter = counter + 1
  local kind = mix[counter % #mix + 1]
  if kind == "vote" then
    -- 2001:db8:8000:: and up: the soak's own new voters count up from 2001:db8::
    local address = string.format("2001:db8:%x:%x::1", 32768 + thread_id * 4096 +
                                  math.floor(counter / 65536), counter % 65536)
    return wrk.format("POST", "/api/v1/polls/" .. poll .. "/votes",
                      {["Content-Type"] = "application/json", ["X-Forwarded-For"] = address},
                      body)
  elseif kind == "widget" then
    return wrk.format("GET", "/polls/" .. poll .. "/widget")
  end
  return wrk.format("GET", "/api/v1/polls/" .. poll .. "/tallies")
end
"""


def calibrate(base: str, poll: dict, seconds: int, workdir: Path) -> tuple[float, str]:
    """Capacity for the mix (req/s by wrk, closed loop) and wrk's own summary line."""
    script = workdir / "soak-mix.lua"
    script.write_text(CALIBRATION_LUA)
    env = {**os.environ, "POLL": poll["id"], "OPTION": str(poll["options"][0]["id"]),
           "MIX": ",".join(MIX)}
    output = subprocess.run(
        ["wrk", f"-t{CALIBRATE_THREADS}", f"-c{CALIBRATE_CONNECTIONS}", f"-d{seconds}s",
         "--latency", "-s", str(script), base], env=env, check=True, capture_output=True,
        text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)[1]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rate, f"p99 {p99}, non-2xx {non_2xx[1] if non_2xx else 0}"


@dataclass
class Ledger:
    """A poll's votes as the tallies show them and as the database records them."""

    total: int = 0
    options: Counter = field(default_factory=Counter)  # option id -> votes, in the tallies
    rows: int = 0  # ballot rows
    row_options: Counter = field(default_factory=Counter)  # option id -> ballot_choices rows


def ballot_rows(env: dict, poll_id: str) -> tuple[int, Counter]:
    """The poll's ballot rows and choices per option, read from the database itself."""
    ballots = "SELECT count(*) FROM ballots WHERE poll_id = {0}"
    choices = ("SELECT c.option_id, count(*) FROM ballot_choices c JOIN ballots b "
               "ON b.id = c.ballot_id WHERE b.poll_id = {0} GROUP BY c.option_id")
    url = env["DATABASE_URL"]
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            rows = db.execute(ballots.format("?"), (poll_id,)).fetchone()[0]
            return rows, Counter(dict(db.execute(choices.format("?"), (poll_id,)).fetchall()))
    import psycopg  # only for --db postgresql

    with psycopg.connect(url) as db:
        rows = db.execute(ballots.format("%s"), (poll_id,)).fetchone()[0]
        return rows, Counter(dict(db.execute(choices.format("%s"), (poll_id,)).fetchall()))


def ledger(base: str, env: dict, poll_id: str) -> Ledger:
    with urllib.request.urlopen(f"{base}/api/v1/polls/{poll_id}/tallies") as answer:
        tallies = json.load(answer)
    options = Counter({o["id"]: o["votes"] for o in tallies["options"] if o["votes"]})
    return Ledger(tallies["total_votes"], options, *ballot_rows(env, poll_id))


@dataclass
class Run:
    db: str
    rate: float = 0.0
    capacity: str = "given"
    outcome: Outcome | None = None
    rss_start: dict[int, float] = field(default_factory=dict)
    cpu_start: dict[int, float] = field(default_factory=dict)
    workers: list[int] = field(default_factory=list)
    streams_opened: dict = field(default_factory=dict)
    streams: dict = field(default_factory=dict)
    streams_calibrated: dict = field(default_factory=dict)  # after the calibration
    streams_seconds: float = 0.0  # from all open to the last report
    counters: Counter = field(default_factory=Counter)  # the service's, from /metrics
    before: Ledger = field(default_factory=Ledger)  # after the calibration
    after: Ledger = field(default_factory=Ledger)
    log_problems: int = 0


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample_workers(master) -> tuple[dict[int, float], dict[int, float]]:
    """Each live worker's resident memory (MB) and CPU seconds so far, by pid."""
    rss, cpu = {}, {}
    for pid in worker_pids(master):
        with contextlib.suppress(OSError, KeyError):  # a worker gone meanwhile
            rss[pid], cpu[pid] = memory_mb(pid)["VmRSS"], cpu_seconds(pid)
    return rss, cpu


def start_streams(base: str, poll: dict, count: int):
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    path = f"/api/v1/polls/{poll['id']}/tallies/stream"
    process = context.Process(target=streams_process, args=(theirs, base, path, count),
                              daemon=True)
    process.start()
    theirs.close()  # so that a dead child's end reads as EOFError here
    return process, mine


def prepare(run: Run, args: argparse.Namespace, base: str, poll: dict, workdir: Path) -> None:
    """Set the rate: measure the capacity with wrk on the soak's poll, unless given. The
    streams follow that poll, so the capacity includes their share of the work."""
    if args.rate:
        run.rate = args.rate
        return
    capacity, summary = calibrate(base, poll, args.calibrate_seconds, workdir)
    run.rate = round(capacity * LOAD_SHARE)
    run.capacity = f"{capacity:.0f} req/s by wrk in {args.calibrate_seconds} s ({summary})"
    time.sleep(CALIBRATE_SETTLE_SECONDS)  # wrk's last requests, cut off, may still finish


def soak(run: Run, base: str, master, poll: dict, minutes: int) -> None:
    """Drive the load; the workers' memory and CPU at the start and after each minute."""
    run.rss_start, run.cpu_start = sample_workers(master)
    run.workers = sorted(run.rss_start)

    def on_minute(minute: Minute) -> None:
        minute.rss, minute.cpu = sample_workers(master)

    run.outcome = asyncio.run(Generator(base, poll, run.rate, minutes, on_minute).run())


def bench(args: argparse.Namespace, workdir: Path) -> Run:
    run = Run(args.db)
    log = workdir / "pollbox.log"
    with database(args.db, workdir, args.redis_url) as env:
        owner = seed(env)
        with gunicorn("wsgi:app", env, log) as (base, master):
            poll = create_poll(base, owner["key"], duplicate_check="ip")
            process, pipe = start_streams(base, poll, args.streams)
            try:
                run.streams_opened = pipe.recv()
                opened_at = time.monotonic()
                prepare(run, args, base, poll, workdir)
                pipe.send("watch")
                run.streams_calibrated = pipe.recv()
                run.before = ledger(base, env, poll["id"])
                soak(run, base, master, poll, args.minutes)
                run.after = ledger(base, env, poll["id"])
                run.counters = service_counters(base)
                pipe.send({"expect": run.after.total})
                run.streams = pipe.recv()
                run.streams_seconds = time.monotonic() - opened_at
            finally:
                process.join(timeout=STREAMS_EXIT_SECONDS)
                if process.is_alive():
                    process.kill()
    run.log_problems = log_problems(log)
    return run


def service_counters(base: str) -> Counter:
    """What the workers counted, added up over their labels: votes by outcome, Redis
    fallbacks (a failed Redis call served from the database), reconciliation drift."""
    with urllib.request.urlopen(f"{base}/metrics") as answer:
        text = answer.read().decode()
    counters = Counter()
    for name, labels, value in METRIC_LINE.findall(text):
        outcome = re.search(r'outcome="(\w+)"', labels)
        counters[name + (f" {outcome[1]}" if outcome else "")] += float(value)
    return counters


def log_problems(log: Path) -> int:
    """Lines of gunicorn's log at WARNING or above (tracebacks, worker timeouts)."""
    pattern = re.compile(r'"level":\s*"(warning|error|critical)"|\[(warning|error|critical)\]',
                         re.IGNORECASE)
    return sum(1 for line in log.read_text(errors="replace").splitlines() if pattern.search(line))


# -- the report -------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def per_worker(values: dict[int, float], workers: list[int]) -> str:
    return ", ".join(f"{values[pid]:.0f}" if pid in values else "gone" for pid in workers)


def print_minutes(run: Run) -> None:
    print(f"| minute | req/s | late | {' | '.join(f'{k} p99 ms' for k in KINDS)} | errors "
          f"| workers' CPU % | workers' RSS MB |")
    print("|" + "|".join("---" for _ in range(len(KINDS) + 6)) + "|")
    print(f"| start | | | {' | '.join('' for _ in KINDS)} | | | "
          f"{per_worker(run.rss_start, run.workers)} |")
    cpu = run.cpu_start
    for number, minute in enumerate(run.outcome.minutes, start=1):
        p99s = " | ".join(ms(percentile(minute.latencies[kind], 0.99)) for kind in KINDS)
        label = f"{number}{' (warm-up)' if number <= WARMUP_MINUTES else ''}"
        shares = {pid: (used - cpu.get(pid, 0.0)) / SECONDS_PER_MINUTE * 100
                  for pid, used in minute.cpu.items()}
        cpu = minute.cpu
        print(f"| {label} | {minute.sent / SECONDS_PER_MINUTE:.0f} | {minute.late} | {p99s} "
              f"| {minute.errors} | {per_worker(shares, run.workers)} "
              f"| {per_worker(minute.rss, run.workers)} |")


def rss_check(run: Run) -> tuple[str, str, bool]:
    minutes = run.outcome.minutes
    before = minutes[WARMUP_MINUTES - 1].rss
    after = minutes[-1].rss
    growths = {pid: (after[pid] - before[pid]) / before[pid] for pid in run.workers
               if pid in before and pid in after}
    text = ", ".join(f"{before[pid]:.1f} -> {after[pid]:.1f} MB ({growth * 100:+.1f} %)"
                     for pid, growth in growths.items()) or "workers gone"
    met = len(growths) == len(run.workers) and max(growths.values()) <= RSS_GROWTH_LIMIT
    return "worker RSS, after warm-up -> end (<= +10 %)", text, met


def error_check(run: Run) -> tuple[str, str, bool]:
    errors = run.outcome.errors
    restarted = [m for m in run.outcome.minutes if sorted(m.rss) != run.workers]
    text = ", ".join(f"{name} x{count}" for name, count in errors.most_common(6)) or "none"
    if restarted:
        text += f"; workers changed in {len(restarted)} minute(s)"
    return "errors", text, not errors and not restarted


def stream_check(run: Run, wanted: int) -> tuple[str, str, bool]:
    opened, end = run.streams_opened, run.streams
    dropped = opened["dropped"] + end["dropped"]
    text = (f"{opened['open']} of {wanted} open at the start, {end['open']} at the end; "
            f"dropped {sum(end['dropped'].values())}"
            f"{' (' + ', '.join(dropped) + ')' if dropped else ''}; "
            f"behind the final total {end['behind']}; longest silence "
            f"{end['max_silence']:.1f} s ({run.streams_calibrated['max_silence']:.1f} s before "
            f"the soak); {end['events']} events")
    met = opened["open"] == wanted and end["open"] == wanted and not end["dropped"] \
        and not end["behind"] and not end["silent"]
    return "streams", text, met


def tallies_check(run: Run) -> tuple[str, str, bool]:
    before, after, created = run.before, run.after, run.outcome.created
    soaked = after.rows - before.rows
    same = (after.options == after.row_options and before.options == before.row_options
            and after.row_options - before.row_options == created)
    options = "equal" if same else " / ".join(
        str(dict(counts)) for counts in (after.options, after.row_options, created))
    text = (f"{after.total} / {after.rows} / {sum(created.values())} + {before.rows} from the "
            f"calibration; per option {options}; 409 duplicate_vote to repeats: "
            f"{run.outcome.duplicates}")
    met = (after.total == after.rows and before.total == before.rows
           and soaked == sum(created.values()) and same)
    return "tallies / ballot rows / 201 answers", text, met


def load_check(run: Run) -> tuple[str, str, bool]:
    outcome = run.outcome
    sent = sum(m.sent for m in outcome.minutes)
    late = sum(m.late for m in outcome.minutes)
    achieved = sent / outcome.send_seconds
    streams_cpu = run.streams["cpu"] - run.streams_opened["cpu"]
    text = (f"{sent} requests at {achieved:.1f} req/s (set: {run.rate:g}); left > "
            f"{LATE_LIMIT_SECONDS * 1000:.0f} ms late: {late}; latest "
            f"{ms(max(m.max_lag for m in outcome.minutes))} ms; in flight up to "
            f"{outcome.max_in_flight}, {outcome.connections} connections; CPU: generator "
            f"{outcome.cpu_seconds / outcome.seconds * 100:.0f} %, streams process "
            f"{streams_cpu / run.streams_seconds * 100:.0f} % of a core")
    met = achieved >= SUSTAINED_SHARE * run.rate and late <= (1 - SUSTAINED_SHARE) * sent
    return "load sent (validity)", text, met


def report(run: Run, args: argparse.Namespace) -> int:
    """Print the figures; the exit status."""
    print(f"\n{run.db}: {args.minutes} min at {run.rate:g} req/s (capacity: {run.capacity}); "
          f"mix {'/'.join(MIX)}; {args.streams} streams; load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print_minutes(run)
    load = load_check(run)
    targets = [rss_check(run), error_check(run), stream_check(run, args.streams),
               tallies_check(run)]
    width = max(len(name) for name, _, _ in [load, *targets])
    print()
    for name, text, met in [load, *targets]:
        print(f"| {name:<{width}} | {'met' if met else 'MISSED':<6} | {text} |")
    counters = ", ".join(f"{name} {count:g}" for name, count in sorted(run.counters.items()))
    print(f"the service's counters (/metrics): {counters or 'none'}; gunicorn log lines at "
          f"WARNING or above: {run.log_problems}")
    if not load[2]:
        return EXIT_INVALID
    return 0 if all(met for _, _, met in targets) else EXIT_MISSED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, help="requests per second (default: half "
                                                   "of the capacity wrk measures)")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--calibrate-seconds", type=int, default=15)
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args()
    if args.minutes <= WARMUP_MINUTES:
        parser.error(f"--minutes must be more than the {WARMUP_MINUTES} minute(s) of warm-up")
    if not args.rate and shutil.which("wrk") is None:
        raise SystemExit("wrk measures the capacity (apt-get install wrk); or give --rate")
    raise_open_files_limit()  # gunicorn inherits it
    # SIGTERM unwinds like Ctrl-C: gunicorn stopped, the PostgreSQL schema dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, database {args.db}, Redis {args.redis_url}")
    with tempfile.TemporaryDirectory(prefix="pollbox-soak-") as workdir:
        try:
            run = bench(args, Path(workdir))
        except KeyboardInterrupt:
            sys.exit("interrupted: gunicorn stopped, the database removed")
        status = report(run, args)
        if status:
            kept = Path(tempfile.gettempdir()) / f"pollbox-soak-{args.db}-{os.getpid()}.log"
            shutil.copyfile(Path(workdir) / "pollbox.log", kept)
            print(f"gunicorn's log: {kept}")
    sys.exit(status)


if __name__ == "__main__":
    main()
