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


def rate_limit(poll_id: str, address_hash: str, amount: int, window_ms: int) -> str:
    """The moving window of one vote limit (`amount` per `window_ms`) for one client
    address (its keyed hash) in the poll: a list of attempt times, newest first."""
    return f"{PREFIX}:{{{poll_id}}}:ratelimit:{address_hash}:{amount}/{window_ms}"


def poll_version(poll_id: str) -> str:
    """A random token set anew after every committed change of the poll (its fields, its
    options, its signing secret); worker processes compare it with the version of their
    cached copy of the poll (service/polls/cache.py)."""
    return f"{PREFIX}:{{{poll_id}}}:version"


def tally_changes(poll_id: str) -> str:
    """The pub/sub channel told after every change of the poll's tallies."""
    return f"{PREFIX}:{{{poll_id}}}:changes"


# One pattern subscription per worker process hears every poll's changes.
TALLY_CHANGES_PATTERN = f"{PREFIX}:{{*}}:changes"


def poll_id_of_channel(channel: str) -> str:
    """The poll id inside a `tally_changes` channel name."""
    return channel[channel.index("{") + 1 : channel.index("}")]


def idempotency(poll_id: str, key_hash: str) -> str:
    """A vote's `Idempotency-Key` (its keyed hash): the request's body hash and, once
    accepted, the answer to replay."""
    return f"{PREFIX}:{{{poll_id}}}:idem:{key_hash}"


def integrity(poll_id: str, hour: str) -> str:
    """One UTC hour's counts of accepted votes and refused attempts (`hour`: YYYYMMDDHH)."""
    return f"{PREFIX}:{{{poll_id}}}:integrity:{hour}"


def reconcile_lock() -> str:
    """Held for one period by the process whose turn it is to reconcile the tallies."""
    return f"{PREFIX}:reconcile:lock"


def webhook_batches() -> str:
    """The sorted set of vote batches (`<poll id>:<second>`, scored by the second) waiting
    to be told to `vote.created` webhooks; drained by the webhooks dispatcher."""
    return f"{PREFIX}:{{webhooks}}:batches"


def webhook_batch(member: str) -> str:
    """The ballot ids of one batch: one poll's votes noted in one second. All webhook
    keys share the `{webhooks}` hash tag: the vote's one Lua call touches three of them."""
    return f"{PREFIX}:{{webhooks}}:batch:{member}"


def webhook_subscribers() -> str:
    """The set of owner ids with a `vote.created` webhook (a copy of the database's)."""
    return f"{PREFIX}:{{webhooks}}:subscribers"


def webhook_subscribers_synced() -> str:
    """Held while the subscriber set counts as fresh; whoever sets it re-syncs it."""
    return f"{PREFIX}:webhooks:subscribers-synced"


def webhook_closes_checked() -> str:
    """Until when (epoch seconds) scheduled poll closes have been announced to webhooks."""
    return f"{PREFIX}:webhooks:closes-checked"


def console_session(session_hash: str) -> str:
    """Present while the console session with this SHA-256 id is live (its TTL the
    session's lifetime). Console keys share the `{console}` hash tag."""
    return f"{PREFIX}:{{console}}:session:{session_hash}"


def lease(poll_id: str, token: str) -> str:
    """Set while the process `token` names is alive and working on votes in the poll:
    its claims not yet committed are in flight, not dead (service/infra/redis/lease.py)."""
    return f"{PREFIX}:{{{poll_id}}}:lease:{token}"


def challenge_spent(poll_id: str, token: str) -> str:
    """Set once a proof-of-work solution (its challenge, `token`) was used to vote; expires
    with the challenge."""
    return f"{PREFIX}:{{{poll_id}}}:challenge:spent:{token}"


def challenge_spent_in_database(poll_id: str) -> str:
    """Set while solutions of the poll spent during a Redis outage (in the database) may
    still be unexpired: a solution Redis has not seen is then checked there too."""
    return f"{PREFIX}:{{{poll_id}}}:challenge:spent-in-database"


def challenge_watch(poll_id: str) -> str:
    """A hash: the poll's suspicious refusals this minute, its baseline per minute, and
    until when an `auto` challenge is on (service/voting/challenge.py)."""
    return f"{PREFIX}:{{{poll_id}}}:challenge:watch"
