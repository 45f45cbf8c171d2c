"""The process's tallies cache (service/tallies/recent.py): a read moments after another
makes no Redis call; what the process writes itself shows at once, another process's once
its change message is heard, and never later than TALLIES_CACHE_MS even when the message
is lost; `Cache-Control: no-cache` and the widget's voted mark read past it."""

from __future__ import annotations

import select
import socket
import threading
import time
import types

import pytest
import redis

from service.infra import keys
from service.infra.redis import redis_handle
from service.tallies import recent, stream
from tests.test_poll_cache import relabel

WAIT_SECONDS = 5.0
# The default, spelled out: the tests below count on 250 ms.
APP_CONFIG = {"TALLIES_CACHE_MS": 250}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the cache alone -----------------------------------------------------------------------


def test_an_entry_is_trusted_for_its_time_only():
    clock = Clock()
    tallies = recent.TallyCache(0.25, clock=clock)
    tallies.put("p", None, b"v1", [b"total", b"3"], tallies.begin())
    clock.now += 0.2
    assert tallies.get("p", None)[:2] == (b"v1", [b"total", b"3"])
    assert tallies.get("p", "ctx") is None  # a context is its own entry
    clock.now += 0.1
    assert tallies.get("p", None) is None


def test_a_change_forgets_its_poll_and_none_forgets_every_poll():
    tallies = recent.TallyCache(0.25, clock=Clock())
    for poll_id in ("p", "q", "r"):
        tallies.put(poll_id, None, b"v", [b"total", b"1"], tallies.begin())
    tallies.changed("p")
    assert tallies.get("p", None) is None
    assert tallies.get("q", None) is not None
    tallies.changed(None)
    assert tallies.get("q", None) is None and tallies.get("r", None) is None


def test_a_read_that_a_change_overtook_is_not_kept():
    tallies = recent.TallyCache(0.25, clock=Clock())
    begun = tallies.begin()  # the read from Redis starts...
    tallies.changed("p")  # ...a vote is heard before its answer is kept
    tallies.put("p", None, b"v", [b"total", b"1"], begun)
    assert tallies.get("p", None) is None
    tallies.put("q", None, b"v", [b"total", b"1"], begun)  # another poll's read stands
    assert tallies.get("q", None) is not None


def test_the_listener_is_wanted_only_shortly_after_an_entry():
    clock = Clock()
    tallies = recent.TallyCache(0.25, clock=clock)
    assert not tallies.wanted()
    tallies.put("p", None, b"v", [b"total", b"1"], tallies.begin())
    assert tallies.wanted()
    clock.now += recent.LISTEN_AFTER_LAST_ENTRY_SECONDS
    assert not tallies.wanted()


def test_bytes_waiting_on_the_subscription_s_socket_are_unheard():
    hub = stream.StreamHub(lambda: None)
    ours, redis_side = socket.socketpair()
    with ours, redis_side:
        hub._socket = ours
        assert not hub.unheard()
        redis_side.sendall(b">3\r\n$8\r\npmessage\r\n")  # a message on its way
        assert hub.unheard()
        ours.recv(64)  # the listener read it
        assert not hub.unheard()
    hub._socket = None  # the in-process stand-in: no other process publishes to it
    assert not hub.unheard()
    hub._socket = stream.UNKNOWN_TRANSPORT  # e.g. a cluster's subscription
    assert hub.unheard()


class SocketPubSub:
    """A subscription on a socket pair. The test writes one line per message on
    `redis_side` ("psubscribe" confirms the subscription, any other line is a change of
    that poll); `get_message` reads off the socket like redis-py (one read may bring
    several messages) and notes whether the hub counts the message in hand unheard."""

    def __init__(self) -> None:
        self.ours, self.redis_side = socket.socketpair()
        self.connection = types.SimpleNamespace(_sock=self.ours)
        self.hub: stream.StreamHub | None = None
        self.unheard_in_hand: list[bool] = []
        self._buffer = b""

    def psubscribe(self, pattern: str) -> None:
        pass  # on its way: confirmed when the test says so

    def get_message(self, ignore_subscribe_messages=False, timeout=0.0):
        if b"\n" not in self._buffer:
            if not select.select([self.ours], [], [], timeout)[0]:
                return None
            self._buffer += self.ours.recv(4096)
        line, self._buffer = self._buffer.split(b"\n", 1)
        self.unheard_in_hand.append(self.hub.unheard())
        if line == b"psubscribe":
            return {"type": "psubscribe", "channel": b"pollbox:{*}:changes", "data": 1}
        return {"type": "pmessage", "channel": keys.tally_changes(line.decode()).encode(),
                "data": b"vote"}

    def close(self) -> None:
        pass


@pytest.fixture
def listened():
    """A hub on a SocketPubSub, its watcher's calls, and the listener stopped after."""
    pubsub = SocketPubSub()
    hub = pubsub.hub = stream.StreamHub(lambda: pubsub)
    told: list[str | None] = []
    done = threading.Event()
    hub.watch(told.append, lambda: not done.is_set())
    yield hub, pubsub, told
    done.set()
    listener = hub._listener
    if listener is not None:
        listener.join(WAIT_SECONDS)
    pubsub.ours.close()
    pubsub.redis_side.close()


def test_the_subscription_is_trusted_once_redis_has_taken_it(listened):
    """A change published while PSUBSCRIBE is on its way is never heard: nothing may be
    trusted before Redis confirms the subscription."""
    hub, pubsub, told = listened
    time.sleep(0.1)
    assert not hub.listening
    pubsub.redis_side.sendall(b"psubscribe\n")
    assert hub.wait_until_listening(WAIT_SECONDS)
    assert told == [None]  # and what was kept before it is forgotten


def test_a_message_read_off_the_socket_is_unheard_until_told(listened):
    hub, pubsub, told = listened
    pubsub.redis_side.sendall(b"psubscribe\n")
    assert hub.wait_until_listening(WAIT_SECONDS)
    pubsub.redis_side.sendall(b"p1\np2\n")  # two messages, one read
    deadline = time.monotonic() + WAIT_SECONDS
    while "p2" not in told:
        assert time.monotonic() < deadline, told
        time.sleep(0.001)
    assert told == [None, "p1", "p2"]
    # The socket was empty while each was in hand: still unheard until told.
    assert pubsub.unheard_in_hand[-2:] == [True, True]
    assert not hub.unheard()


def test_a_vote_is_answered_once_its_message_is_on_subscribers_sockets(app, make_app,
                                                                        make_poll, vote,
                                                                        stack, monkeypatch):
    """Redis may answer the voter before it writes the message to other subscribers: the
    vote's answer waits for one more round trip, after which it has (Scripts.delivered)."""
    shared_redis_only(stack)
    poll = make_poll(duplicate_check="none")
    subscriber = redis.Redis.from_url(app.config["REDIS_URL"]).pubsub()
    subscriber.subscribe(keys.tally_changes(poll["id"]))
    assert subscriber.get_message(timeout=WAIT_SECONDS)["type"] == "subscribe"
    on_socket: list[bool] = []
    with app.app_context():
        client = redis_handle().client
    ping = client.ping

    def noted_ping():
        # Before it, the message may still be on its way (seen in CI: Redis answered the
        # script before it wrote to the subscriber); once PING is answered, it is there.
        answer = ping()
        on_socket.append(bool(select.select([subscriber.connection._sock], [], [], 0)[0]))
        return answer

    monkeypatch.setattr(client, "ping", noted_ping)
    assert vote(poll).status_code == 201
    assert on_socket == [True]  # published, then one round trip, then answered
    assert subscriber.get_message(timeout=WAIT_SECONDS)["type"] == "message"
    with make_app(TALLIES_CACHE_MS=0).app_context():
        assert not redis_handle().scripts._deliver  # with the cache off, no round trip
    subscriber.close()


# -- through the app -----------------------------------------------------------------------


@pytest.fixture
def reads(monkeypatch):
    """Counts each app's reads of a tally from Redis (lua/poll_and_tally.lua)."""
    counted: dict[int, int] = {}

    def count(app):
        with app.app_context():
            scripts = redis_handle().scripts
        counted.setdefault(id(app), 0)
        original = scripts.poll_and_tally

        def poll_and_tally(**kwargs):
            counted[id(app)] += 1
            return original(**kwargs)

        monkeypatch.setattr(scripts, "poll_and_tally", poll_and_tally)
        return lambda: counted[id(app)]

    return count


def total(client, poll, **kwargs) -> int:
    response = client.get(f"/api/v1/polls/{poll['id']}/tallies", **kwargs)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["total_votes"]


def warm(app, client, poll) -> None:
    """Read until the process keeps the poll's tallies: its listener is subscribed (a
    subscription starting forgets what was kept before it) and an entry was kept since."""
    total(client, poll)
    deadline = time.monotonic() + WAIT_SECONDS
    with app.app_context():
        while not stream.hub().listening:
            assert time.monotonic() < deadline, "the listener did not subscribe"
            time.sleep(0.01)
    total(client, poll)
    with app.app_context():
        assert recent.cache().get(poll["id"], None) is not None


def deaf(app, monkeypatch) -> Clock:
    """The app's listener hears nothing from now on (messages lost on the way), and its
    cache runs on a clock the test moves."""
    clock = Clock()
    with app.app_context():
        hub, tallies = stream.hub(), recent.cache()
    monkeypatch.setattr(hub, "notify", lambda poll_id=None: None)
    monkeypatch.setattr(hub, "unheard", lambda: False)  # nor does a message arrive
    # Entries kept so far were kept on the real clock: forget them, then use this one.
    tallies.changed(None)
    monkeypatch.setattr(tallies, "_clock", clock)
    return clock


def test_a_read_moments_after_another_makes_no_redis_call(app, client, make_poll, reads):
    poll = make_poll()
    warm(app, client, poll)
    redis_reads = reads(app)
    assert total(client, poll) == 0
    assert total(client, poll) == 0
    assert redis_reads() == 0
    assert total(client, poll, headers={"Cache-Control": "no-cache"}) == 0
    assert total(client, poll, headers={"Pragma": "no-cache"}) == 0
    assert redis_reads() == 2


def test_the_process_shows_its_own_votes_at_once_even_unheard(app, client, make_poll, vote,
                                                              monkeypatch):
    poll = make_poll(duplicate_check="none")
    warm(app, client, poll)
    deaf(app, monkeypatch)
    warm_again = total(client, poll)
    assert warm_again == 0
    assert vote(poll).status_code == 201
    assert total(client, poll) == 1  # read-your-writes: no message needed in-process
    assert vote(poll).status_code == 201
    assert total(client, poll) == 2


def test_a_poll_changed_by_the_process_shows_at_once(app, client, make_poll, auth,
                                                     monkeypatch):
    poll = make_poll()
    warm(app, client, poll)
    deaf(app, monkeypatch)
    tallies_url = f"/api/v1/polls/{poll['id']}/tallies"
    assert client.get(tallies_url).get_json()["options"][0]["label"] == "Yes, currently"
    with app.app_context():
        assert recent.cache().get(poll["id"], None) is not None  # kept, and nothing heard
    relabel(client, auth, poll, "Yes, now")
    assert client.get(tallies_url).get_json()["options"][0]["label"] == "Yes, now"


def test_switched_off_every_read_asks_redis(make_app, make_poll, reads):
    other = make_app(TALLIES_CACHE_MS=0)
    poll = make_poll()
    client = other.test_client()
    total(client, poll)
    redis_reads = reads(other)
    for _ in range(3):
        assert total(client, poll) == 0
    assert redis_reads() == 3


def shared_redis_only(stack: str) -> None:
    if stack == "sqlite-fakeredis":
        pytest.skip("the in-process Redis stand-in's messages are not shared between apps")


def test_another_process_s_vote_shows_once_heard(app, client, make_app, make_poll, stack):
    shared_redis_only(stack)
    poll = make_poll(duplicate_check="none")
    other = make_app().test_client()
    # The other app's first request (its connections, its scripts) before the clock runs.
    assert other.get(f"/api/v1/polls/{poll['id']}/tallies").status_code == 200
    warm(app, client, poll)
    started = time.monotonic()
    assert other.post(f"/api/v1/polls/{poll['id']}/votes",
                      json={"choices": [poll["options"][0]["id"]]}).status_code == 201
    while total(client, poll) != 1:
        assert time.monotonic() - started < WAIT_SECONDS
        time.sleep(0.001)
    # Heard, not waited out: well within the 250 ms an entry is trusted at most.
    assert time.monotonic() - started < app.config["TALLIES_CACHE_MS"] / 1000


def test_a_message_on_its_way_sends_the_read_to_redis(app, client, make_app, make_poll,
                                                      stack, monkeypatch):
    """The vote's message waits on the subscription's socket, unhandled (the listener is
    slow): the next read must not answer from memory."""
    shared_redis_only(stack)
    poll = make_poll(duplicate_check="none")
    warm(app, client, poll)
    with app.app_context():
        hub = stream.hub()
    monkeypatch.setattr(hub, "notify", lambda poll_id=None: None)  # never handled...
    other = make_app().test_client()
    assert other.post(f"/api/v1/polls/{poll['id']}/votes",
                      json={"choices": [poll["options"][0]["id"]]}).status_code == 201
    monkeypatch.setattr(hub, "unheard", lambda: True)  # ...but seen to have arrived
    assert total(client, poll) == 1


def test_a_lost_message_shows_no_later_than_the_trust_time(app, client, make_app, make_poll,
                                                           stack, monkeypatch):
    shared_redis_only(stack)
    poll = make_poll(duplicate_check="none")
    warm(app, client, poll)
    clock = deaf(app, monkeypatch)
    assert total(client, poll) == 0  # kept on the test's clock
    other = make_app().test_client()
    assert other.post(f"/api/v1/polls/{poll['id']}/votes",
                      json={"choices": [poll["options"][0]["id"]]}).status_code == 201
    assert total(client, poll) == 0  # the message was lost: the entry still stands...
    clock.now += app.config["TALLIES_CACHE_MS"] / 1000 + 0.001
    assert total(client, poll) == 1  # ...for TALLIES_CACHE_MS at most


def test_the_widget_s_voted_mark_reads_past_the_cache(app, client, make_app, make_poll,
                                                      stack, monkeypatch):
    shared_redis_only(stack)
    poll = make_poll(duplicate_check="none")
    warm(app, client, poll)
    deaf(app, monkeypatch)
    assert total(client, poll) == 0  # kept on the test's clock
    # A browser without JavaScript votes through another process...
    voter = make_app().test_client(use_cookies=False)  # the mark binds its address
    page = voter.get(f"/polls/{poll['id']}/widget").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    posted = voter.post(f"/polls/{poll['id']}/widget", data={
        "choice": [str(poll["options"][0]["id"])], "csrf_token": token})
    assert posted.status_code == 303
    assert total(client, poll) == 0  # this process heard nothing: its entry stands
    # ...and lands on this one: its own vote shows all the same.
    back = app.test_client(use_cookies=False).get(posted.headers["Location"])
    assert back.status_code == 200
    assert "Total votes: 1" in back.get_data(as_text=True)
    assert total(client, poll) == 1  # what the fresh read found is kept from then on
