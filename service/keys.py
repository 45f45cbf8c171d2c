"""Every Redis key name. All keys of a poll share the `{poll id}` hash tag, so one
poll's keys live in one Redis Cluster slot and one Lua script may touch them all."""

from __future__ import annotations

import hashlib

PREFIX = "pollbox"


def poll_pattern(poll_id: str) -> str:
    """A SCAN pattern matching every key of the poll."""
    return f"{PREFIX}:{{{poll_id}}}:*"


def tally(poll_id: str, context: str | None = None) -> str:
    """The poll's tally hash, or the tally of votes cast with one `context`."""
    if context is None:
        return f"{PREFIX}:{{{poll_id}}}:tally"
    digest = hashlib.sha256(context.encode()).hexdigest()[:32]
    return f"{PREFIX}:{{{poll_id}}}:tally:ctx:{digest}"


def tally_scope(poll_id: str, context: str | None = None) -> list[str]:
    """The four keys of one tally: the hash, the counts waiting for a rebuild, the
    rebuild lock, and the ballots the last rebuild already included."""
    base = tally(poll_id, context)
    return [base, f"{base}:pending", f"{base}:lock", f"{base}:included"]


def seen(poll_id: str, identity: str) -> str:
    """The duplicate-check claim of one voter identity (`kind:keyed hash`)."""
    return f"{PREFIX}:{{{poll_id}}}:seen:{identity}"
