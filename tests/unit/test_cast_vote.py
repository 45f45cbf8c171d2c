"""The vote use-case on fakes: every outcome of its admission, its record and its count,
with no app, no Redis and no database (tests/unit/fakes.py)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from service.infra.clock import epoch_ms
from service.infra.errors import (
    DuplicateVote,
    NotFound,
    OriginNotAllowed,
    PollClosed,
    PollFull,
    ValidationFailed,
    VotePending,
)
from service.infra.redis.scripts import (
    Admitted,
    Duplicate,
    Full,
    InFlight,
    KeyAnswered,
    KeyHeld,
    KeyMismatch,
    KeyPending,
    Limited,
    Stale,
    Unresolved,
)
from service.voting.ballot import Ballot, new_receipt
from service.voting.cast import Accepted, Refused
from service.voting.ratelimits import RateLimited
from tests.unit.fakes import (
    NOW,
    SECRET,
    FakeBallots,
    FakeScripts,
    a_poll,
    a_voting,
    facts,
    stale,
)

BALLOT = Ballot(choices=(11,))
NOW_MS = epoch_ms(NOW)


def cast(voting, ballot: Ballot = BALLOT, **request):
    return voting.cast(poll_id="UnitPoll0001", ballot=ballot, facts=facts(**request))


def refusal(result) -> Exception:
    assert isinstance(result, Refused), result
    return result.error


def a_duplicate(*, counted: bool = True, holder: str = "Other000000000001"):
    return Duplicate(kind="ip", holder=holder, counted=counted)


# -- admitted ---------------------------------------------------------------------------


def test_an_admitted_vote_is_recorded_counted_and_answered_with_the_tally_counted():
    voting = a_voting(scripts=FakeScripts(tally=[b"total", b"1", b"o:11", b"1"]))

    result = cast(voting)

    assert isinstance(result, Accepted) and not result.replayed
    [row] = voting.ballots.rows.values()
    assert result.answer["vote"]["id"] == row["id"]
    assert row["option_ids"] == (11,)
    assert result.answer["tallies"]["total_votes"] == 1
    assert voting.tallies.reads == 0  # the count answered the tally
    [counted] = voting.scripts.counted
    assert counted.ballot_id == row["id"]
    assert voting.scripts.outcomes == []  # accepted: counted inside the count call


def test_one_vote_ever_records_the_voters_claims_with_the_ballot():
    voting = a_voting()

    cast(voting)

    assert sorted(identity.split(":")[0] for identity in voting.ballots.claims) == ["cookie",
                                                                                  "ip"]


def test_the_tally_is_read_when_the_count_could_not_say():
    voting = a_voting(scripts=FakeScripts(tally=[]))

    result = cast(voting)

    assert voting.tallies.reads == 1
    assert result.answer["tallies"]["total_votes"] == 7


def test_hidden_results_are_neither_read_nor_answered():
    voting = a_voting(poll=a_poll(results="after_close"))

    result = cast(voting)

    assert result.answer["tallies"] is None
    assert voting.tallies.reads == 0


# -- refused by admit.lua -----------------------------------------------------------------


def test_a_duplicate_is_refused_naming_the_identity_seen_and_counted_by_the_script():
    voting = a_voting(scripts=FakeScripts().answer(a_duplicate(counted=True)))

    error = refusal(cast(voting))

    assert isinstance(error, DuplicateVote) and error.identity == "ip"
    assert voting.ballots.rows == {}
    assert voting.scripts.outcomes == []  # the script counted it


def test_a_poll_whose_tally_is_full_is_refused_by_the_script_claiming_nothing():
    voting = a_voting(poll=a_poll(max_votes=3), scripts=FakeScripts().answer(Full()))

    error = refusal(cast(voting))

    assert isinstance(error, PollFull) and error.code == "poll_full"
    assert voting.scripts.admitted[0].max_votes == 3
    assert voting.ballots.rows == {}
    assert voting.scripts.outcomes == []  # the script counted it


def test_the_last_place_is_the_databases_to_give_and_its_vote_closes_the_poll():
    voting = a_voting(poll=a_poll(max_votes=2, duplicate_check="none"),
                      ballots=FakeBallots(max_votes=2))

    assert isinstance(cast(voting, address="192.0.2.1"), Accepted)
    assert voting.polls.closed_full_at == []
    assert isinstance(cast(voting, address="192.0.2.2"), Accepted)
    assert voting.polls.closed_full_at == [NOW]
    error = refusal(cast(voting, address="192.0.2.3"))
    assert isinstance(error, PollFull)
    assert len(voting.ballots.rows) == 2


def test_a_copy_of_a_full_poll_refuses_with_poll_full_not_poll_closed():
    full = a_poll(max_votes=1, closed_at=NOW, closed_reason="full")
    voting = a_voting(poll=full)

    assert isinstance(refusal(cast(voting)), PollFull)
    assert voting.scripts.outcomes == ["poll_closed"]  # counted as a closed poll


def test_a_duplicate_the_script_left_uncounted_is_counted_once_decided():
    # With an Idempotency-Key, a duplicate may still be the key's own vote: the script
    # leaves it to the use-case, which counts it once it is a refusal.
    voting = a_voting(scripts=FakeScripts().answer(a_duplicate(counted=False)))

    error = refusal(cast(voting, key="k-1"))

    assert isinstance(error, DuplicateVote)
    assert voting.scripts.outcomes == ["duplicate_vote:ip"]


def test_a_claim_of_a_dead_vote_without_its_ballot_is_released_and_the_voter_admitted():
    ghost = "Ghost00000000001"
    dead = Unresolved(kind="ip", holder=ghost, claim=f"{ghost}:0:{NOW_MS - 5000}:gone")
    voting = a_voting(scripts=FakeScripts().answer(dead, Admitted()))

    result = cast(voting)

    assert isinstance(result, Accepted)
    [(identities, holder)] = voting.scripts.released
    assert holder == ghost and len(identities) == 2
    assert voting.scripts.released_dead == [ghost]  # counted as a dead vote's claims
    assert voting.scripts.admitted[1].limits == ()  # the attempt was counted once
    assert len(voting.ballots.rows) == 1


def test_a_claim_of_a_vote_in_flight_is_vote_pending_never_a_duplicate():
    voting = a_voting(scripts=FakeScripts().answer(InFlight(kind="ip", holder="Alive0000000001")))

    error = refusal(cast(voting))

    assert isinstance(error, VotePending) and error.identity == "ip"
    assert error.status == 409 and error.headers["Retry-After"] == "1"
    assert voting.scripts.released == [] and voting.ballots.rows == {}
    assert voting.scripts.outcomes == ["vote_pending"]


def test_a_dead_vote_whose_ballot_is_recorded_is_a_duplicate_and_its_claim_confirmed():
    voted = "Voted00000000001"
    ballots = FakeBallots(rows={voted: {"idempotency_hash": None}})
    unsure = Unresolved(kind="ip", holder=voted, claim=f"{voted}:0:{NOW_MS - 3_600_000}")
    voting = a_voting(scripts=FakeScripts().answer(unsure), ballots=ballots)

    assert isinstance(refusal(cast(voting)), DuplicateVote)
    assert voting.scripts.released == []
    assert voting.scripts.confirmed == [unsure.claim]
    assert voting.scripts.outcomes == ["duplicate_vote:ip"]


def test_a_claim_released_as_dead_while_its_request_lived_still_gives_one_ballot():
    # The stalled request committed after the release: the database's claim rows refuse
    # the second ballot, and the voter is told the truth, a ballot exists.
    ballots = FakeBallots()
    first = a_voting(ballots=ballots)
    assert isinstance(cast(first), Accepted)
    ghost = next(iter(ballots.rows))
    second = a_voting(ballots=ballots, scripts=FakeScripts().answer(
        Unresolved(kind="ip", holder="NotYet0000000001", claim="NotYet0000000001:0:1:x")))

    assert isinstance(refusal(cast(second)), DuplicateVote)
    assert list(ballots.rows) == [ghost]


def test_each_identity_may_meet_one_dead_claim():
    ghosts = [Unresolved(kind=kind, holder=f"Ghost{kind:0>11}", claim=f"Ghost{kind:0>11}:0:1:x")
              for kind in ("cookie", "ip")]
    voting = a_voting(scripts=FakeScripts().answer(*ghosts, Admitted()))

    assert isinstance(cast(voting), Accepted)
    assert voting.scripts.released_dead == [ghost.holder for ghost in ghosts]


def test_the_count_marks_the_voters_claims_committed():
    voting = a_voting()

    cast(voting)

    [counted] = voting.scripts.counted
    _keys, args = counted.keys_and_args()
    claim = voting.scripts.admitted[0].claim
    assert args[args.index("confirm"):args.index("confirm") + 4] == [
        "confirm", 2, claim, claim.rsplit(":", 1)[0] + ":-"]


def test_over_the_rate_limit_is_refused_with_retry_after():
    voting = a_voting(scripts=FakeScripts().answer(Limited(retry_after_ms=1500)))

    error = refusal(cast(voting))

    assert isinstance(error, RateLimited)
    assert error.headers["Retry-After"] == "2"
    assert voting.scripts.outcomes == []  # admit.lua counted it
    assert len(voting.scripts.admitted) == 1  # and counted the attempt against the limit


# -- the poll cached per process ----------------------------------------------------------


def test_a_stale_cached_poll_is_voted_in_again_as_it_is_now():
    poll = a_poll()
    voting = a_voting(poll=poll, cached=stale(poll), scripts=FakeScripts().answer(Stale()))

    result = cast(voting)

    assert isinstance(result, Accepted)
    first, second = voting.scripts.admitted
    assert first.version == "v0" and second.version is None  # checked, then known fresh
    assert voting.polls.loads == 1


def test_a_cached_copy_never_refuses_alone():
    poll = a_poll()
    closed_copy = stale(poll, closed_at=NOW - timedelta(hours=1))
    voting = a_voting(poll=poll, cached=closed_copy)

    result = cast(voting)

    assert isinstance(result, Accepted)  # the poll was reopened since
    assert voting.polls.loads == 1
    assert voting.scripts.outcomes == []


def test_a_current_cached_copy_is_checked_inside_the_admission():
    poll = a_poll()
    voting = a_voting(poll=poll, cached=poll)

    assert isinstance(cast(voting), Accepted)
    assert voting.polls.loads == 0
    assert voting.scripts.admitted[0].version == "v1"


# -- Idempotency-Key ------------------------------------------------------------------------


def kept_entry(ballot_id: str) -> dict[bytes, bytes]:
    answer = {"vote": {"id": ballot_id, "created_at": "2026-12-03T11:59:00Z"}, "tallies": None}
    return {b"body": b"x", b"answer": json.dumps(answer).encode()}


def test_an_answered_key_gets_its_first_answer_again_with_its_receipt():
    voting = a_voting(scripts=FakeScripts().answer(KeyAnswered(kept_entry("First00000000001"))))

    result = cast(voting, key="k-1")

    assert isinstance(result, Accepted) and result.replayed
    assert result.answer["vote"]["id"] == "First00000000001"
    assert result.answer["vote"]["receipt"] == new_receipt(
        secret=SECRET, poll_id="UnitPoll0001", ballot_id="First00000000001",
        idempotency_key="k-1")
    assert voting.ballots.rows == {}


def test_a_pending_key_waits_for_the_first_answer():
    scripts = FakeScripts().answer(KeyPending())
    scripts.key_states.extend([KeyPending(), KeyAnswered(kept_entry("First00000000001"))])
    voting = a_voting(scripts=scripts)

    result = cast(voting, key="k-1")

    assert result.replayed and result.answer["vote"]["id"] == "First00000000001"
    assert voting.ballots.rows == {}


def test_a_key_given_up_by_its_first_request_is_held_and_the_vote_goes_on():
    scripts = FakeScripts(kept=False).answer(KeyPending(), Admitted())
    scripts.key_states.append(KeyHeld())
    voting = a_voting(scripts=scripts)

    result = cast(voting, key="k-1")

    assert isinstance(result, Accepted) and not result.replayed
    again = voting.scripts.admitted[1]
    assert again.key is None and again.limits == ()
    [kept] = voting.scripts.finished  # kept after the count, without the receipt
    assert json.loads(kept)["vote"]["id"] == result.answer["vote"]["id"]
    assert "receipt" not in json.loads(kept)["vote"]


def test_a_key_used_with_another_body_is_refused_naming_the_header():
    voting = a_voting(scripts=FakeScripts().answer(KeyMismatch()))

    error = refusal(cast(voting, key="k-1"))

    assert isinstance(error, ValidationFailed)
    assert list(error.errors) == ["Idempotency-Key"]


def test_a_malformed_key_is_refused_before_anything_is_claimed():
    voting = a_voting()

    error = refusal(cast(voting, key="k" * 256))

    assert list(error.errors) == ["Idempotency-Key"]
    assert all(call.identities == () for call in voting.scripts.admitted)


def test_a_refusal_of_a_recorded_keys_retry_is_its_first_answer():
    # The poll closed after the key's vote was recorded, and Redis forgot the answer.
    first = a_voting()
    recorded = cast(first, key="k-1")
    voting = a_voting(poll=a_poll(closed_at=NOW), ballots=first.ballots)
    voting.scripts.key_states.append(KeyHeld())

    result = cast(voting, key="k-1")

    assert result.replayed and result.answer["vote"] == recorded.answer["vote"]
    assert len(voting.scripts.aborted) == 1  # the key, held to look, is given up


# -- without Redis ----------------------------------------------------------------------------


def test_without_redis_votes_are_limited_in_this_process():
    voting = a_voting(poll=a_poll(duplicate_check="none"), scripts=FakeScripts(down=True),
                      limits="2 per minute")

    results = [cast(voting) for _ in range(3)]

    assert [type(result) for result in results] == [Accepted, Accepted, Refused]
    assert isinstance(results[2].error, RateLimited)


def test_without_redis_a_windowed_poll_is_judged_from_the_recorded_ballots():
    voting = a_voting(poll=a_poll(vote_window_seconds=3600), scripts=FakeScripts(down=True))

    assert isinstance(cast(voting), Accepted)
    error = refusal(cast(voting))

    assert isinstance(error, DuplicateVote) and error.identity == "cookie"


def test_without_redis_a_cached_copy_is_not_trusted():
    poll = a_poll()
    voting = a_voting(poll=poll, cached=poll, scripts=FakeScripts(down=True))

    assert isinstance(cast(voting), Accepted)
    assert voting.polls.loads == 1


# -- the record ---------------------------------------------------------------------------------


def test_a_voter_redis_forgot_is_refused_by_the_database():
    voting = a_voting()
    assert isinstance(cast(voting), Accepted)
    voting.scripts.admissions.clear()  # Redis lost every claim: admits again

    error = refusal(cast(voting))

    assert isinstance(error, DuplicateVote) and error.identity in ("cookie", "ip")
    assert len(voting.ballots.rows) == 1
    assert voting.scripts.released[-1][1] != next(iter(voting.ballots.rows))


def test_a_failed_commit_frees_the_claims_and_the_key_and_counts_nothing():
    voting = a_voting(ballots=FakeBallots(fail_with=RuntimeError("database gone")))

    with pytest.raises(RuntimeError):
        cast(voting, key="k-1")

    assert len(voting.scripts.released) == 1
    assert len(voting.scripts.aborted) == 1
    assert voting.scripts.counted == []


# -- refused before the admission -------------------------------------------------------------


@pytest.mark.parametrize(("poll", "request_", "error", "outcome"), [
    (a_poll(closed_at=NOW), {}, PollClosed, "poll_closed"),
    (a_poll(allowed_origins=("https://a.example",)), {"origin": "https://b.example"},
     OriginNotAllowed, "origin_not_allowed"),
], ids=["closed", "other-site"])
def test_an_attempt_refused_early_counts_towards_the_limit_and_its_outcome(poll, request_,
                                                                           error, outcome):
    voting = a_voting(poll=poll)

    result = cast(voting, **request_)

    assert isinstance(refusal(result), error)
    [counted] = voting.scripts.admitted
    assert counted.limits and counted.identities == ()  # the limit only
    assert voting.scripts.outcomes == ([outcome] if outcome else [])


def test_a_vote_in_an_unknown_poll_is_refused_before_redis_is_touched():
    voting = a_voting()
    voting.polls.current = None

    assert isinstance(refusal(cast(voting)), NotFound)
    assert voting.polls.loads == 1  # the 404 is not looked up a second time
    assert isinstance(refusal(voting.count_unparsed(poll_id="nope", facts=facts())),
                      NotFound)
    assert voting.scripts.admitted == [] and voting.scripts.outcomes == []


def test_an_early_refusal_over_the_limit_answers_429():
    voting = a_voting(poll=a_poll(closed_at=NOW),
                      scripts=FakeScripts().answer(Limited(retry_after_ms=30_000)))

    error = refusal(cast(voting))

    assert isinstance(error, RateLimited)
    assert voting.scripts.outcomes == []  # admit.lua counted the rate_limited refusal


def test_an_invalid_ballot_is_refused_naming_each_field():
    voting = a_voting()

    error = refusal(cast(voting, Ballot(choices=(99, 99), comment="hello")))

    assert set(error.errors) == {"choices", "comment"}
    assert voting.scripts.outcomes == []  # 422s are not integrity outcomes


def test_a_body_that_did_not_parse_counts_as_an_attempt():
    voting = a_voting(scripts=FakeScripts().answer(Admitted(), Limited(retry_after_ms=10)))

    assert voting.count_unparsed(poll_id="UnitPoll0001", facts=facts()) is None
    refused = voting.count_unparsed(poll_id="UnitPoll0001", facts=facts())

    assert isinstance(refused.error, RateLimited)
