"""Instant runoff for ranked polls: the rounds and the winner, from the ballots' rankings.

`runoff` is a pure function over compact ballots (tuples of option ids, most preferred
first). Identical rankings are grouped first, so each round walks a few hundred groups
whatever the number of ballots. `for_poll` reads the rankings from the database (the
record) in one query, grouped by the database (each ranked ballot stores its ranking as
text, so grouping is one pass over the poll's ballots), and keeps the answer per process
for as long as the poll's tally stays the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, case, func, null, select, union_all
from sqlalchemy.orm import Session

from service.infra import kinds
from service.infra.kept import Kept
from service.infra.models import Ballot, BallotChoice
from service.tallies.counts import Counts

# How many runoffs a process keeps (poll and context); the oldest is forgotten first.
CACHE_ENTRIES = 256

Ranking = tuple[int, ...]


@dataclass(frozen=True)
class Round:
    counts: dict[int, int]
    eliminated: list[int]
    exhausted: int

    def view(self) -> dict:
        return {"counts": {str(option): n for option, n in self.counts.items()},
                "eliminated": list(self.eliminated), "exhausted": self.exhausted}


@dataclass(frozen=True)
class Runoff:
    rounds: list[Round] = field(default_factory=list)
    winner: int | None = None

    def view(self) -> dict:
        """The tallies' `irv` block."""
        return {"rounds": [one.view() for one in self.rounds], "winner": self.winner}


def runoff(ballots: Iterable[Ranking], option_ids: Sequence[int]) -> Runoff:
    """Run the instant runoff of `ballots` among `option_ids`.

    Each round counts every ballot for its highest-ranked option still in the race; a
    ballot with none left is exhausted. An option with more than half of the ballots not
    exhausted wins; else the one with the fewest is eliminated (ties: fewer first
    preferences, then the lowest id). No ballots: no rounds and no winner.
    """
    return runoff_of_groups(Counter(ballots), option_ids)


def runoff_of_groups(groups: Counter[Ranking], option_ids: Sequence[int]) -> Runoff:
    """`runoff` over rankings already grouped with their number of ballots."""
    if sum(groups.values()) == 0:
        return Runoff()
    remaining = set(option_ids) | {option for ranking in groups for option in ranking}
    first = _count(groups, remaining)[0]
    rounds: list[Round] = []
    while True:
        counts, exhausted = _count(groups, remaining)
        active = sum(counts.values())
        leader = max(counts, key=lambda option: (counts[option], -option))
        if active and counts[leader] * 2 > active:
            rounds.append(Round(counts=counts, eliminated=[], exhausted=exhausted))
            return Runoff(rounds=rounds, winner=leader)
        if not active or len(remaining) == 1:
            # Every ballot is exhausted: nobody can have a majority of none.
            rounds.append(Round(counts=counts, eliminated=[], exhausted=exhausted))
            return Runoff(rounds=rounds, winner=None)
        loser = min(counts, key=lambda option: (counts[option], first[option], option))
        rounds.append(Round(counts=counts, eliminated=[loser], exhausted=exhausted))
        remaining.discard(loser)


def _count(groups: Counter[Ranking], remaining: set[int]) -> tuple[dict[int, int], int]:
    """Each remaining option's ballots (in the options' id order) and the exhausted ones."""
    counts = dict.fromkeys(sorted(remaining), 0)
    exhausted = 0
    for ranking, n in groups.items():
        for option in ranking:
            if option in remaining:
                counts[option] += n
                break
        else:
            exhausted += n
    return counts, exhausted


def rankings(connection: Connection | Session, *, poll_id: str, ranks: int,
             context: str | None = None, conditions: Sequence = ()) -> Counter[Ranking]:
    """The poll's ballots' rankings (of `context`, and meeting `conditions` on ballots),
    grouped, in one query. The database groups the ballots by their stored `ranking`;
    a ballot without one (written by a path that does not store it) has its choices
    turned into one row of `ranks` columns (the option at rank 1, 2, ...) and grouped
    too. A few hundred rows come back, whatever the number of ballots."""
    ballot_filter = [Ballot.poll_id == poll_id, *conditions]
    if context is not None:
        ballot_filter.append(Ballot.context == context)
    unranked = [null()] * ranks
    stored = (
        select(Ballot.ranking, *unranked, func.count())
        .where(*ballot_filter, Ballot.ranking.is_not(None))
        .group_by(Ballot.ranking)
    )
    by_rank = [
        func.max(case((BallotChoice.rank == rank, BallotChoice.option_id))).label(f"r{rank}")
        for rank in range(1, ranks + 1)
    ]
    per_ballot = (
        select(*by_rank)
        .join(Ballot, Ballot.id == BallotChoice.ballot_id)
        .where(*ballot_filter, Ballot.ranking.is_(None))
        .group_by(BallotChoice.ballot_id)
        .subquery()
    )
    from_choices = select(null(), *per_ballot.c, func.count()).group_by(*per_ballot.c)
    groups: Counter[Ranking] = Counter()
    for text, *options, n in connection.execute(union_all(stored, from_choices)):
        if text is not None:
            groups[tuple(int(option) for option in text.split(","))] += n
        else:
            # Ranks are 1..k on every ballot; the columns past its last rank are null.
            groups[tuple(option for option in options if option is not None)] += n
    return groups


# Runoffs by poll, context and tally: a changed tally is a new key.
cache: Kept[tuple, Runoff] = Kept(CACHE_ENTRIES, recent=True)


def tally_key(poll, counts: Counts, context: str | None) -> tuple:
    """What the runoff is a function of: the poll's options and its tally (a vote, a
    withdrawal or a rebuild changes the total, the counts or the latest vote's time)."""
    updated = None if counts.updated is None else counts.updated.timestamp()
    return (poll.id, context, tuple(option.id for option in poll.options), counts.total,
            updated, tuple(sorted(counts.options.items())))


def for_poll(poll, counts: Counts, *, engine: Engine, context: str | None = None
             ) -> Runoff | None:
    """The runoff of a ranked poll's ballots (None for the other kinds), from the cache
    while its tally is unchanged, else from the database."""
    if not kinds.of(poll.kind).ordered:
        return None
    key = tally_key(poll, counts, context)
    found = cache.get(key)
    if found is not None:
        return found
    with engine.connect() as connection:
        groups = rankings(connection, poll_id=poll.id, ranks=len(poll.options),
                          context=context)
    result = runoff_of_groups(groups, [option.id for option in poll.options])
    cache.put(key, result)
    return result
