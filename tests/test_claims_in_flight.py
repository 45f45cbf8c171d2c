"""A voter met by a claim whose ballot is not known committed: `vote_pending` while the
vote that claimed them is in flight, admitted at once when its process is gone and its
ballot absent, `duplicate_vote` only when the ballot exists (service/voting/cast.py)."""

from __future__ import annotations

import pytest

from service.infra import keys
from service.infra.clock import epoch_ms
from service.infra.identity import keyed_hash
from service.infra.redis import redis_handle
from service.infra.redis.lease import LEASE_MS
from service.infra.redis.scripts import AdmitCall, Admitted
from service.voting import cast as voting
from tests.conftest import SECRET

VOTER_IP = "203.0.113.7"
GHOST = "GhostBallot00000"
GHOST_LEASE = "ghost-process"


@pytest.fixture
def ip_poll(make_poll):
    return make_poll(duplicate_check="ip")


def identity_of(poll: dict, ip: str = VOTER_IP) -> str:
    return f"ip:{keyed_hash(SECRET, poll['id'], 'ip', ip)}"


def leave_claim(app, poll: dict, clock, *, alive: bool) -> None:
    """What a vote leaves between its claim and its commit: a claim naming its process,
    whose lease is set while the process lives."""
    with app.app_context():
        redis = redis_handle()
        claimed = redis.scripts.admit(AdmitCall(
            poll_id=poll["id"], now_ms=epoch_ms(clock()), integrity_hour="2026120300",
            retention_seconds=60, ballot_id=GHOST, identities=(("ip", identity_of(poll)),),
            orphan_ms=voting.ORPHAN_CLAIM_SECONDS * 1000, lease=GHOST_LEASE,
            lease_ms=LEASE_MS))
        assert claimed == Admitted()
        assert redis.client.exists(keys.lease(poll["id"], GHOST_LEASE))  # set with the claim
        if not alive:
            redis.client.delete(keys.lease(poll["id"], GHOST_LEASE))  # the process died


def integrity(client, poll: dict, auth) -> dict:
    response = client.get(f"/api/v1/polls/{poll['id']}/integrity", headers=auth)
    assert response.status_code == 200
    return response.get_json()["totals"]


def test_a_vote_in_flight_makes_the_voters_retry_pending_not_a_duplicate(
    app, ip_poll, vote, clock, client, auth
):
    clock.frozen = clock()
    leave_claim(app, ip_poll, clock, alive=True)

    response = vote(ip_poll, ip=VOTER_IP)

    assert response.status_code == 409
    assert response.get_json()["code"] == "vote_pending"
    assert response.headers["Retry-After"] == "1"
    assert response.mimetype == "application/problem+json"
    totals = integrity(client, ip_poll, auth)
    assert totals["rejected"]["vote_pending"] == 1
    assert totals["rejected"]["duplicate_vote"]["total"] == 0


def test_a_claim_whose_process_is_gone_is_released_at_once(
    app, ip_poll, vote, clock, client, auth
):
    clock.frozen = clock()
    leave_claim(app, ip_poll, clock, alive=False)

    assert vote(ip_poll, ip=VOTER_IP).status_code == 201
    again = vote(ip_poll, ip=VOTER_IP)  # and now it is a real vote
    assert again.status_code == 409 and again.get_json()["code"] == "duplicate_vote"
    tallies = client.get(f"/api/v1/polls/{ip_poll['id']}/tallies").get_json()
    assert tallies["total_votes"] == 1
    totals = integrity(client, ip_poll, auth)
    assert totals["released_dead_claims"] == 1
    assert totals["accepted"] == 1
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "pollbox_dead_claims_released_total" in metrics


def test_a_claim_older_than_any_request_is_settled_even_with_its_process_alive(
    app, ip_poll, vote, clock
):
    clock.frozen = clock()
    leave_claim(app, ip_poll, clock, alive=True)
    clock.advance(seconds=voting.ORPHAN_CLAIM_SECONDS + 1)
    assert vote(ip_poll, ip=VOTER_IP).status_code == 201


def test_a_claim_whose_ballot_is_recorded_is_a_duplicate_and_marked_committed(
    app, ip_poll, vote, clock
):
    clock.frozen = clock()
    assert vote(ip_poll, ip=VOTER_IP).status_code == 201
    seen = keys.seen(ip_poll["id"], identity_of(ip_poll))
    with app.app_context():
        client = redis_handle().client
        claim = client.get(seen).decode()
        assert claim.endswith(":-")  # the count marked it committed
        # As a count that never reached Redis leaves it: still naming its process.
        client.set(seen, claim[:-1] + "gone")

    clock.advance(days=365)
    refused = vote(ip_poll, ip=VOTER_IP)

    assert refused.status_code == 409 and refused.get_json()["code"] == "duplicate_vote"
    with app.app_context():
        assert redis_handle().client.get(seen).decode() == claim


def test_a_claim_written_before_owners_were_kept_is_in_flight_while_young(
    app, ip_poll, vote, clock
):
    clock.frozen = clock()
    seen = keys.seen(ip_poll["id"], identity_of(ip_poll))
    with app.app_context():
        redis_handle().client.set(seen, f"{GHOST}:0:{epoch_ms(clock())}")
    assert vote(ip_poll, ip=VOTER_IP).get_json()["code"] == "vote_pending"
    clock.advance(seconds=voting.ORPHAN_CLAIM_SECONDS + 1)
    assert vote(ip_poll, ip=VOTER_IP).status_code == 201


def test_the_form_without_javascript_asks_the_voter_to_try_again_in_a_moment(
    app, ip_poll, clock
):
    from tests.widgets.test_widget import follow, form_vote

    clock.frozen = clock()
    leave_claim(app, ip_poll, clock, alive=True)
    browser = app.test_client()

    response = form_vote(browser, ip_poll, ip=VOTER_IP)

    assert "error=vote_pending" in response.headers["Location"]
    page = follow(browser, response, ip=VOTER_IP).get_data(as_text=True)
    assert "Your vote is being recorded. Please try again in a moment." in page
    assert 'id="pb-form"' in page  # the form again, to try once more


def test_the_process_keeps_the_lease_of_each_poll_it_has_votes_in_flight_in(app, ip_poll):
    with app.app_context():
        redis = redis_handle()
        lease = redis.lease
        key = keys.lease(ip_poll["id"], lease.token)
        with lease.voting_in(ip_poll["id"]), lease.voting_in(ip_poll["id"]):
            lease.refresh(redis)
            assert 0 < redis.client.pttl(key) <= LEASE_MS
        assert lease.polls_in_flight() == []
        redis.client.delete(key)
        lease.refresh(redis)  # nothing in flight: nothing kept alive
        assert not redis.client.exists(key)
