"""Statistics of the values voted on a scale: a rating's mean, median and the mean's
Student t interval; an NPS poll's score and its interval.

Every function takes the votes per value (`{value: ballots}`), which the tallies already
hold (one option per point of the scale), so no ballot is read again.

The t quantile is computed without scipy: an exact table for 1..30 degrees of freedom and,
beyond, the Cornish-Fisher expansion around the normal quantile (Abramowitz and Stegun
26.7.5), whose error there is below 1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

STAT_DECIMALS = 2
Z_975 = 1.959963984540054  # the standard normal's 97.5 % quantile
# Student t's 97.5 % quantile for 1..30 degrees of freedom (two-sided 95 %).
T_975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851,
    2.364624252, 2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830,
    2.160368656, 2.144786688, 2.131449546, 2.119905299, 2.109815578, 2.100922040,
    2.093024054, 2.085963447, 2.079613845, 2.073873068, 2.068657610, 2.063898562,
    2.059538553, 2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456,
)
# NPS: 9 and 10 promote, 7 and 8 are passive, 0..6 detract.
PROMOTER_MIN = 9
PASSIVE_MIN = 7


def t_quantile_975(df: int) -> float:
    """Student t's 97.5 % quantile with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError("at least one degree of freedom")
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def _round(value: float) -> float:
    return round(value, STAT_DECIMALS)


def median(votes: Mapping[int, int]) -> float | None:
    """The middle value voted (the mean of the two middle ones for an even count)."""
    n = sum(votes.values())
    if n == 0:
        return None
    ordered = sorted((value, count) for value, count in votes.items() if count)
    low_rank, high_rank = (n - 1) // 2, n // 2  # 0-based ranks of the middle ballot(s)
    found: list[int] = []
    seen = 0
    for value, count in ordered:
        for rank in (low_rank, high_rank):
            if seen <= rank < seen + count:
                found.append(value)
        seen += count
    middle = sum(found) / 2
    return int(middle) if middle == int(middle) else middle


def rating(votes: Mapping[int, int]) -> dict:
    """`{"mean", "median", "ci95"}` of a rating's votes by value (every point of the scale,
    voted or not): the mean's Student t interval (from the sample standard deviation),
    clipped to the scale, where the mean always lies; nulls without votes, no interval
    with one."""
    n = sum(votes.values())
    if n == 0:
        return {"mean": None, "median": None, "ci95": None}
    mean = sum(value * count for value, count in votes.items()) / n
    interval = None
    if n > 1:
        variance = sum(count * (value - mean) ** 2 for value, count in votes.items()) / (n - 1)
        half = t_quantile_975(n - 1) * math.sqrt(variance / n)
        interval = [_round(max(min(votes), mean - half)), _round(min(max(votes), mean + half))]
    return {"mean": _round(mean), "median": median(votes), "ci95": interval}


def nps(votes: Mapping[int, int]) -> dict:
    """`{"score", "promoters", "passives", "detractors", "ci95"}` of an NPS poll's votes.

    The score is % promoters - % detractors (-100..100). Its interval is the normal one,
    score +- 1.96 standard errors, the standard error being that of the mean of each
    ballot's +100 (promoter), 0 (passive) or -100 (detractor):
    100 * sqrt((p + d - (p - d)^2) / n) for shares p and d; clipped to -100..100.
    Nulls (counts 0) without votes."""
    promoters = sum(c for v, c in votes.items() if v >= PROMOTER_MIN)
    passives = sum(c for v, c in votes.items() if PASSIVE_MIN <= v < PROMOTER_MIN)
    detractors = sum(c for v, c in votes.items() if v < PASSIVE_MIN)
    n = promoters + passives + detractors
    block = {"score": None, "promoters": promoters, "passives": passives,
             "detractors": detractors, "ci95": None}
    if n == 0:
        return block
    p, d = promoters / n, detractors / n
    score = (p - d) * 100
    half = Z_975 * 100 * math.sqrt(max(0.0, p + d - (p - d) ** 2) / n)
    block["score"] = _round(score)
    block["ci95"] = [_round(max(-100.0, score - half)), _round(min(100.0, score + half))]
    return block


BLOCKS = {"rating": rating, "nps": nps}


def block(statistic: str, votes: Mapping[int, int]) -> dict:
    """The tallies block called `statistic` (kinds.Kind.statistic) of these votes."""
    return BLOCKS[statistic](votes)
