"""The tallies stream at the Flask level (three stacks), and the hub's fan-out and
coalescing. Through real gunicorn: tests/e2e/test_stream.py."""

from __future__ import annotations

import json
import threading
import time

import pytest

from service import stream

STREAM_WAIT_SECONDS = 5


def open_stream(client, poll: dict, **kwargs):
    response = client.get(f"/api/v1/polls/{poll['id']}/tallies/stream", buffered=False,
                          **kwargs)
    return response, iter(response.response)


def next_event(chunks) -> tuple[str | None, dict | None]:
    """The next event's name and JSON data, or (None, None) for a comment line."""
    chunk = next(chunks).decode()
    name = data = None
    for line in chunk.splitlines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
    return name, data


def test_stream_sends_the_tallies_at_once(client, make_poll, vote):
    poll = make_poll()
    vote(poll)
    response, chunks = open_stream(client, poll)
    try:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        name, data = next_event(chunks)
        assert name == "tallies"
        assert data == client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()
    finally:
        response.close()


def test_stream_sends_an_update_after_a_vote(app, client, make_poll, vote):
    poll = make_poll()
    response, chunks = open_stream(client, poll)
    try:
        next_event(chunks)
        assert app.extensions["pollbox.stream"].wait_until_listening(STREAM_WAIT_SECONDS)
        started = time.monotonic()
        assert vote(poll, [poll["options"][2]["id"]]).status_code == 201
        name, data = next_event(chunks)
        assert time.monotonic() - started < 1
        assert name == "tallies"
        assert data["total_votes"] == 1
        assert data["options"][2]["votes"] == 1
    finally:
        response.close()


def test_stream_of_hidden_results_is_refused_as_problem(client, make_poll):
    poll = make_poll(results="after_close")
    response = client.get(f"/api/v1/polls/{poll['id']}/tallies/stream")
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "results_hidden"


def test_stream_of_an_unknown_poll_is_404(client):
    response = client.get("/api/v1/polls/unknownpoll1/tallies/stream")
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_stream_keeps_suppression_below_min_votes(client, make_poll, vote):
    poll = make_poll(results_min_votes=10)
    vote(poll)
    response, chunks = open_stream(client, poll)
    try:
        _, data = next_event(chunks)
        assert data["suppressed"] is True
        assert data["total_votes"] == 1
        assert {o["votes"] for o in data["options"]} == {None}
    finally:
        response.close()


def test_stream_is_documented_in_the_openapi_spec(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/polls/{poll_id}/tallies/stream"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]


# -- the hub, without HTTP ----------------------------------------------------------


class FakePubSub:
    """Messages fed by the test; `get_message` waits for one like redis-py's does."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.ready = threading.Event()

    def psubscribe(self, pattern):
        self.pattern = pattern

    def get_message(self, ignore_subscribe_messages, timeout):
        self.ready.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.messages:
                return self.messages.pop(0)
            time.sleep(0.005)
        return None

    def close(self):
        pass


@pytest.fixture
def hub_and_pubsub():
    pubsub = FakePubSub()
    hub = stream.StreamHub(lambda: pubsub)
    return hub, pubsub


def test_one_subscription_wakes_every_stream_of_the_poll_only(hub_and_pubsub):
    hub, pubsub = hub_and_pubsub
    mine = [hub.subscribe("poll1") for _ in range(50)]
    other = hub.subscribe("poll2")
    assert pubsub.ready.wait(STREAM_WAIT_SECONDS)
    assert pubsub.pattern == "pollbox:{*}:changes"
    time.sleep(0.05)
    for subscription in [*mine, other]:  # woken once when the subscription began
        subscription.changed.clear()
    pubsub.messages.append({"channel": b"pollbox:{poll1}:changes", "data": b"x"})
    assert all(s.changed.wait(STREAM_WAIT_SECONDS) for s in mine)
    assert not other.changed.is_set()
    for subscription in [*mine, other]:
        hub.unsubscribe(subscription)
    assert hub.open_streams() == 0


def test_a_burst_of_changes_becomes_few_events(hub_and_pubsub, monkeypatch):
    hub, _ = hub_and_pubsub
    renders = []
    tally = {"n": 0}

    def render():
        renders.append(time.monotonic())
        return json.dumps(tally)

    events = stream.follow(hub=hub, poll_id="poll1", render=render)
    assert next(events).startswith("retry: ")
    got = []

    def read():
        got.append(next(events))

    for _ in range(100):
        tally["n"] += 1
        hub.notify("poll1")
    reader = threading.Thread(target=read)
    reader.start()
    reader.join(STREAM_WAIT_SECONDS)
    assert got and '"n": 100' in got[0]
    assert len(renders) == 2  # the first answer, then one for the whole burst
    events.close()
    assert hub.open_streams() == 0


def test_quiet_stream_sends_a_heartbeat(hub_and_pubsub, monkeypatch):
    hub, _ = hub_and_pubsub
    monkeypatch.setattr(stream, "SSE_HEARTBEAT_SECONDS", 0.05)
    events = stream.follow(hub=hub, poll_id="poll1", render=lambda: "{}")
    next(events)
    assert next(events) == ": keepalive\n\n"
    events.close()


def test_heartbeat_interval_is_at_most_15_seconds():
    assert stream.SSE_HEARTBEAT_SECONDS <= 15


def test_poll_cache_loads_once_per_interval_for_many_streams():
    now = {"t": 0.0}
    cache = stream.PollCache(15, clock=lambda: now["t"])
    loads = []

    def load():
        loads.append(1)
        time.sleep(0.05)  # others arrive while the first is loading
        return {"id": "p"}

    threads = [threading.Thread(target=cache.get, args=("p", load)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1
    now["t"] = 16
    cache.get("p", load)
    assert len(loads) == 2
