"""The kinds of question a poll can ask, and the rules that differ between them.

Every layer asks this table instead of comparing `poll.kind` with a name: the schemas
(which kinds exist, how many choices a ballot holds), the baseline check, the widget and
the console. A new kind is one more entry here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    label: str  # the console's name for it
    # Each ballot holds exactly one option: max_choices is always 1, and the options'
    # vote counts add up to the number of ballots.
    one_choice: bool
    # The ballot's choices are an order of preference: options' `votes` count first
    # preferences only, and the tallies add an instant runoff (service/tallies/irv.py).
    ordered: bool = False

    def ranking(self, choices: tuple[int, ...]) -> str | None:
        """An ordered ballot's choices as its stored ranking ("17,19,18"); else None."""
        return ",".join(map(str, choices)) if self.ordered and choices else None

    def counted(self, choices: tuple[int, ...]) -> tuple[int, ...]:
        """The choices an option's vote count counts: an ordered ballot's first."""
        return choices[:1] if self.ordered else choices


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(name="single", label="Single choice", one_choice=True),
        Kind(name="multiple", label="Multiple choice", one_choice=False),
        Kind(name="ranked", label="Ranked choice", one_choice=False, ordered=True),
    )
}
NAMES = tuple(KINDS)
ORDERED = tuple(name for name, kind in KINDS.items() if kind.ordered)
DEFAULT = "single"


def of(name: str) -> Kind:
    """The kind called `name` (a stored poll's kind is always one of them)."""
    return KINDS[name]
