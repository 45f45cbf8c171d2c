"""A duplicate-check claim whose request died before its ballot reached the database
(a killed worker) stops blocking the voter once no request could still be carrying it."""

from __future__ import annotations

import pytest

from service import keys, voting
from service.extensions import redis_handle
from service.identity import keyed_hash
from tests.conftest import SECRET

VOTER_IP = "203.0.113.7"


@pytest.fixture
def ip_poll(make_poll):
    return make_poll(duplicate_check="ip")


def leave_orphan_claim(app, poll: dict, clock) -> None:
    """What a worker killed between claim and commit leaves behind: a claim, no ballot."""
    identity = f"ip:{keyed_hash(SECRET, poll['id'], 'ip', VOTER_IP)}"
    with app.app_context():
        claimed = voting.admit(redis_handle(), voting.Admission(
            poll_id=poll["id"], now=clock(), ballot_id="GhostBallot00000",
            claim_keys=[keys.seen(poll["id"], identity)], kinds=("ip",), window_ms=0))
    assert claimed == [b"admitted"]


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
