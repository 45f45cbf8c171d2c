"""A duplicate-check claim whose request died before its ballot reached the database
(a killed worker) stops blocking the voter once no request could still be carrying it."""

from __future__ import annotations

import pytest

from service.infra.clock import epoch_ms
from service.infra.identity import keyed_hash
from service.infra.redis import redis_handle
from service.infra.redis.scripts import AdmitCall, Admitted
from service.voting import cast as voting
from tests.conftest import SECRET

VOTER_IP = "203.0.113.7"


@pytest.fixture
def ip_poll(make_poll):
    return make_poll(duplicate_check="ip")


def leave_orphan_claim(app, poll: dict, clock) -> None:
    """What a worker killed between claim and commit leaves behind: a claim, no ballot."""
    identity = f"ip:{keyed_hash(SECRET, poll['id'], 'ip', VOTER_IP)}"
    with app.app_context():
        claimed = redis_handle().scripts.admit(AdmitCall(
            poll_id=poll["id"], now_ms=epoch_ms(clock()), integrity_hour="2026120300",
            retention_seconds=60, ballot_id="GhostBallot00000", identities=(("ip", identity),),
            orphan_ms=voting.ORPHAN_CLAIM_SECONDS * 1000))
    assert claimed == Admitted()


def test_a_fresh_claim_without_its_ballot_still_counts_as_a_vote_in_flight(
    app, ip_poll, vote, clock
):
    clock.frozen = clock()
    leave_orphan_claim(app, ip_poll, clock)
    clock.advance(seconds=voting.ORPHAN_CLAIM_SECONDS - 1)
    response = vote(ip_poll, ip=VOTER_IP)
    assert response.status_code == 409
    assert response.get_json()["code"] == "duplicate_vote"


def test_an_orphaned_claim_no_longer_blocks_the_voter(app, ip_poll, vote, clock, client):
    clock.frozen = clock()
    leave_orphan_claim(app, ip_poll, clock)
    clock.advance(seconds=voting.ORPHAN_CLAIM_SECONDS + 1)
    assert vote(ip_poll, ip=VOTER_IP).status_code == 201
    assert vote(ip_poll, ip=VOTER_IP).status_code == 409  # and now it is a real vote
    tallies = client.get(f"/api/v1/polls/{ip_poll['id']}/tallies").get_json()
    assert tallies["total_votes"] == 1


def test_a_claim_whose_ballot_is_recorded_blocks_however_old(ip_poll, vote, clock):
    clock.frozen = clock()
    assert vote(ip_poll, ip=VOTER_IP).status_code == 201
    clock.advance(days=365)
    assert vote(ip_poll, ip=VOTER_IP).status_code == 409
