"""Hundreds of open tallies streams against real gunicorn with the production config
(gevent workers, one Redis subscription per worker): ordinary requests still answer
fast, and one vote reaches every stream, each worker reading the tally for all its streams
at once rather than once per stream. The 1,000-stream benchmark: bench/sse_fanout.py.

SQLite backs this test: it measures the worker model, and the machine's PostgreSQL
(max_connections 100) is shared with any other suite running at the same time. Streams
need no database connection while open (see tests/widgets/test_stream.py), and the SSE
latency test in test_stream.py runs on both backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from service.infra import keys
from tests.e2e.test_stream import UPDATE_DEADLINE_SECONDS, create_poll

pytestmark = pytest.mark.gunicorn

OPEN_STREAMS = 300
TALLIES_REQUESTS = 20
TALLIES_DEADLINE_SECONDS = 1.0
STREAM_OPEN_TIMEOUT_SECONDS = 60
# Reads of the poll's tally while one vote reaches every stream: one per worker for all
# its streams (and the vote's own); per stream it would be OPEN_STREAMS.
MAX_TALLY_READS_PER_FAN_OUT = 10
MONITOR_STOP_TIMEOUT_SECONDS = 5


@pytest.fixture
def e2e_database_url(request, tmp_path) -> str:
    path = tmp_path / "pollbox.db"
    shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


async def _open_stream(host: str, port: int, path: str):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    assert await _next_total(reader) == 0  # the first event, at once
    return reader, writer


async def _next_total(reader: asyncio.StreamReader) -> int:
    """`total_votes` of the stream's next `tallies` event (heartbeats skipped). Each event
    is one chunk of the chunked answer, so a `data:` line is never split."""
    while True:
        block = await reader.readuntil(b"\n\n")
        for line in block.splitlines():
            if line.startswith(b"data: "):
                return json.loads(line[6:])["total_votes"]


async def _timed_tallies(client: httpx.AsyncClient, path: str) -> float:
    started = time.monotonic()
    response = await client.get(path)
    assert response.status_code == 200
    return time.monotonic() - started


@contextlib.contextmanager
def _tally_reads(redis_url: str, poll_id: str) -> Iterator[list[str]]:
    """The reads of the poll's tally that Redis runs meanwhile (seen through MONITOR; the
    key names the poll, so other clients of the server do not count)."""
    client = redis.Redis.from_url(redis_url)
    key, marker = keys.tally(poll_id), f"end of {poll_id}"
    reads: list[str] = []
    seen_marker = threading.Event()
    monitor = client.monitor()
    monitor.__enter__()

    def watch() -> None:
        with contextlib.suppress(redis.RedisError, OSError, ValueError, AttributeError):
            while not seen_marker.is_set():
                command = monitor.next_command()["command"].split()
                if command[:2] == ["HGETALL", key]:
                    reads.append(command[0])
                elif command == ["ECHO", *marker.split()]:
                    seen_marker.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield reads
    finally:
        client.echo(marker)  # everything before it has been seen once the marker is
        seen_marker.wait(MONITOR_STOP_TIMEOUT_SECONDS)
        monitor.connection.disconnect()
        watcher.join(MONITOR_STOP_TIMEOUT_SECONDS)
        client.close()


async def _load(base_url: str, poll: dict, redis_url: str) -> dict:
    parts = urlsplit(base_url)
    path = f"/api/v1/polls/{poll['id']}/tallies/stream"
    started = time.monotonic()
    streams = await asyncio.wait_for(
        asyncio.gather(*(_open_stream(parts.hostname, parts.port, path)
                         for _ in range(OPEN_STREAMS))),
        STREAM_OPEN_TIMEOUT_SECONDS,
    )
    opened = time.monotonic() - started
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            tallies_path = f"/api/v1/polls/{poll['id']}/tallies"
            durations = [await _timed_tallies(client, tallies_path)
                         for _ in range(TALLIES_REQUESTS)]
            with _tally_reads(redis_url, poll["id"]) as reads:
                voted = time.monotonic()
                response = await client.post(f"/api/v1/polls/{poll['id']}/votes",
                                             json={"choices": [poll["options"][0]["id"]]})
                assert response.status_code == 201
                updates = await asyncio.wait_for(
                    asyncio.gather(*(_next_total(reader) for reader, _ in streams)), 10,
                )
                fanned_out = time.monotonic() - voted
        assert updates == [1] * OPEN_STREAMS
    finally:
        for _, writer in streams:
            writer.close()
    return {"opened": opened, "tallies": durations, "fan_out": fanned_out,
            "tally_reads": len(reads)}


def test_300_open_streams_do_not_keep_ordinary_requests_waiting(
    gunicorn_server, e2e_database_url, clean_redis, owner_key, record_property
):
    server = gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis, workers=2)
    poll = create_poll(server.base_url, owner_key, duplicate_check="none")
    figures = asyncio.run(_load(server.base_url, poll, clean_redis))
    record_property("open_streams", figures)
    print(f"\n{OPEN_STREAMS} streams open in {figures['opened']:.2f}s; tallies while open: "
          f"median {statistics.median(figures['tallies']) * 1000:.1f} ms, "
          f"max {max(figures['tallies']) * 1000:.1f} ms; one vote reached all "
          f"{OPEN_STREAMS} streams in {figures['fan_out']:.3f}s; "
          f"reading the tally {figures['tally_reads']} times")
    assert max(figures["tallies"]) < TALLIES_DEADLINE_SECONDS
    assert figures["fan_out"] < UPDATE_DEADLINE_SECONDS * 2
    assert figures["tally_reads"] <= MAX_TALLY_READS_PER_FAN_OUT
