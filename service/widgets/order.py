"""The order a visitor sees a poll's options in: the owner's, or (`shuffle_options`) one
of the visitor's own against order bias.

The shuffle is seeded by the poll and the visitor's network address (the /64 for IPv6,
as the duplicate check keys it), hashed with the app's secret: the same on every load,
in every browser, cookies kept or blocked (a seed from the voter cookie would change on
every load where third-party cookies are blocked), and unguessable from outside. Only
the widget's form is shuffled; results, the API, exports and the owner's views keep the
owner's order.
"""

from __future__ import annotations

import random

from service.infra.identity import Voter, keyed_hash


def option_order(poll, voter: Voter, *, secret: str) -> tuple[int, ...] | None:
    """The option ids in the visitor's order, or None for the owner's order."""
    if not poll.shuffle_options:
        return None
    ids = [option.id for option in poll.options]
    random.Random(keyed_hash(secret, poll.id, "order", voter.address)).shuffle(ids)
    return tuple(ids)


def ordered(options, order: tuple[int, ...] | None) -> list:
    """The poll's options in `order` (None: as given)."""
    if order is None:
        return list(options)
    by_id = {option.id: option for option in options}
    return [by_id[option_id] for option_id in order]
