"""What readers see of a tally: the answer's shape, its statistics (Wilson score
intervals), and the results rules (who may see them, when they are suppressed).

The whole poll's tallies add its baseline (service/tallies/baseline.py) to the ballots'
counts, and the statistics and the suppression are those of the combined numbers, which
are what is shown. A context's tallies (`context` given) count its ballots alone."""

from __future__ import annotations

import math
from datetime import datetime

from service.infra import kinds
from service.infra.clock import iso
from service.infra.db import db
from service.infra.models import Poll, challenge_on
from service.tallies import baseline as baselines
from service.tallies import irv, statistics
from service.tallies.counts import Counts

WILSON_Z95 = 1.959963984540054
PERCENT_DECIMALS = 2


def wilson_interval(votes: int, total: int) -> tuple[float, float] | None:
    """The Wilson score interval at 95 %, in percent; None without ballots."""
    if total <= 0:
        return None
    z2 = WILSON_Z95**2
    share = votes / total
    denominator = 1 + z2 / total
    centre = (share + z2 / (2 * total)) / denominator
    half = WILSON_Z95 * math.sqrt(share * (1 - share) / total + z2 / (4 * total**2)) / denominator
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return round(low * 100, PERCENT_DECIMALS), round(high * 100, PERCENT_DECIMALS)


def tallies_view(poll: Poll, counts: Counts, *, now: datetime, suppressed: bool,
                 context: str | None = None) -> dict:
    """The tallies answer as plain values: the ballots' `counts` (of `context`'s ballots
    when given), plus the poll's baseline for the whole poll."""
    baseline = None if context is not None else baselines.of_poll(poll)
    ballots = counts
    counts = baselines.combined(counts, baseline)
    total = counts.total
    options = []
    for option in poll.options:
        votes = counts.options.get(option.id, 0)
        if suppressed:
            options.append({"id": option.id, "label": option.label, "votes": None,
                            "percent": None, "ci95": None})
            continue
        interval = wilson_interval(votes, total)
        options.append({
            "id": option.id,
            "label": option.label,
            "votes": votes,
            "percent": round(votes / total * 100, PERCENT_DECIMALS) if total else 0.0,
            "ci95": list(interval) if interval else None,
        })
    updated = counts.updated or poll.created_at
    view = {
        "poll_id": poll.id,
        "status": poll.status_at(now),
        "total_votes": total,
        "options": options,
        "other_votes": None if suppressed else counts.other,
        "suppressed": suppressed,
        "updated_at": iso(updated),
        "baseline": None if baseline is None else baseline.summary(),
        "challenge": challenge_on(poll, now),
        **_kind_blocks(poll, ballots, suppressed=suppressed, context=context),
    }
    statistic = kinds.of(poll.kind).statistic
    if statistic is not None:
        view[statistic] = None if suppressed else statistics.block(
            statistic, scale_votes(poll, counts.options))
    return view


def scale_votes(poll: Poll, votes: dict[int, int]) -> dict[int, int]:
    """Ballots per scale value, from ballots per option id (options without a value,
    which a scale poll never has, are left out)."""
    return {option.value: votes.get(option.id, 0) for option in poll.options
            if option.value is not None}


def _kind_blocks(poll: Poll, ballots: Counts, *, suppressed: bool,
                 context: str | None) -> dict:
    """The blocks a kind adds to the tallies (null while suppressed): a ranked poll's
    instant runoff, over its ballots alone (a baseline holds no rankings)."""
    if not kinds.of(poll.kind).ordered:
        return {}
    if suppressed:
        return {"irv": None}
    found = irv.for_poll(poll, ballots, engine=db.engine, context=context)
    return {"irv": None if found is None else found.view()}


def results_visible(poll: Poll, *, now: datetime, is_owner: bool, has_voted) -> bool:
    """Whether the `results` rule lets this reader see the tallies.

    `has_voted` is a callable, asked only when the rule depends on it.
    """
    if is_owner or poll.results == "always":
        return True
    if poll.results == "after_close":
        return poll.status_at(now) == "closed"
    if poll.results == "after_vote":
        return poll.status_at(now) == "closed" or has_voted()
    return False


def is_suppressed(poll: Poll, counts: Counts, *, is_owner: bool,
                  context: str | None = None) -> bool:
    """Below `results_min_votes`, the public sees the total but no per-option numbers. The
    total is the one shown: the whole poll's counts its baseline too."""
    if is_owner:
        return False
    baseline = None if context is not None else baselines.of_poll(poll)
    return counts.total + (baseline.total_votes if baseline else 0) < poll.results_min_votes
