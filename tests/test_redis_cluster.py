"""Pollbox on a real three-master Redis Cluster (started here on loopback ports): votes,
duplicates, tallies, rebuilds, reconcile and poll deletion, each poll in one slot."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from redis.cluster import RedisCluster

from service import create_app, owners
from service.infra import keys
from service.infra.clock import epoch_ms
from service.infra.db import db
from service.infra.identity import keyed_hash
from service.infra.redis import redis_handle
from service.infra.redis.lease import LEASE_MS
from service.infra.redis.scripts import AdmitCall, Admitted
from service.polls.manage import get_poll
from service.tallies import counts as tallies
from service.tallies import reconcile
from tests.conftest import REQUIRE_SERVICES, SECRET, SEED_POLL

MASTERS = 3
# Ports whose cluster bus (port + 10000) is also below 65536.
PORT_RANGE = (20000, 30000)
START_TIMEOUT_SECONDS = 20


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(*PORT_RANGE)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory) -> Iterator[str]:
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        message = "redis-server and redis-cli are needed for the Redis Cluster tests"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("redis-cluster")
    ports = cluster_ports(MASTERS)
    processes = [
        subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
             "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no",
             "--dir", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        for port in ports
    ]
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for port in ports:
            while True:
                try:
                    redis.Redis(port=port, socket_timeout=1).ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=START_TIMEOUT_SECONDS,
        )
        for port in ports:
            node = redis.Redis(port=port, socket_timeout=1)
            while node.cluster("info")["cluster_state"] != "ok":
                if time.monotonic() > deadline:
                    pytest.fail(f"Redis Cluster node {port} did not reach state ok")
                time.sleep(0.1)
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for process in processes:
            process.send_signal(signal.SIGKILL)
            process.wait()


@pytest.fixture
def cluster_app(cluster_url, sqlite_template, tmp_path):
    path = tmp_path / "pollbox.db"
    shutil.copyfile(sqlite_template, path)
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET, "REDIS_URL": cluster_url,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
    with app.app_context():
        key = owners.create_owner(session=db.session, name="PsyWeb")
        redis_handle().client.flushall()
    app.config["TEST_OWNER_KEY"] = key
    yield app
    with app.app_context():
        db.engine.dispose()


def all_keys(cluster_url: str) -> list[bytes]:
    client = RedisCluster.from_url(cluster_url.replace("redis+cluster", "redis"))
    try:
        return list(client.scan_iter(match=f"{keys.PREFIX}:*"))
    finally:
        client.close()


def test_the_client_is_a_cluster_client(cluster_app):
    with cluster_app.app_context():
        client = redis_handle().client
        assert isinstance(client.client(), RedisCluster)
        assert len(client.get_primaries()) == MASTERS


def test_votes_duplicates_tallies_rebuild_and_delete_on_a_cluster(cluster_app, cluster_url):
    client = cluster_app.test_client()
    owner = {"Authorization": f"Bearer {cluster_app.config['TEST_OWNER_KEY']}"}
    polls = []
    for _ in range(4):  # several polls: their keys land in different slots and nodes
        response = client.post("/api/v1/polls", headers=owner,
                               json={**SEED_POLL, "duplicate_check": "cookie_and_ip"})
        assert response.status_code == 201, response.get_json()
        polls.append(response.get_json())
    poll = polls[0]
    first, second = (option["id"] for option in poll["options"][:2])

    browsers = [cluster_app.test_client() for _ in range(3)]
    for n, (browser, choice) in enumerate(zip(browsers, (first, first, second), strict=True)):
        body = {"choices": [choice], "context": "page-a" if n == 2 else None}
        answer = browser.post(f"/api/v1/polls/{poll['id']}/votes", json=body,
                              environ_overrides={"REMOTE_ADDR": f"203.0.113.{n}"},
                              headers={"Idempotency-Key": f"key-{n}"})
        assert answer.status_code == 201, answer.get_json()
    again = browsers[0].post(f"/api/v1/polls/{poll['id']}/votes", json={"choices": [second]},
                             environ_overrides={"REMOTE_ADDR": "203.0.113.0"})
    assert again.status_code == 409
    assert again.get_json()["code"] == "duplicate_vote"
    same_address = cluster_app.test_client().post(
        f"/api/v1/polls/{poll['id']}/votes", json={"choices": [second]},
        environ_overrides={"REMOTE_ADDR": "203.0.113.1"})
    assert same_address.status_code == 409

    shown = client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()
    assert shown["total_votes"] == 3
    assert {o["id"]: o["votes"] for o in shown["options"]}[first] == 2

    with cluster_app.app_context():
        store = redis_handle()
        poll_keys = [key for key in all_keys(cluster_url) if f"{{{poll['id']}}}".encode() in key]
        assert len({store.client.keyslot(key) for key in poll_keys}) == 1
        slots = {store.client.keyslot(keys.tally(p["id"])) for p in polls}
        assert len(slots) == len(polls)

        # Rebuild: the tally is gone, the next read restores it exactly from the database.
        store.client.delete(keys.tally(poll["id"]))
        model = get_poll(session=db.session, poll_id=poll["id"])
        assert tallies.read(session=db.session, redis=store, poll=model).total == 3
        assert int(store.client.hget(keys.tally(poll["id"]), "total")) == 3

        # Reconcile: a drifted tally is found and rebuilt.
        store.client.hincrby(keys.tally(poll["id"]), "total", 5)
        report = reconcile.reconcile(engine=db.engine, redis=store)
        assert report.drift["mismatch"] == 1
        assert int(store.client.hget(keys.tally(poll["id"]), "total")) == 3

    deleted = client.delete(f"/api/v1/polls/{poll['id']}", headers=owner)
    assert deleted.status_code == 204
    left = [key for key in all_keys(cluster_url) if f"{{{poll['id']}}}".encode() in key]
    assert left == []
    others = [key for key in all_keys(cluster_url) if f"{{{polls[1]['id']}}}".encode() in key]
    assert others  # other polls keep theirs


def test_a_vote_in_flight_and_a_dead_ones_claim_on_a_cluster(cluster_app):
    """admit.lua reads the claiming process's lease in the poll's own slot; the lease
    timer's pipeline reaches every poll's slot."""
    client = cluster_app.test_client()
    owner = {"Authorization": f"Bearer {cluster_app.config['TEST_OWNER_KEY']}"}
    poll = client.post("/api/v1/polls", headers=owner,
                       json={**SEED_POLL, "duplicate_check": "ip"}).get_json()
    identity = f"ip:{keyed_hash(SECRET, poll['id'], 'ip', '203.0.113.9')}"
    with cluster_app.app_context():
        store = redis_handle()
        claimed = store.scripts.admit(AdmitCall(
            poll_id=poll["id"], now_ms=epoch_ms(datetime.now(UTC)), integrity_hour="h",
            retention_seconds=60, ballot_id="GhostBallot00000", identities=(("ip", identity),),
            orphan_ms=45_000, lease="ghost", lease_ms=LEASE_MS))
        assert claimed == Admitted()

    def vote():
        return client.post(f"/api/v1/polls/{poll['id']}/votes",
                           json={"choices": [poll["options"][0]["id"]]},
                           environ_overrides={"REMOTE_ADDR": "203.0.113.9"})

    assert vote().get_json()["code"] == "vote_pending"
    with cluster_app.app_context():
        store = redis_handle()
        store.client.delete(keys.lease(poll["id"], "ghost"))  # the process died
        assert vote().status_code == 201
        with store.lease.voting_in(poll["id"]):
            store.lease.refresh(store)
            assert store.client.exists(keys.lease(poll["id"], store.lease.token))


def test_a_cluster_down_at_start_is_an_outage_not_a_crash(sqlite_template, tmp_path):
    path = tmp_path / "pollbox.db"
    shutil.copyfile(sqlite_template, path)
    nobody = cluster_ports(1)[0]
    # Pollbox's own client connects on first use. (Flask-Limiter's cluster storage still
    # connects when it is created, so the limiter counts in memory here.)
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET,
                      "REDIS_URL": f"redis+cluster://127.0.0.1:{nobody}",
                      "RATELIMIT_STORAGE_URI": "memory://",
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["redis"] == "degraded"
