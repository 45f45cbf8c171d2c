"""The vote's Redis scripts of concurrent votes in one pipeline (Scripts, through
service/infra/batching.py): one round trip for the batch, each vote its own reply, as
if it had been sent alone, in the order the votes queued."""

from __future__ import annotations

import pytest

from service.infra import keys
from service.infra.redis import redis_handle
from service.infra.redis.lease import LEASE_MS
from service.infra.redis.scripts import AdmitCall, Admitted, CountCall, InFlight
from tests.batches import run_as_one_batch

pytestmark = pytest.mark.parametrize("stack", ["sqlite-fakeredis", "sqlite-redis"],
                                     indirect=True)

NOW_MS = 1_796_000_000_000
LEASE = "this-process"


def admit_call(poll: dict, ballot_id: str, voter: str) -> AdmitCall:
    return AdmitCall(poll_id=poll["id"], now_ms=NOW_MS, integrity_hour="2026120418",
                     retention_seconds=3600, ballot_id=ballot_id,
                     identities=(("ip", f"ip:{voter}"),), orphan_ms=45_000, lease=LEASE,
                     lease_ms=LEASE_MS)


@pytest.fixture
def round_trips(app, monkeypatch):
    """The Redis client's round trips: a command's name, a pipeline as PIPELINE."""
    sent: list[str] = []
    with app.app_context():
        client = redis_handle().client
    execute_command, pipeline = client.execute_command, client.pipeline

    def command(*args, **options):
        sent.append(str(args[0]))
        return execute_command(*args, **options)

    def counted_pipeline(*args, **options):
        pipe = pipeline(*args, **options)
        execute = pipe.execute

        def run(*a, **k):
            sent.append(f"PIPELINE of {len(pipe.command_stack)}")
            return execute(*a, **k)

        pipe.execute = run
        return pipe

    monkeypatch.setattr(client, "execute_command", command)
    monkeypatch.setattr(client, "pipeline", counted_pipeline)
    return sent


def test_concurrent_admissions_are_one_round_trip(app, make_poll, round_trips):
    poll = make_poll(duplicate_check="ip")
    with app.app_context():
        redis = redis_handle()
        redis.scripts.admit(admit_call(poll, "Earlier000000001", "earlier"))  # loads admit.lua
        calls = [admit_call(poll, f"Ballot{n:010d}", f"voter-{n}") for n in range(12)]
        round_trips.clear()

        outcomes = run_as_one_batch(redis.scripts._batched["admit"],
                                    [lambda call=call: redis.scripts.admit(call) for call in calls])

        assert outcomes == [Admitted()] * 12
        assert round_trips == ["PIPELINE of 12"]
        claims = [redis.client.get(keys.seen(poll["id"], f"ip:voter-{n}")) for n in range(12)]
        assert [claim.decode().split(":")[0] for claim in claims] == [
            call.ballot_id for call in calls]


def test_one_voter_twice_in_a_batch_is_admitted_once(app, make_poll):
    """The pipeline runs the scripts in the order the votes queued: the first claims
    the voter, the second meets its claim, in flight."""
    poll = make_poll(duplicate_check="ip")
    with app.app_context():
        redis = redis_handle()
        calls = [admit_call(poll, "First000000000001", "same"),
                 admit_call(poll, "Other000000000001", "other"),
                 admit_call(poll, "Second00000000001", "same")]

        outcomes = run_as_one_batch(redis.scripts._batched["admit"],
                                    [lambda call=call: redis.scripts.admit(call) for call in calls])

    assert outcomes[:2] == [Admitted(), Admitted()]
    assert outcomes[2] == InFlight(kind="ip", holder="First000000000001")


def test_counts_in_a_batch_each_get_their_own_tally(app, make_poll):
    poll = make_poll(duplicate_check="none")
    option = poll["options"][0]["id"]
    with app.app_context():
        redis = redis_handle()
        calls = [CountCall(poll_id=poll["id"], ballot_id=f"Ballot{n:010d}", at_ms=NOW_MS,
                           option_ids=(option,)).read() for n in range(5)]

        counted = run_as_one_batch(redis.scripts._batched["count"],
                                   [lambda call=call: redis.scripts.count(call) for call in calls])

    totals = sorted(dict(zip(c.tally[::2], c.tally[1::2], strict=True))[b"total"]
                    for c in counted)
    assert totals == [b"1", b"2", b"3", b"4", b"5"]  # in order, each after its own count


def test_a_batch_after_redis_lost_its_scripts_loads_them_again(app, make_poll, round_trips):
    poll = make_poll(duplicate_check="ip")
    with app.app_context():
        redis = redis_handle()
        redis.client.script_flush()
        calls = [admit_call(poll, f"Ballot{n:010d}", f"voter-{n}") for n in range(3)]
        round_trips.clear()

        outcomes = run_as_one_batch(redis.scripts._batched["admit"],
                                    [lambda call=call: redis.scripts.admit(call) for call in calls])

    assert outcomes == [Admitted()] * 3
    # NOSCRIPT for each: run again alone, the first loading the script again.
    assert round_trips[0] == "PIPELINE of 3" and "SCRIPT LOAD" in round_trips
