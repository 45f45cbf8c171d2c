"""Webhooks: the resource API, the SSRF guard, Standard Webhooks signatures, batched
`vote.created`, manual and scheduled `poll.closed`, retries with every attempt logged,
and votes that never wait for (or fail because of) a delivery.

Deliveries go to a receiver on loopback started by each test (allowed by the development
setting WEBHOOKS_ALLOW_PRIVATE). Without REDIS_URL the app's in-process dispatcher sends
them; with Redis, `settle` runs the dispatcher and the service's RQ worker in burst mode. The
SSRF tests only check refusals made before any connection: no traffic leaves loopback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from service.infra.redis import redis_handle
from service.infra.redis.scripts import CountCall
from service.webhooks import dispatcher as webhooks
from service.webhooks import sender as webhook_sender
from service.webhooks.runners import Worker

SETTLE_TIMEOUT_SECONDS = 15
SIGNATURE_TOLERANCE_SECONDS = 300


class Receiver:
    """A webhook endpoint on loopback: records requests, answers scripted statuses."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []  # answered in turn; 200 once they run out
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.requests.append({"headers": {k.lower(): v for k, v in
                                                      self.headers.items()},
                                          "body": body, "at": time.monotonic()})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict]:
        return [json.loads(request["body"]) for request in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def hooks_app(app):
    """The app with the development setting on, immediate retries and a fast dispatcher."""
    app.config.update(WEBHOOKS_ALLOW_PRIVATE=True, WEBHOOK_RETRY_DELAYS=(0, 0, 0, 0, 0),
                      WEBHOOKS_TICK_SECONDS=0.05)
    yield app
    webhooks.stop(app)


@pytest.fixture
def hook_client(hooks_app):
    return hooks_app.test_client()


@pytest.fixture
def make_hook(hook_client, auth, receiver):
    def make(events=("vote.created", "poll.closed"), **fields) -> dict:
        response = hook_client.post("/api/v1/webhooks", headers=auth, json={
            "url": receiver.url, "events": list(events), **fields})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return make


def settle(app, done, timeout=SETTLE_TIMEOUT_SECONDS):
    """Let the webhooks machinery work until `done()` holds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "webhooks did not settle in time"
        with app.app_context():
            handle = redis_handle()
        if handle.shared:
            webhooks.run_tick(app)
            with app.app_context():
                queue = webhooks.runner(app).queue
                Worker([queue], connection=handle.client).work(burst=True)
        time.sleep(0.05)


def deliveries(client, auth, hook) -> list[dict]:
    response = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=auth)
    assert response.status_code == 200
    return response.get_json()


def settled(client, auth, hook, count=1):
    def done() -> bool:
        found = deliveries(client, auth, hook)
        return len(found) >= count and all(d["status"] != "pending" for d in found)

    return done


def verify(secret: str, headers: dict, body: bytes) -> dict:
    """Standard Webhooks verification, written from the spec (not the service's code)."""
    message_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    assert abs(time.time() - int(timestamp)) < SIGNATURE_TOLERANCE_SECONDS
    key = base64.b64decode(secret.split("_", 1)[1])
    content = f"{message_id}.{timestamp}.{body.decode()}".encode()
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for signature in headers["webhook-signature"].split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise AssertionError("no valid signature")


# The resource -------------------------------------------------------------------------


def test_creating_a_webhook_shows_its_secret_once(hook_client, auth, make_hook):
    hook = make_hook()
    assert hook["id"] and hook["events"] == ["vote.created", "poll.closed"]
    assert hook["poll_id"] is None and hook["created_at"].endswith("Z")
    assert hook["secret"].startswith("whsec_")
    assert len(base64.b64decode(hook["secret"].removeprefix("whsec_"))) == 24
    read = hook_client.get(f"/api/v1/webhooks/{hook['id']}", headers=auth).get_json()
    assert "secret" not in read and read["url"] == hook["url"]
    listed = hook_client.get("/api/v1/webhooks", headers=auth)
    assert [found["id"] for found in listed.get_json()] == [hook["id"]]
    assert "secret" not in listed.get_json()[0]
    assert json.loads(listed.headers["X-Pagination"])["total"] == 1


def test_deleting_a_webhook_removes_it_and_its_deliveries(hook_client, auth, make_hook):
    hook = make_hook()
    assert hook_client.delete(f"/api/v1/webhooks/{hook['id']}", headers=auth).status_code == 204
    for path in ("", "/deliveries"):
        gone = hook_client.get(f"/api/v1/webhooks/{hook['id']}{path}", headers=auth)
        assert (gone.status_code, gone.get_json()["code"]) == (404, "not_found")


@pytest.mark.parametrize("body, field", [
    ({"events": ["vote.deleted"]}, "events.0"),
    ({"events": []}, "events"),
    ({"url": ""}, "url"),
    ({"secret": "mine"}, "secret"),
])
def test_webhook_fields_are_validated(hook_client, auth, receiver, body, field):
    response = hook_client.post("/api/v1/webhooks", headers=auth, json={
        "url": receiver.url, "events": ["vote.created"], **body})
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


def test_a_webhook_for_one_poll_needs_the_owners_poll(hook_client, auth, other_auth, make_poll,
                                                      receiver):
    poll = make_poll()
    body = {"url": receiver.url, "events": ["vote.created"], "poll_id": poll["id"]}
    assert hook_client.post("/api/v1/webhooks", headers=other_auth, json=body).status_code == 403
    missing = hook_client.post("/api/v1/webhooks", headers=auth, json={**body, "poll_id": "nope"})
    assert missing.status_code == 404
    assert hook_client.post("/api/v1/webhooks", headers=auth, json=body).status_code == 201


@pytest.mark.parametrize("method, path", [
    ("get", ""), ("delete", ""), ("get", "/deliveries"), ("post", "/test"),
])
def test_webhooks_are_the_owners_alone(hook_client, auth, other_auth, make_hook, method, path):
    hook = make_hook()
    send = getattr(hook_client, method)
    assert send(f"/api/v1/webhooks/{hook['id']}{path}").status_code == 401
    forbidden = send(f"/api/v1/webhooks/{hook['id']}{path}", headers=other_auth)
    assert (forbidden.status_code, forbidden.get_json()["code"]) == (403, "forbidden")
    missing = send(f"/api/v1/webhooks/wh_nope{path}", headers=auth)
    assert (missing.status_code, missing.get_json()["code"]) == (404, "not_found")
    assert hook_client.get("/api/v1/webhooks", headers=other_auth).get_json() == []
    assert hook_client.get("/api/v1/webhooks").status_code == 401


# The SSRF guard -------------------------------------------------------------------------

REFUSED_URLS = [
    "http://127.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://example.com/hook",  # plain http: refused by scheme, never resolved
    "https://localhost/hook",
    "https://127.0.0.1:8443/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/",
    "https://172.16.5.4/",
    "https://192.168.1.1/",
    "https://100.64.0.1/",
    "https://0.0.0.0/",
    "https://224.0.0.1/",
    "https://240.0.0.1/",
    "https://[::1]/",
    "https://[fe80::1]/",
    "https://[fc00::1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:169.254.169.254]/",
    "https://[2002:7f00:1::1]/",  # 6to4 carrying 127.0.0.1
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 carrying 169.254.169.254
    "https://[2606:4700::5efe:7f00:1]/",  # ISATAP carrying 127.0.0.1
    "https://hooks.example:22/",  # a port other than 443 and 8443: refused before DNS
    "ftp://127.0.0.1/",
    "https://user:pass@127.0.0.1/",
    "not a url",
]


@pytest.fixture
def no_connections(monkeypatch):
    """Fail the test if anything opens a connection."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_unsafe_urls_are_refused_without_the_development_setting(client, auth, url,
                                                                 no_connections):
    response = client.post("/api/v1/webhooks", headers=auth,
                           json={"url": url, "events": ["vote.created"]})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"]["url"]
    assert client.get("/api/v1/webhooks", headers=auth).get_json() == []


@pytest.mark.parametrize("address", [
    "8.8.8.8", "93.184.216.34", "2606:4700:4700::1111",
    "64:ff9b::808:808",  # NAT64 of a public address: how IPv6-only (DNS64) hosts reach it
    "2606:4700::200:5efe:808:808",  # ISATAP whose tunnel end is public
])
def test_public_addresses_pass_the_guard(address):
    assert webhook_sender.is_public(address)


@pytest.mark.parametrize("address", [
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:808:808::1",  # 6to4 of a public address: deprecated (RFC 7526), refused too
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo: the whole 2001::/32 is refused
    "2001:0:7f00:1:0:0:80ff:fffe",  # Teredo, server 127.0.0.1, client 127.0.0.1
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "::8.8.8.8",  # IPv4-compatible, even of a public address
    "::ffff:10.0.0.1",  # IPv4-mapped
    "64:ff9b::7f00:1",  # NAT64 well-known prefix, 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix, 169.254.169.254
    "64:ff9b::c0a8:1",  # NAT64 well-known prefix, 192.168.0.1
    "64:ff9b:1::808:808",  # NAT64 local-use prefix: not global
    "2606:4700::5efe:7f00:1",  # ISATAP under a public prefix, 127.0.0.1
    "2606:4700::200:5efe:a00:1",  # ISATAP (universal bit), 10.0.0.1
])
def test_ipv6_addresses_carrying_a_non_public_ipv4_are_refused(address):
    assert not webhook_sender.is_public(address)


@pytest.fixture
def public_dns(monkeypatch):
    """Resolve `hooks.example` to one public address, without asking DNS."""
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        if host != "hooks.example":  # Redis and PostgreSQL still connect
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


PORT_CASES = [
    ("https://hooks.example/hook", 201),
    ("https://hooks.example:443/hook", 201),
    ("https://hooks.example:8443/hook", 201),
    ("https://hooks.example:22/hook", 422),
    ("https://hooks.example:80/hook", 422),
    ("https://hooks.example:6379/hook", 422),
    ("https://hooks.example:8080/hook", 422),
    ("https://hooks.example:0/hook", 422),
]


@pytest.mark.parametrize("url, status", PORT_CASES)
def test_public_hosts_take_only_the_https_ports(hooks_app, hook_client, auth, public_dns,
                                                url, status):
    hooks_app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    response = hook_client.post("/api/v1/webhooks", headers=auth,
                                json={"url": url, "events": ["vote.created"]})
    assert response.status_code == status, response.get_json()
    if status == 422:
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["errors"]["url"] == [
            "The URL's port must be one of: 443, 8443."]


def test_the_allowed_ports_are_a_setting(hooks_app, hook_client, auth, public_dns):
    hooks_app.config.update(WEBHOOKS_ALLOW_PRIVATE=False, WEBHOOK_ALLOWED_PORTS={9443})

    def create(url):
        return hook_client.post("/api/v1/webhooks", headers=auth,
                                json={"url": url, "events": ["vote.created"]})

    assert create("https://hooks.example:9443/").status_code == 201
    refused = create("https://hooks.example/")
    assert refused.status_code == 422
    assert refused.get_json()["errors"]["url"] == ["The URL's port must be one of: 9443."]


def test_the_development_setting_allows_any_port(hooks_app, hook_client, auth, public_dns):
    response = hook_client.post("/api/v1/webhooks", headers=auth, json={
        "url": "https://hooks.example:6379/", "events": ["vote.created"]})
    assert response.status_code == 201


def test_the_port_is_checked_again_at_delivery_time(no_connections):
    with pytest.raises(webhook_sender.UnsafeUrl, match="port must be one of: 443"):
        webhook_sender.post("https://hooks.example:22/", b"{}", {}, allow_private=False,
                            allowed_ports={443}, timeout=1)


def test_the_guard_runs_again_at_delivery_time(hook_client, hooks_app, auth, make_hook,
                                               receiver):
    hook = make_hook()
    hooks_app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    hooks_app.config["WEBHOOK_RETRY_DELAYS"] = ()
    assert hook_client.post(f"/api/v1/webhooks/{hook['id']}/test",
                            headers=auth).status_code == 202
    settle(hooks_app, settled(hook_client, auth, hook))
    [delivery] = deliveries(hook_client, auth, hook)
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["error"].startswith("refused: The URL must use https")
    assert receiver.requests == []


# Signatures and events ------------------------------------------------------------------


def test_test_send_is_signed_per_standard_webhooks(hook_client, hooks_app, auth, make_hook,
                                                   receiver):
    hook = make_hook()
    response = hook_client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=auth)
    assert response.status_code == 202
    assert response.get_json()["status"] == "pending"
    settle(hooks_app, settled(hook_client, auth, hook))
    [request] = receiver.requests
    event = verify(hook["secret"], request["headers"], request["body"])
    assert event["type"] == "webhook.test" and event["data"]["webhook_id"] == hook["id"]
    assert request["headers"]["content-type"] == "application/json"
    [delivery] = deliveries(hook_client, auth, hook)
    assert delivery["message_id"] == request["headers"]["webhook-id"]
    assert delivery["status"] == "succeeded"
    assert [a["response_status"] for a in delivery["attempts"]] == [200]


def test_a_tampered_body_does_not_verify(hook_client, hooks_app, auth, make_hook, receiver):
    hook = make_hook()
    hook_client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=auth)
    settle(hooks_app, settled(hook_client, auth, hook))
    [request] = receiver.requests
    with pytest.raises(AssertionError):
        verify(hook["secret"], request["headers"], request["body"].replace(b"test", b"tEst"))


def test_votes_in_one_second_arrive_as_one_signed_batch(hook_client, hooks_app, auth,
                                                        make_hook, make_poll, vote, clock,
                                                        receiver):
    poll = make_poll(duplicate_check="none", allow_comment=True)
    hook = make_hook(events=["vote.created"])
    time.sleep(1 - time.time() % 1)  # both votes early in one wall-clock second
    first = vote(poll, context="/a", comment="Nice").get_json()["vote"]["id"]
    clock.advance(seconds=1)
    second = vote(poll, [poll["options"][1]["id"]]).get_json()["vote"]["id"]
    settle(hooks_app, settled(hook_client, auth, hook))
    [request] = receiver.requests
    event = verify(hook["secret"], request["headers"], request["body"])
    assert event["type"] == "vote.created" and event["data"]["poll_id"] == poll["id"]
    assert [v["id"] for v in event["data"]["votes"]] == [first, second]
    assert event["data"]["votes"][0]["context"] == "/a"
    assert event["data"]["votes"][0]["comment"] == "Nice"
    assert event["data"]["votes"][1]["choices"] == [poll["options"][1]["id"]]
    assert event["data"]["votes"][1]["created_at"].endswith("Z")


def test_a_ranked_vote_arrives_with_its_choices_in_the_voters_order(hook_client, hooks_app,
                                                                    auth, make_hook, make_poll,
                                                                    vote, receiver):
    poll = make_poll(kind="ranked", duplicate_check="none")
    hook = make_hook(events=["vote.created"])
    ranking = [poll["options"][2]["id"], poll["options"][0]["id"]]
    assert vote(poll, ranking).status_code == 201
    settle(hooks_app, settled(hook_client, auth, hook))
    [request] = receiver.requests
    event = verify(hook["secret"], request["headers"], request["body"])
    assert event["data"]["votes"][0]["choices"] == ranking


def test_votes_in_different_seconds_are_separate_deliveries(hook_client, hooks_app, auth,
                                                            make_hook, make_poll, vote,
                                                            receiver):
    poll = make_poll(duplicate_check="none")
    hook = make_hook(events=["vote.created"])
    vote(poll)
    time.sleep(1 - time.time() % 1)
    vote(poll)
    settle(hooks_app, settled(hook_client, auth, hook, count=2))
    assert sorted(len(e["data"]["votes"]) for e in receiver.events()) == [1, 1]


def test_a_poll_webhook_hears_only_its_poll_and_not_other_owners(hook_client, hooks_app, auth,
                                                                 other_auth, make_hook,
                                                                 make_poll, vote, receiver):
    watched, other = make_poll(duplicate_check="none"), make_poll(duplicate_check="none")
    hook = make_hook(events=["vote.created"], poll_id=watched["id"])
    strangers = hook_client.post("/api/v1/polls", headers=other_auth, json={
        "question": "Elsewhere?", "options": ["A", "B"], "duplicate_check": "none"}).get_json()
    vote(other)
    vote(strangers)
    vote(watched)
    settle(hooks_app, settled(hook_client, auth, hook))
    time.sleep(0.3)
    settle(hooks_app, settled(hook_client, auth, hook))
    assert [e["data"]["poll_id"] for e in receiver.events()] == [watched["id"]]


def test_closing_a_poll_fires_poll_closed_once(hook_client, hooks_app, auth, make_hook,
                                               make_poll, receiver):
    poll = make_poll()
    hook = make_hook(events=["poll.closed"])
    url = f"/api/v1/polls/{poll['id']}"
    assert hook_client.patch(url, json={"status": "closed"}, headers=auth).status_code == 200
    assert hook_client.patch(url, json={"status": "closed"}, headers=auth).status_code == 200
    settle(hooks_app, settled(hook_client, auth, hook))
    [request] = receiver.requests
    event = verify(hook["secret"], request["headers"], request["body"])
    assert event["type"] == "poll.closed"
    assert (event["data"]["poll_id"], event["data"]["reason"]) == (poll["id"], "manual")
    assert len(deliveries(hook_client, auth, hook)) == 1


def test_a_changed_vote_fires_vote_changed_with_the_vote_as_it_is_now(
        hook_client, hooks_app, auth, make_hook, make_poll, vote, receiver):
    poll = make_poll(allow_change=True, allow_comment=True)
    yes, _past, no = (option["id"] for option in poll["options"])
    hook = make_hook(events=["vote.changed"])
    cast = vote(poll, [yes]).get_json()["vote"]

    changed = hook_client.put(f"/api/v1/receipts/{cast['receipt']}",
                              json={"choices": [no], "comment": "Thought again"})

    assert changed.status_code == 200, changed.get_json()
    settle(hooks_app, settled(hook_client, auth, hook))
    [request] = receiver.requests  # the vote itself is not told: not subscribed
    event = verify(hook["secret"], request["headers"], request["body"])
    assert event["type"] == "vote.changed" and event["data"]["poll_id"] == poll["id"]
    [told] = event["data"]["votes"]
    assert (told["id"], told["choices"], told["comment"]) == (cast["id"], [no],
                                                              "Thought again")
    assert told["changed_at"] == changed.get_json()["vote"]["changed_at"]
    assert told["created_at"] == cast["created_at"]


def test_poll_closed_counts_the_votes_from_before_pollbox(hook_client, hooks_app, auth,
                                                          make_hook, make_poll, vote,
                                                          receiver):
    poll = make_poll()
    vote(poll)
    counts = {str(option["id"]): 10 for option in poll["options"]}
    assert hook_client.put(f"/api/v1/polls/{poll['id']}/baseline", headers=auth, json={
        "total_votes": 30, "options": counts, "source": "Before",
        "as_of": "2026-01-01T00:00:00Z"}).status_code == 200
    hook = make_hook(events=["poll.closed"])
    hook_client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"}, headers=auth)
    settle(hooks_app, settled(hook_client, auth, hook))
    [request] = receiver.requests
    data = verify(hook["secret"], request["headers"], request["body"])["data"]
    assert (data["total_votes"], data["baseline_votes"]) == (31, 30)


def test_the_vote_taking_the_last_place_fires_poll_closed_once(
        hook_client, hooks_app, auth, make_hook, make_poll, vote, receiver):
    poll = make_poll(max_votes=2)
    hook = make_hook(events=["poll.closed"])
    for number in range(4):
        vote(poll, ip=f"198.51.100.{number + 1}")

    settle(hooks_app, settled(hook_client, auth, hook))
    [request] = receiver.requests
    event = verify(hook["secret"], request["headers"], request["body"])
    assert event["type"] == "poll.closed"
    assert (event["data"]["poll_id"], event["data"]["reason"],
            event["data"]["total_votes"]) == (poll["id"], "full", 2)
    assert len(deliveries(hook_client, auth, hook)) == 1


def test_a_scheduled_close_fires_poll_closed_once(hook_client, hooks_app, auth, make_hook,
                                                  make_poll, clock, receiver):
    clock.frozen = datetime.now(UTC).replace(microsecond=0)
    closes_at = clock.frozen + timedelta(minutes=30)
    poll = make_poll(closes_at=closes_at.isoformat())
    hook = make_hook(events=["poll.closed"])
    webhooks.run_tick(hooks_app)
    assert deliveries(hook_client, auth, hook) == []
    clock.advance(hours=1)
    settle(hooks_app, settled(hook_client, auth, hook))
    webhooks.run_tick(hooks_app)
    [event] = receiver.events()
    assert (event["data"]["poll_id"], event["data"]["reason"]) == (poll["id"], "scheduled")
    assert event["data"]["closed_at"] == closes_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(deliveries(hook_client, auth, hook)) == 1


# Retries and the vote path ---------------------------------------------------------------


def test_three_failures_then_success_log_four_attempts(hook_client, hooks_app, auth,
                                                       make_hook, receiver):
    receiver.statuses = [500, 503, 404]
    hook = make_hook()
    hook_client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=auth)
    settle(hooks_app, settled(hook_client, auth, hook))
    [delivery] = deliveries(hook_client, auth, hook)
    assert delivery["status"] == "succeeded" and delivery["next_attempt_at"] is None
    attempts = delivery["attempts"]
    assert [a["number"] for a in attempts] == [1, 2, 3, 4]
    assert [a["response_status"] for a in attempts] == [500, 503, 404, 200]
    assert [a["error"] for a in attempts] == ["HTTP 500", "HTTP 503", "HTTP 404", None]
    assert all(a["attempted_at"].endswith("Z") for a in attempts)
    # Every retry is the same message, freshly signed.
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1
    for request in receiver.requests:
        verify(hook["secret"], request["headers"], request["body"])


def test_a_delivery_stops_when_its_retries_run_out(hook_client, hooks_app, auth, make_hook,
                                                   receiver):
    hooks_app.config["WEBHOOK_RETRY_DELAYS"] = (0, 0)
    receiver.statuses = [500] * 10
    hook = make_hook()
    hook_client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=auth)
    settle(hooks_app, settled(hook_client, auth, hook))
    [delivery] = deliveries(hook_client, auth, hook)
    assert delivery["status"] == "failed" and len(delivery["attempts"]) == 3


def test_an_unreachable_receiver_is_logged_as_an_error(hook_client, hooks_app, auth, make_hook,
                                                       receiver):
    hooks_app.config["WEBHOOK_RETRY_DELAYS"] = ()
    hook = make_hook()
    receiver.close()  # nothing listens on the port any more
    hook_client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=auth)
    settle(hooks_app, settled(hook_client, auth, hook))
    [attempt] = deliveries(hook_client, auth, hook)[0]["attempts"]
    assert attempt["response_status"] is None
    assert attempt["error"].startswith("ConnectionRefusedError")
    receiver.server = type("Closed", (), {"shutdown": lambda s: None,
                                          "server_close": lambda s: None})()


def test_the_default_retries_last_more_than_a_day():
    from service.infra.config import DEFAULT_WEBHOOK_RETRY_DELAYS

    assert sum(DEFAULT_WEBHOOK_RETRY_DELAYS) >= 24 * 3600
    assert list(DEFAULT_WEBHOOK_RETRY_DELAYS) == sorted(DEFAULT_WEBHOOK_RETRY_DELAYS)


def test_a_vote_never_waits_for_a_slow_receiver(hook_client, hooks_app, auth, make_hook,
                                                make_poll, vote, receiver):
    receiver.delay = 2.0
    poll = make_poll(duplicate_check="none")
    hook = make_hook(events=["vote.created"])
    started = time.monotonic()
    answers = [vote(poll).status_code for _ in range(5)]
    elapsed = time.monotonic() - started
    assert answers == [201] * 5
    assert elapsed < 1.0, f"5 votes took {elapsed:.2f} s"
    settle(hooks_app, settled(hook_client, auth, hook))
    assert sum(len(e["data"]["votes"]) for e in receiver.events()) == 5


@pytest.mark.parametrize("failure", [RuntimeError("a bug"), redis.ConnectionError("gone")])
def test_a_vote_succeeds_when_the_webhook_note_fails(hooks_app, auth, make_hook, make_poll,
                                                     vote, monkeypatch, caplog, failure):
    poll = make_poll(duplicate_check="none")
    make_hook(events=["vote.created"])

    def broken(*args, **kwargs):
        raise failure

    # The note is a step of the vote's count (count.lua); on a Redis Cluster its own call
    # (voting/redis_store.py).
    monkeypatch.setattr(CountCall, "note_webhook", broken)
    assert vote(poll).status_code == 201
    assert "could not note a vote for webhooks" in caplog.text
    tallies = hooks_app.test_client().get(f"/api/v1/polls/{poll['id']}/tallies").get_json()
    assert tallies["total_votes"] == 1  # counted all the same


def test_votes_are_not_noted_for_owners_without_webhooks(hooks_app, make_poll, vote):
    poll = make_poll(duplicate_check="none")
    assert vote(poll).status_code == 201
    with hooks_app.app_context():
        assert redis_handle().client.zcard("pollbox:{webhooks}:batches") == 0


def test_the_worker_command_sends_what_is_due(hook_client, hooks_app, auth, make_hook,
                                              receiver):
    hook = make_hook()
    hook_client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=auth)
    result = hooks_app.test_cli_runner().invoke(args=["webhooks", "worker", "--burst"])
    with hooks_app.app_context():
        shared = redis_handle().shared
    if not shared:
        assert result.exit_code != 0 and "REDIS_URL is not set" in result.output
        return
    assert result.exit_code == 0, result.output
    [delivery] = deliveries(hook_client, auth, hook)
    assert delivery["status"] == "succeeded"
    verify(hook["secret"], receiver.requests[0]["headers"], receiver.requests[0]["body"])


def test_webhook_answers_validate_against_the_openapi_spec(hook_client, hooks_app, auth,
                                                           make_hook, receiver):
    from tests.test_trust_api_spec import openapi_validator

    receiver.statuses = [500]
    hook = make_hook()
    hook_client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=auth)
    settle(hooks_app, settled(hook_client, auth, hook))
    openapi_validator(hook_client, "Webhook").validate(hook)
    validator = openapi_validator(hook_client, "Delivery")
    for delivery in deliveries(hook_client, auth, hook):
        validator.validate(delivery)
    paths = hook_client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"/api/v1/webhooks", "/api/v1/webhooks/{webhook_id}",
            "/api/v1/webhooks/{webhook_id}/deliveries",
            "/api/v1/webhooks/{webhook_id}/test"} <= set(paths)
