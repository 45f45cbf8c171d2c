"""The tallies stream at the Flask level (three stacks), and the hub's fan-out and
coalescing. Through real gunicorn: tests/e2e/test_stream.py."""

from __future__ import annotations

import json
import threading
import time

import pytest
from prometheus_client import REGISTRY

from service.tallies import stream

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
        assert vote(poll, [poll["options"][2]["id"]]).status_code == 201
        answered = time.monotonic()  # the update is due within a second of the vote
        name, data = next_event(chunks)
        assert time.monotonic() - answered < 1
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


def test_owner_and_public_streams_open_together_keep_their_own_results(app, make_poll, vote,
                                                                      auth):
    poll = make_poll(results_min_votes=10)
    vote(poll)
    done = threading.Event()

    def follow(headers: dict, first: list) -> None:
        # Its own thread, as in a server: a request context per stream.
        response, chunks = open_stream(app.test_client(), poll, headers=headers)
        try:
            first.append(next_event(chunks)[1])
            done.wait(STREAM_WAIT_SECONDS)
        finally:
            response.close()

    readers = []
    try:
        # Public, owner, public again, all open at once: answers are shared between the
        # streams of a poll, never between the owner's and the public's.
        for headers in ({}, auth, {}):
            first = []
            reader = threading.Thread(target=follow, args=(headers, first))
            reader.start()
            readers.append(reader)
            deadline = time.monotonic() + STREAM_WAIT_SECONDS
            while not first and time.monotonic() < deadline:
                time.sleep(0.01)
            assert first, "no first event"
            is_owner = headers == auth
            assert first[0]["suppressed"] is not is_owner
            assert first[0]["options"][0]["votes"] == (1 if is_owner else None)
    finally:
        done.set()
        for reader in readers:
            reader.join(STREAM_WAIT_SECONDS)


def test_stream_is_documented_in_the_openapi_spec(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/polls/{poll_id}/tallies/stream"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]


# -- the hub, without HTTP ----------------------------------------------------------


class FakePubSub:
    """Messages fed by the test; `get_message` waits for one like redis-py's does."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    def psubscribe(self, pattern):
        self.pattern = pattern
        self.messages.append({"type": "psubscribe", "channel": pattern.encode(), "data": 1})

    def get_message(self, ignore_subscribe_messages=False, timeout=0.0):
        deadline = time.monotonic() + timeout
        while not self.messages:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)
        return self.messages.pop(0)

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
    # In place: the wake-up every stream gets when the subscription begins is over.
    assert hub.wait_until_listening(STREAM_WAIT_SECONDS)
    assert pubsub.pattern == "pollbox:{*}:changes"
    for subscription in [*mine, other]:  # woken once when the subscription began
        subscription.changed.clear()
    pubsub.messages.append({"type": "pmessage", "channel": b"pollbox:{poll1}:changes",
                            "data": b"x"})
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


def test_open_streams_are_counted_in_the_metrics(hub_and_pubsub):
    hub, _ = hub_and_pubsub

    def gauge() -> float:
        return REGISTRY.get_sample_value("pollbox_sse_streams_open")

    before = gauge()
    events = [stream.follow(hub=hub, poll_id="poll1", render=lambda: "{}") for _ in range(3)]
    for opened in events:
        next(opened)
    assert gauge() == before + 3
    for opened in events:
        opened.close()
    assert gauge() == before


def test_quiet_stream_sends_a_heartbeat(hub_and_pubsub, monkeypatch):
    hub, _ = hub_and_pubsub
    monkeypatch.setattr(stream, "SSE_HEARTBEAT_SECONDS", 0.05)
    events = stream.follow(hub=hub, poll_id="poll1", render=lambda: "{}")
    next(events)
    assert next(events) == ": keepalive\n\n"
    events.close()


def test_heartbeat_interval_is_at_most_15_seconds():
    assert stream.SSE_HEARTBEAT_SECONDS <= 15


# -- one rendered answer per change, shared by the streams of a poll ---------------------


@pytest.fixture
def listening_hub():
    """A hub whose listener is in place (its first wake-up is over), on a settable clock."""
    pubsub = FakePubSub()
    now = {"t": 0.0}
    hub = stream.StreamHub(lambda: pubsub, clock=lambda: now["t"])
    keeper = hub.subscribe("keeper")  # starts the listener; keeps it running
    # Its wake-up of every stream is over: it would make a render the test counts stale.
    assert hub.wait_until_listening(STREAM_WAIT_SECONDS)
    yield hub, now
    hub.unsubscribe(keeper)


class Renders:
    """A render function per stream, as the view makes them; counts the calls of all."""

    def __init__(self, body: str = "v1") -> None:
        self.body = body
        self.calls = 0

    def for_stream(self):
        def render():
            self.calls += 1
            return self.body
        return render


def test_streams_of_a_poll_share_one_render_per_change(listening_hub):
    hub, _ = listening_hub
    streams = [hub.subscribe("poll1") for _ in range(50)]
    renders = Renders()
    assert {hub.render(s, renders.for_stream()) for s in streams} == {"v1"}
    assert renders.calls == 1
    renders.body = "v2"
    hub.notify("poll1")
    assert {hub.render(s, renders.for_stream()) for s in streams} == {"v2"}
    assert renders.calls == 2


def test_a_change_of_one_poll_keeps_the_shared_answer_of_another(listening_hub):
    hub, _ = listening_hub
    mine, other = hub.subscribe("poll1"), hub.subscribe("poll2")
    hub.render(mine, lambda: "mine v1")
    hub.render(other, lambda: "other v1")
    hub.notify("poll1")
    assert hub.render(mine, lambda: "mine v2") == "mine v2"
    assert hub.render(other, lambda: "other v2") == "other v1"
    hub.notify()  # the subscription was lost and restored: every poll is read again
    assert hub.render(other, lambda: "other v3") == "other v3"


def test_owner_and_public_streams_get_their_own_answers(listening_hub):
    hub, _ = listening_hub
    public, owner = hub.subscribe("poll1", variant=False), hub.subscribe("poll1", variant=True)
    assert hub.render(public, lambda: "suppressed") == "suppressed"
    assert hub.render(owner, lambda: "counts") == "counts"
    assert hub.render(hub.subscribe("poll1", variant=True), lambda: "other") == "counts"


def test_a_change_during_a_render_is_not_hidden_by_its_answer(listening_hub):
    hub, _ = listening_hub
    subscription = hub.subscribe("poll1")

    def render_while_a_vote_lands():
        hub.notify("poll1")  # published after this render read the tally
        return "before the vote"

    assert hub.render(subscription, render_while_a_vote_lands) == "before the vote"
    assert hub.render(subscription, lambda: "after the vote") == "after the vote"


def test_a_shared_answer_is_read_again_when_old_even_without_a_message(listening_hub):
    hub, now = listening_hub
    subscription = hub.subscribe("poll1")
    assert hub.render(subscription, lambda: "v1") == "v1"
    now["t"] += stream.SHARED_RENDER_MAX_AGE_SECONDS / 2
    assert hub.render(subscription, lambda: "v2") == "v1"
    now["t"] += stream.SHARED_RENDER_MAX_AGE_SECONDS / 2
    assert hub.render(subscription, lambda: "v2") == "v2"  # a lost message shows late


def test_streams_woken_together_wait_for_one_render(listening_hub):
    hub, _ = listening_hub
    streams = [hub.subscribe("poll1") for _ in range(20)]
    calls, answers = [], []

    def slow_render():
        calls.append(1)
        time.sleep(0.05)  # the others ask while the tally is being read
        return "v1"

    threads = [threading.Thread(target=lambda s=s: answers.append(hub.render(s, slow_render)))
               for s in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STREAM_WAIT_SECONDS)
    assert answers == ["v1"] * len(streams)
    assert len(calls) == 1


def test_a_poll_whose_streams_ended_is_read_anew_by_its_next_stream(listening_hub):
    hub, _ = listening_hub
    first = hub.subscribe("poll1")
    hub.render(first, lambda: "v1")
    hub.unsubscribe(first)  # nothing of the poll stays in the process
    assert hub.render(hub.subscribe("poll1"), lambda: "v2") == "v2"


def test_every_stream_of_a_burst_gets_the_same_event(listening_hub):
    hub, _ = listening_hub
    renders = Renders('{"n": 1}')
    followers = [stream.follow(hub=hub, poll_id="poll1", render=renders.for_stream())
                 for _ in range(10)]
    assert {next(f) for f in followers} == {
        f"retry: {stream.SSE_RETRY_MILLISECONDS}\n" + stream.event("tallies", '{"n": 1}')}
    renders.body = '{"n": 2}'
    hub.notify("poll1")
    assert {next(f) for f in followers} == {stream.event("tallies", '{"n": 2}')}
    assert renders.calls == 2
    for follower in followers:
        follower.close()


def test_a_closing_hub_ends_its_streams_at_once(hub_and_pubsub):
    """The process stops (SIGTERM): an open stream, waiting for a change, ends now
    instead of holding the process until its graceful timeout."""
    hub, _ = hub_and_pubsub
    events = stream.follow(hub=hub, poll_id="poll1", render=lambda: "{}")
    assert next(events).startswith("retry: ")
    ended = []

    def read():
        ended.append(list(events))  # runs until the stream ends

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.05)  # the stream waits for a change
    started = time.monotonic()
    hub.close()
    reader.join(STREAM_WAIT_SECONDS)
    assert ended == [[]] and time.monotonic() - started < 1
    assert hub.open_streams() == 0
