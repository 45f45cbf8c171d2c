"""An `auto` poll's proof-of-work challenge, switched on while the poll looks attacked
and off after its quiet period (service/voting/challenge.py decides when)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, update

from service.infra.models import Poll
from service.infra.redis import RedisHandle
from service.polls import cache as poll_cache


def switch(*, engine: Engine, redis: RedisHandle, poll_id: str, until: datetime | None,
           expected: datetime | None) -> bool:
    """Switch an `auto` poll's challenge on until `until` (None: off) if it still is
    `expected` (of several processes, one switches), committed on its own and told to
    every process's poll cache: whether this call switched it."""
    with engine.begin() as connection:
        switched = connection.execute(
            update(Poll).where(Poll.id == poll_id, Poll.challenge == "auto",
                               Poll.challenge_until.is_(None) if expected is None
                               else Poll.challenge_until == expected)
            .values(challenge_until=until)).rowcount
    if switched:
        poll_cache.bump_version(redis=redis, poll_id=poll_id)
    return bool(switched)
