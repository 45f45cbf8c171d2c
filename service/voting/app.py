"""The vote use-case wired to the current app: its poll cache, Redis, database and
settings. Web adapters call `voting()` and cast through it."""

from __future__ import annotations

from flask import Flask, current_app
from sqlalchemy.orm import Session

from service.infra import hooks
from service.infra.db import db
from service.infra.models import CLOSED_FULL, Poll
from service.infra.redis import EXTENSION as REDIS_EXTENSION
from service.infra.redis import RedisHandle
from service.polls import cache as poll_cache
from service.polls import challenge as poll_challenge
from service.tallies import counts
from service.tallies.counts import Counts
from service.voting import captcha
from service.voting.cast import Voting
from service.voting.challenge import AutoThresholds, SpentInDatabase
from service.voting.ratelimits import MemoryLimits, parse_limits
from service.voting.records import SqlBallots
from service.voting.redis_store import RedisVoteScripts

MEMORY_LIMITS_EXTENSION = "pollbox.vote_limits_in_memory"
SPENT_IN_DATABASE_EXTENSION = "pollbox.challenges_spent_in_database"
AUTO_THRESHOLDS_EXTENSION = "pollbox.challenge_auto_thresholds"
CAPTCHA_EXTENSION = "pollbox.captcha"


class CachedPolls:
    """Polls as this process caches them (service/polls/cache.py)."""

    def __init__(self, session: Session, redis: RedisHandle) -> None:
        self.session, self.redis = session, redis

    def peek(self, poll_id: str):
        cached = poll_cache.peek(poll_id)
        return cached if cached is not None and cached.version is not None else None

    def get(self, poll_id: str):
        return poll_cache.get_poll_snapshot(session=self.session, redis=self.redis,
                                            poll_id=poll_id)

    def switch_challenge(self, poll_id: str, *, until, expected) -> bool:
        return poll_challenge.switch(engine=self.session.get_bind(), redis=self.redis,
                                      poll_id=poll_id, until=until, expected=expected)

    def closed_full(self, poll_id: str, *, at) -> None:
        # records.py wrote the close with the ballot, outside the ORM: announced here,
        # once (only the vote that took the last place calls this).
        poll_cache.bump_version(redis=self.redis, poll_id=poll_id)
        poll = self.session.get(Poll, poll_id, populate_existing=True)
        if poll is not None:
            hooks.announce_close(session=self.session, poll=poll, reason=CLOSED_FULL,
                                 moment=at)


class TallyReader:
    """Tallies as the read model keeps them (service/tallies/counts.py)."""

    def __init__(self, session: Session, redis: RedisHandle) -> None:
        self.session, self.redis = session, redis

    def read(self, poll) -> Counts:
        return counts.read(session=self.session, redis=self.redis, poll=poll)


def voting() -> Voting:
    """The vote use-case for the current app and request."""
    app = current_app
    redis: RedisHandle = app.extensions[REDIS_EXTENSION]
    session = db.session
    return Voting(
        polls=CachedPolls(session, redis), scripts=RedisVoteScripts(redis),
        ballots=SqlBallots(session), tallies=TallyReader(session, redis),
        secret=app.config["SECRET_KEY"], limits=parse_limits(app.config["RATELIMIT_VOTES"]),
        memory_limits=app.extensions[MEMORY_LIMITS_EXTENSION], clock=app.config["CLOCK"],
        lease=redis.lease, auto=app.extensions[AUTO_THRESHOLDS_EXTENSION],
        spent_in_database=app.extensions[SPENT_IN_DATABASE_EXTENSION],
        captcha=app.extensions[CAPTCHA_EXTENSION],
    )


def init_app(app: Flask) -> None:
    """The vote limits and the proof-of-work solutions this process counts while Redis
    is down, and when an `auto` poll looks attacked, as configured."""
    app.extensions[MEMORY_LIMITS_EXTENSION] = MemoryLimits()
    app.extensions[SPENT_IN_DATABASE_EXTENSION] = SpentInDatabase()
    app.extensions[CAPTCHA_EXTENSION] = captcha.from_config(app.config)
    app.extensions[AUTO_THRESHOLDS_EXTENSION] = AutoThresholds(
        least=app.config["CHALLENGE_AUTO_MIN_REFUSALS"],
        factor=app.config["CHALLENGE_AUTO_FACTOR"],
        quiet_seconds=app.config["CHALLENGE_AUTO_QUIET_SECONDS"])
