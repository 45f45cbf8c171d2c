"""The shipped proxy (deploy/nginx.conf) in front of two app replicas, as
deploy/docker-compose.yml runs them: real nginx, real gunicorn, real Redis and
PostgreSQL. Only the replicas' addresses, the port and the pid file are changed.

The app trusts exactly one proxy (TRUSTED_PROXY_COUNT=1), so what the proxy writes into
X-Forwarded-For decides who a voter is: a visitor must not become a new voter by sending
the header herself. Live tallies must pass through at once, a replica going away must
not cost a vote, and the internet must not read the metrics.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from service.infra.identity import keyed_hash
from tests.conftest import SECRET, nginx_binary
from tests.e2e.conftest import ROOT, free_port
from tests.e2e.test_stream import UPDATE_DEADLINE_SECONDS, EventReader, create_poll

pytestmark = [pytest.mark.gunicorn,
              # The proxy does not depend on the database: the production one.
              pytest.mark.parametrize("e2e_database_url", ["postgresql"], indirect=True)]

NGINX_START_TIMEOUT_SECONDS = 10
HSTS = "max-age=31536000; includeSubDomains"
# Above client_max_body_size (64k): nginx answers 413 before the app sees it.
TOO_BIG_BYTES = 100 * 1024


def local_config(text: str, *, port: int, replicas: list[str], folder: Path) -> str:
    """deploy/nginx.conf with loopback addresses for its port and its two replicas."""
    replaced = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    replaced = replaced.replace("pid /tmp/nginx.pid;", f"pid {folder / 'nginx.pid'};")
    for name, address in zip(("app1:8000", "app2:8000"), replicas, strict=True):
        assert name in replaced
        replaced = replaced.replace(name, address)
    assert f"127.0.0.1:{port}" in replaced
    return replaced


@pytest.fixture
def proxy(gunicorn_server, e2e_database_url, clean_redis, tmp_path):
    """nginx with the shipped config in front of two one-worker replicas:
    (the proxy's base URL, the replicas)."""
    replicas = [gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis,
                                workers=1) for _ in range(2)]
    port = free_port()
    folder = tmp_path / "nginx"
    folder.mkdir()
    config = folder / "nginx.conf"
    config.write_text(local_config(
        (ROOT / "deploy" / "nginx.conf").read_text(), port=port, folder=folder,
        replicas=[server.base_url.removeprefix("http://") for server in replicas]))
    # As root, nginx's workers would run as `nobody`, who may not enter pytest's folders.
    user = " user root;" if os.geteuid() == 0 else ""
    log = folder / "nginx.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [nginx_binary(), "-c", str(config), "-p", str(folder),
             "-g", f"daemon off; error_log stderr;{user}"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + NGINX_START_TIMEOUT_SECONDS
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield base, replicas
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def vote(base: str, poll: dict, option: int = 0, **headers: str) -> httpx.Response:
    return httpx.post(f"{base}/api/v1/polls/{poll['id']}/votes",
                      json={"choices": [poll["options"][option]["id"]]},
                      headers=headers, timeout=10)


def test_a_voter_is_the_address_the_proxy_saw_whatever_she_forwards(proxy, owner_key,
                                                                   database):
    base, _ = proxy
    poll = create_poll(base, owner_key, duplicate_check="ip")
    first = vote(base, poll, **{"X-Forwarded-For": "198.18.0.1"})
    assert first.status_code == 201, first.text
    # Another forged address is not another voter: the proxy writes the one it saw.
    again = vote(base, poll, 1, **{"X-Forwarded-For": "198.18.0.2"})
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "duplicate_vote"
    with database.connect() as connection:
        stored = connection.execute(sa.text("SELECT ip_hash FROM ballots WHERE poll_id = :p"),
                                    {"p": poll["id"]}).scalars().all()
    assert stored == [keyed_hash(SECRET, poll["id"], "ip", "127.0.0.1")]
    tallies = httpx.get(f"{base}/api/v1/polls/{poll['id']}/tallies", timeout=10).json()
    assert tallies["total_votes"] == 1


def test_live_tallies_pass_through_the_proxy_at_once(proxy, owner_key):
    base, _ = proxy
    # Every client comes from the proxy's address here: told apart by their cookies (each
    # vote below is a new browser's).
    poll = create_poll(base, owner_key, duplicate_check="cookie")
    reader = EventReader(f"{base}/api/v1/polls/{poll['id']}/tallies/stream")
    try:
        assert reader.wait_for(1, timeout=10), "no initial event through the proxy"
        for n in range(1, 4):
            time.sleep(0.3)
            started = time.monotonic()
            assert vote(base, poll, n % 3).status_code == 201
            events = reader.wait_for(n + 1, timeout=5)
            assert len(events) > n, f"no update through the proxy after vote {n}"
            arrived, data = events[n]
            assert data["total_votes"] == n
            assert arrived - started < UPDATE_DEADLINE_SECONDS
    finally:
        reader.close()


def test_a_replica_going_away_costs_no_vote(proxy, owner_key):
    base, replicas = proxy
    poll = create_poll(base, owner_key, duplicate_check="cookie")
    assert all(vote(base, poll).status_code == 201 for _ in range(4))
    gone = replicas[0]
    os.killpg(gone.process.pid, signal.SIGKILL)  # a crash: connections refused at once
    gone.process.wait(timeout=10)
    # nginx passes a request on to the other replica when it could not connect: a vote
    # it never sent is not lost, and one it sent is never sent twice.
    answers = [vote(base, poll).status_code for _ in range(10)]
    assert answers == [201] * 10
    tallies = httpx.get(f"{base}/api/v1/polls/{poll['id']}/tallies", timeout=10).json()
    assert tallies["total_votes"] == 14


def test_the_proxy_keeps_browsers_on_https_and_every_answer_traceable(proxy):
    base, _ = proxy
    answer = httpx.get(f"{base}/healthz", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Strict-Transport-Security"] == HSTS
    # The proxy's request id reaches the app, which answers with it and logs it.
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-ID"])
    mine = httpx.get(f"{base}/healthz", headers={"X-Request-ID": "trace-7"}, timeout=10)
    assert mine.headers["X-Request-ID"] == "trace-7"
    # A body the app would refuse anyway is refused by the proxy, HSTS and all.
    big = httpx.post(f"{base}/api/v1/polls/x/votes", content=b"x" * TOO_BIG_BYTES,
                     headers={"Content-Type": "application/json"}, timeout=10)
    assert big.status_code == 413
    assert big.headers["Strict-Transport-Security"] == HSTS


def test_metrics_answer_the_internal_network_only(proxy):
    base, _ = proxy
    assert httpx.get(f"{base}/metrics", timeout=10).status_code == 200
    # Any loopback address but 127.0.0.1 stands for a client on the internet here.
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as outside:
        assert outside.get(f"{base}/metrics", timeout=10).status_code == 403
        assert outside.get(f"{base}/healthz", timeout=10).status_code == 200
