"""The kinds of question a poll can ask, and the rules that differ between them.

Every layer asks this table instead of comparing `poll.kind` with a name: the schemas
(which kinds exist, how many choices a ballot holds), the baseline check, the widget and
the console. A new kind is one more entry here.

Scale kinds (`rating`, `nps`) take no options from their owner: the service makes one
option per point of the scale, each with its numeric `value` and the number as its label.
"""

from __future__ import annotations

from dataclasses import dataclass

# A rating's scale when the request gives none; the bounds of any rating's scale.
DEFAULT_SCALE = {"min": 1, "max": 5}
SCALE_MIN_LOW, SCALE_MIN_HIGH = 1, 10
SCALE_MAX_LOW, SCALE_MAX_HIGH = 2, 10
SCALE_POINTS_MAX = 11
NPS_SCALE = {"min": 0, "max": 10}


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
    # The options are the points of a numeric scale made by the service, not the owner's.
    scale: bool = False
    # The owner chooses the scale (`scale` field); otherwise it is `fixed_scale`.
    scale_settable: bool = False
    fixed_scale: dict | None = None
    # The name of the tallies block with the statistic of the values voted, if any.
    statistic: str | None = None

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
        Kind(name="rating", label="Rating scale", one_choice=True, scale=True,
             scale_settable=True, statistic="rating"),
        Kind(name="nps", label="Net Promoter Score (0-10)", one_choice=True, scale=True,
             fixed_scale=NPS_SCALE, statistic="nps"),
    )
}
NAMES = tuple(KINDS)
ORDERED = tuple(name for name, kind in KINDS.items() if kind.ordered)
DEFAULT = "single"


def of(name: str) -> Kind:
    """The kind called `name` (a stored poll's kind is always one of them)."""
    return KINDS[name]


def scale_of(kind: Kind, scale: dict | None) -> dict | None:
    """The scale a poll of `kind` uses: its own (`scale`, else the default) for a rating,
    the fixed one for NPS, None for kinds without a scale."""
    if not kind.scale:
        return None
    labels = {"min_label": None, "max_label": None}
    if kind.fixed_scale is not None:
        return {**kind.fixed_scale, **labels}
    return {**DEFAULT_SCALE, **labels, **(scale or {})}


def scale_points(scale: dict) -> list[int]:
    """The values of a scale's points, lowest first."""
    return list(range(scale["min"], scale["max"] + 1))
