"""The instant runoff (service/tallies/irv.py) on hand-worked elections from the
literature, its tie-breaks, exhausted ballots, and properties of every election."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.tallies.irv import Round, Runoff, runoff

MEMPHIS, NASHVILLE, CHATTANOOGA, KNOXVILLE = 1, 2, 3, 4
TENNESSEE = [MEMPHIS, NASHVILLE, CHATTANOOGA, KNOXVILLE]


def ballots(*groups: tuple[int, tuple[int, ...]]) -> list[tuple[int, ...]]:
    return [ranking for n, ranking in groups for _ in range(n)]


def test_tennessee_capital_elects_knoxville_after_two_eliminations():
    # Wikipedia, "Instant-runoff voting", the Tennessee capital example (per 100 voters).
    result = runoff(ballots(
        (42, (MEMPHIS, NASHVILLE, CHATTANOOGA, KNOXVILLE)),
        (26, (NASHVILLE, CHATTANOOGA, KNOXVILLE, MEMPHIS)),
        (15, (CHATTANOOGA, KNOXVILLE, NASHVILLE, MEMPHIS)),
        (17, (KNOXVILLE, CHATTANOOGA, NASHVILLE, MEMPHIS)),
    ), TENNESSEE)
    assert result == Runoff(rounds=[
        Round(counts={1: 42, 2: 26, 3: 15, 4: 17}, eliminated=[CHATTANOOGA], exhausted=0),
        Round(counts={1: 42, 2: 26, 4: 32}, eliminated=[NASHVILLE], exhausted=0),
        Round(counts={1: 42, 4: 58}, eliminated=[], exhausted=0),
    ], winner=KNOXVILLE)


def test_condorcet_cycle_is_decided_by_the_runoff():
    # A beats B 67-33, B beats C 68-32, C beats A 65-35: no Condorcet winner. IRV drops
    # C first (fewest first preferences) and C's voters carry A over half.
    a, b, c = 10, 11, 12
    result = runoff(ballots((35, (a, b, c)), (33, (b, c, a)), (32, (c, a, b))), [a, b, c])
    assert [one.counts for one in result.rounds] == [{a: 35, b: 33, c: 32}, {a: 67, b: 33}]
    assert [one.eliminated for one in result.rounds] == [[c], []]
    assert result.winner == a


def test_center_squeeze_elects_other_than_the_condorcet_winner():
    # The centre option B beats A 64-36 and C 66-34 head to head, but has the fewest
    # first preferences and is eliminated first (the "centre squeeze"): A wins.
    a, b, c = 1, 2, 3
    result = runoff(ballots((36, (a, b)), (15, (b, a)), (15, (b, c)), (34, (c, b))),
                    [a, b, c])
    assert result.rounds[0] == Round(counts={a: 36, b: 30, c: 34}, eliminated=[b],
                                     exhausted=0)
    assert result.rounds[1] == Round(counts={a: 51, c: 49}, eliminated=[], exhausted=0)
    assert result.winner == a


def test_tie_for_fewest_eliminates_the_option_with_fewer_first_preferences():
    # After D goes, B and C have 4 each; C had 3 first preferences, B 4: C goes, though a
    # lowest-id rule would have dropped B.
    a, b, c, d = 1, 2, 3, 4
    result = runoff(ballots((6, (a,)), (4, (b,)), (3, (c,)), (1, (d, c))), [a, b, c, d])
    assert result.rounds == [
        Round(counts={a: 6, b: 4, c: 3, d: 1}, eliminated=[d], exhausted=0),
        Round(counts={a: 6, b: 4, c: 4}, eliminated=[c], exhausted=0),
        Round(counts={a: 6, b: 4}, eliminated=[], exhausted=4),
    ]
    assert result.winner == a


def test_tie_in_votes_and_first_preferences_eliminates_the_lowest_id():
    a, b, c = 1, 2, 3
    result = runoff(ballots((4, (a,)), (2, (b, c)), (2, (c, b))), [a, b, c])
    assert [one.eliminated for one in result.rounds] == [[b], [c], []]
    # Round 2: 4 each; A had 4 first preferences, C 2: C goes.
    assert result.rounds[1].counts == {a: 4, c: 4}
    assert result.rounds[2] == Round(counts={a: 4}, eliminated=[], exhausted=4)
    assert result.winner == a


def test_exhausted_ballots_leave_the_majority_to_the_ballots_still_counting():
    # 11 ballots: nobody has 6. Once C's 3 bullet votes are exhausted, A's 5 are more
    # than half of the 8 still counting.
    a, b, c, d = 1, 2, 3, 4
    result = runoff(ballots((5, (a,)), (3, (b,)), (2, (c,)), (1, (d,))), [a, b, c, d])
    assert [(one.eliminated, one.exhausted) for one in result.rounds] == [
        ([d], 0), ([c], 1), ([], 3)]
    assert result.winner == a


def test_partial_rankings_transfer_as_far_as_they_go():
    a, b, c = 1, 2, 3
    result = runoff(ballots((4, (a,)), (3, (b, a)), (2, (c, b)), (2, (c,))), [a, b, c])
    # C (4) and B (3): B goes; its ballots go to A. Then A 7 of 11.
    assert result.rounds[0] == Round(counts={a: 4, b: 3, c: 4}, eliminated=[b], exhausted=0)
    assert result.rounds[1] == Round(counts={a: 7, c: 4}, eliminated=[], exhausted=0)
    assert result.winner == a


def test_option_nobody_ranked_is_eliminated_first():
    a, b, c = 1, 2, 3
    result = runoff(ballots((2, (a, b)), (2, (b, a))), [a, b, c])
    assert result.rounds[0] == Round(counts={a: 2, b: 2, c: 0}, eliminated=[c], exhausted=0)


def test_single_option_wins_at_once():
    result = runoff([(7,), (7,), (7,)], [7])
    assert result == Runoff(rounds=[Round(counts={7: 3}, eliminated=[], exhausted=0)],
                            winner=7)


def test_no_ballots_means_no_rounds_and_no_winner():
    assert runoff([], [1, 2, 3]) == Runoff(rounds=[], winner=None)
    assert runoff([], [1, 2, 3]).view() == {"rounds": [], "winner": None}


def test_view_names_options_as_strings():
    view = runoff([(17,), (17,), (18, 17)], [17, 18, 19]).view()
    assert view == {"rounds": [{"counts": {"17": 2, "18": 1, "19": 0}, "eliminated": [],
                                "exhausted": 0}], "winner": 17}


OPTIONS = [1, 2, 3, 4, 5]
rankings = st.permutations(OPTIONS).flatmap(
    lambda order: st.integers(1, len(order)).map(lambda n: tuple(order[:n])))


@settings(max_examples=300, deadline=None)
@given(st.lists(rankings, min_size=1, max_size=60))
def test_every_round_accounts_for_every_ballot_and_the_winner_has_a_majority(cast):
    result = runoff(cast, OPTIONS)
    in_race = set(OPTIONS)
    for one in result.rounds:
        assert sum(one.counts.values()) + one.exhausted == len(cast)
        assert set(one.counts) == in_race
        in_race -= set(one.eliminated)
    last = result.rounds[-1]
    assert last.eliminated == []
    assert all(len(one.eliminated) == 1 for one in result.rounds[:-1])
    assert result.winner is not None
    assert last.counts[result.winner] * 2 > sum(last.counts.values())
    # Exhaustion only grows, and a round's counts never shrink for an option still in.
    for before, after in zip(result.rounds, result.rounds[1:], strict=False):
        assert after.exhausted >= before.exhausted
        assert all(after.counts[option] >= before.counts[option] for option in after.counts)
