"""The statistics of scale polls against published values and hand computations."""

from __future__ import annotations

import pytest

from service.tallies import statistics

# Student t's 97.5 % quantiles as tabulated (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2).
PUBLISHED_T = [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (29, 2.045), (30, 2.042),
               (40, 2.021), (60, 2.000), (100, 1.984), (120, 1.980)]


@pytest.mark.parametrize(("df", "expected"), PUBLISHED_T)
def test_the_t_quantile_matches_the_published_table(df, expected):
    assert statistics.t_quantile_975(df) == pytest.approx(expected, abs=5e-4)


def test_the_t_quantile_joins_the_table_smoothly_and_tends_to_the_normal():
    assert statistics.t_quantile_975(31) == pytest.approx(2.039513, abs=1e-5)
    assert statistics.t_quantile_975(31) < statistics.t_quantile_975(30)
    assert statistics.t_quantile_975(10**6) == pytest.approx(statistics.Z_975, abs=1e-5)


@pytest.mark.parametrize(("votes", "expected"), [
    ({1: 1, 2: 1, 4: 1, 5: 1}, 3),   # even count: between 2 and 4
    ({1: 1, 2: 1}, 1.5),
    ({3: 4}, 3),
    ({1: 2, 5: 1}, 1),
    ({}, None),
])
def test_the_median_is_the_middle_vote(votes, expected):
    assert statistics.median(votes) == expected


def test_a_rating_of_one_to_five_once_each():
    # mean 3, s^2 = 10 / 4 = 2.5, t(4) = 2.776445: 3 -+ 2.776445 * sqrt(0.5) = 3 -+ 1.9632
    assert statistics.rating({1: 1, 2: 1, 3: 1, 4: 1, 5: 1}) == {
        "mean": 3.0, "median": 3, "ci95": [1.04, 4.96]}


def test_the_interval_is_clipped_to_the_scale():
    # 5, 5, 4 on 1..5: mean 4.667, s = 0.577, t(2) = 4.3027: 4.667 -+ 1.434
    assert statistics.rating({1: 0, 2: 0, 3: 0, 4: 1, 5: 2})["ci95"] == [3.23, 5.0]
    # 1 and 5 on 1..5: mean 3, s = 2.828, t(1) = 12.7062: 3 -+ 25.41
    assert statistics.rating({1: 1, 2: 0, 3: 0, 4: 0, 5: 1})["ci95"] == [1.0, 5.0]


def test_identical_ratings_have_a_zero_width_interval():
    assert statistics.rating({4: 3})["ci95"] == [4.0, 4.0]


def test_all_promoters_score_100_with_the_interval_clipped():
    assert statistics.nps({9: 2, 10: 3}) == {
        "score": 100.0, "promoters": 5, "passives": 0, "detractors": 0, "ci95": [100.0, 100.0]}


def test_nps_of_a_mixed_crowd():
    # 3 promoters, 1 passive, 1 detractor of 5: 60 - 20 = 40;
    # SE = 100 * sqrt((0.6 + 0.2 - 0.16) / 5) = 35.777; 1.96 SE = 70.12 -> clipped at 100
    assert statistics.nps({10: 3, 8: 1, 0: 1}) == {
        "score": 40.0, "promoters": 3, "passives": 1, "detractors": 1, "ci95": [-30.12, 100.0]}
