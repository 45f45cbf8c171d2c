"""Webhooks end to end: gunicorn (gevent workers) takes votes while the real worker
command (`flask --app wsgi webhooks worker`: dispatcher + RQ) delivers them, signed, to a
receiver on loopback that answers slowly; the votes never wait for it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.gunicorn

FLASK = Path(sys.executable).parent / "flask"
VOTES = 40
RECEIVER_DELAY_SECONDS = 2.0
DELIVERY_TIMEOUT_SECONDS = 30


class SlowReceiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(RECEIVER_DELAY_SECONDS)
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def verified(secret: str, headers: dict, body: bytes) -> dict:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert expected in headers["webhook-signature"].split(" ")
    return json.loads(body)


@pytest.fixture
def receiver():
    found = SlowReceiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture
def webhooks_worker(e2e_database_url, clean_redis, tmp_path):
    log = tmp_path / "worker.err"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [str(FLASK), "--app", "wsgi", "webhooks", "worker"], cwd=ROOT,
            env={**os.environ, "DATABASE_URL": e2e_database_url, "REDIS_URL": clean_redis,
                 "SECRET_KEY": SECRET, "WEBHOOKS_ALLOW_PRIVATE": "1", "LOG_FORMAT": "text"},
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )
    yield process, log
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.parametrize("mode", ["rq-worker", "in-process"])
def test_votes_reach_a_slow_webhook_without_waiting_for_it(gunicorn_server, e2e_database_url,
                                                           clean_redis, owner_key, receiver,
                                                           request, mode):
    if mode == "rq-worker":
        server = gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis,
                                 WEBHOOKS_ALLOW_PRIVATE="1")
        _process, log = request.getfixturevalue("webhooks_worker")
    else:  # no REDIS_URL: one gevent worker sends deliveries itself
        server = gunicorn_server(database_url=e2e_database_url, redis_url="", workers=1,
                                 WEBHOOKS_ALLOW_PRIVATE="1")
        log = server.stderr_path
    auth = {"Authorization": f"Bearer {owner_key}"}
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        poll = client.post("/api/v1/polls", headers=auth, json={
            "question": "Webhooks?", "options": ["Yes", "No"], "duplicate_check": "none"}).json()
        hook = client.post("/api/v1/webhooks", headers=auth, json={
            "url": receiver.url, "events": ["vote.created", "poll.closed"]}).json()
        latencies, ballots = [], set()
        for index in range(VOTES):
            started = time.perf_counter()
            response = client.post(f"/api/v1/polls/{poll['id']}/votes",
                                   json={"choices": [poll["options"][index % 2]["id"]]})
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 201
            ballots.add(response.json()["vote"]["id"])
        assert client.patch(f"/api/v1/polls/{poll['id']}", headers=auth,
                            json={"status": "closed"}).status_code == 200

        deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
        delivered: set[str] = set()
        closed = []
        while (delivered != ballots or not closed) and time.monotonic() < deadline:
            time.sleep(0.2)
            events = [verified(hook["secret"], *request) for request in receiver.requests]
            delivered = {v["id"] for e in events if e["type"] == "vote.created"
                         for v in e["data"]["votes"]}
            closed = [e for e in events if e["type"] == "poll.closed"]
        assert delivered == ballots, log.read_text()
        assert [e["data"]["reason"] for e in closed] == ["manual"]
        latencies.sort()
        # The receiver takes 2 s per request; no vote came near that.
        assert latencies[-1] < 1.0, latencies
        median = latencies[len(latencies) // 2] * 1000
        print(f"\nvote latency with a 2 s webhook: median {median:.1f} ms, "
              f"max {latencies[-1] * 1000:.1f} ms; {len(receiver.requests)} deliveries")
        found = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=auth,
                           params={"page_size": 100}).json()
        assert all(d["status"] == "succeeded" for d in found)
        assert all(a["response_status"] == 204 for d in found for a in d["attempts"])
