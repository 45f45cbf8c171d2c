"""A poll's baseline as the read model sees it: the votes it had before it moved to
Pollbox, added to its tallies whenever they are shown.

The baseline lives in the database only (`models.PollBaseline`), never in the Redis
tallies, which count ballots: so a flushed Redis, the exact rebuild from the ballots and
reconciliation can neither lose nor double it. It is added to the whole poll's tallies
only; a context's tallies, the time series and the votes export count ballots alone (no
ballot is invented).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.infra.clock import iso
from service.infra.models import PollBaseline
from service.tallies.counts import Counts


@dataclass(frozen=True, slots=True)
class Baseline:
    """A baseline as plain values, detached from any session."""

    total_votes: int
    # (option id, votes) pairs, in option id order; options without votes are left out.
    options: tuple[tuple[int, int], ...]
    source: str
    as_of: datetime

    @classmethod
    def of(cls, record: PollBaseline) -> Baseline:
        return cls(
            total_votes=record.total_votes,
            options=tuple((row.option_id, row.votes) for row in record.options if row.votes),
            source=record.source, as_of=record.as_of,
        )

    def votes(self, option_id: int) -> int:
        """The option's votes in the baseline (0 when it has none)."""
        return dict(self.options).get(option_id, 0)

    def summary(self) -> dict:
        """What the tallies say about the baseline they include."""
        return {"total_votes": self.total_votes, "source": self.source,
                "as_of": iso(self.as_of)}


def of_poll(poll) -> Baseline | None:
    """The baseline of a poll snapshot (or of a `models.Poll`), as plain values."""
    found = getattr(poll, "baseline", None)
    if found is None or isinstance(found, Baseline):
        return found
    return Baseline.of(found)


def combined(counts: Counts, baseline: Baseline | None) -> Counts:
    """The ballots' counts plus the baseline's: what the whole poll's tallies show. Never
    stored: the Redis tallies keep counting ballots only."""
    if baseline is None:
        return counts
    options = dict(counts.options)
    for option_id, votes in baseline.options:
        options[option_id] = options.get(option_id, 0) + votes
    return Counts(total=counts.total + baseline.total_votes, other=counts.other,
                  options=options, updated=counts.updated)
