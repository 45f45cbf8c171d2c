"""Hundreds of open tallies streams against real gunicorn with the production config
(gevent workers, one Redis subscription per worker): ordinary requests still answer
fast, and one vote reaches every stream.

SQLite backs this test: it measures the worker model, and the machine's PostgreSQL
(max_connections 100) is shared with any other suite running at the same time. Streams
need no database connection while open (see tests/widgets/test_stream.py), and the SSE
latency test in test_stream.py runs on both backends.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.test_stream import UPDATE_DEADLINE_SECONDS, create_poll

pytestmark = pytest.mark.gunicorn

OPEN_STREAMS = 300
TALLIES_REQUESTS = 20
TALLIES_DEADLINE_SECONDS = 1.0
STREAM_OPEN_TIMEOUT_SECONDS = 60


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
    await reader.readuntil(b"event: tallies")
    return reader, writer


async def _timed_tallies(client: httpx.AsyncClient, path: str) -> float:
    started = time.monotonic()
    response = await client.get(path)
    assert response.status_code == 200
    return time.monotonic() - started


async def _load(base_url: str, poll: dict) -> dict:
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
            voted = time.monotonic()
            response = await client.post(f"/api/v1/polls/{poll['id']}/votes",
                                         json={"choices": [poll["options"][0]["id"]]})
            assert response.status_code == 201
        updates = await asyncio.wait_for(
            asyncio.gather(*(reader.readuntil(b'"total_votes": 1') for reader, _ in streams)),
            10,
        )
        fanned_out = time.monotonic() - voted
        assert len(updates) == OPEN_STREAMS
    finally:
        for _, writer in streams:
            writer.close()
    return {"opened": opened, "tallies": durations, "fan_out": fanned_out}


def test_300_open_streams_do_not_keep_ordinary_requests_waiting(
    gunicorn_server, e2e_database_url, clean_redis, owner_key, record_property
):
    server = gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis, workers=2)
    poll = create_poll(server.base_url, owner_key, duplicate_check="none")
    figures = asyncio.run(_load(server.base_url, poll))
    record_property("open_streams", figures)
    print(f"\n{OPEN_STREAMS} streams open in {figures['opened']:.2f}s; tallies while open: "
          f"median {statistics.median(figures['tallies']) * 1000:.1f} ms, "
          f"max {max(figures['tallies']) * 1000:.1f} ms; one vote reached all "
          f"{OPEN_STREAMS} streams in {figures['fan_out']:.3f}s")
    assert max(figures["tallies"]) < TALLIES_DEADLINE_SECONDS
    assert figures["fan_out"] < UPDATE_DEADLINE_SECONDS * 2
