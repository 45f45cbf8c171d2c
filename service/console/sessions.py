"""Console sessions that end when the owner signs out, not when a cookie expires.

The signed cookie carries only a random session id. The server keeps its SHA-256 twice:
in the database (`console_sessions`, the record: created, expires, revoked) and in
Redis (one key per live session, its TTL the session's lifetime). Only the hash is
stored because the id is 256 random bits: no table copy, backup or Redis dump holds a
usable id, and no key is needed to make guessing hopeless.

A request is let in when both stores agree. Redis answers first (one EXISTS) and turns
away a session it does not hold without reading the database. The database row is then
read in the query that loads the owner and checks the API key anyway, so it costs no
extra round trip; it is what makes a sign-out recorded while Redis was unreachable hold
once Redis is back with its old keys. While Redis is unreachable the database alone
decides. A session Redis has lost (Redis restarted empty, or a sign-in made while Redis
was down) is signed out once Redis answers again, its row revoked with it (see
`auth.owner_required`): the owner signs in again.

Expired rows are deleted at each sign-in; nothing else needs to purge them.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, joinedload

from service.infra import keys
from service.infra.models import ApiKey, ConsoleSession
from service.infra.redis import RedisHandle

# A signed-in session lasts this long, however active; then the key is asked again.
SESSION_SECONDS = 12 * 3600
SESSION_ID_BYTES = 32


def session_hash(session_id: str) -> str:
    """The stored form of a session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def purge_expired(*, session: Session, now: datetime) -> None:
    """Delete the rows of sessions past their lifetime, revoked or not (not committed)."""
    session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))


def start(*, session: Session, redis: RedisHandle, key_id: int, now: datetime) -> str:
    """Record a new session for the API key (database, then Redis); return its id."""
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    digest = session_hash(session_id)
    purge_expired(session=session, now=now)
    session.add(ConsoleSession(id=digest, api_key_id=key_id, created_at=now,
                               expires_at=now + timedelta(seconds=SESSION_SECONDS)))
    session.commit()
    with redis.fallback("starting a console session"):
        redis.client.set(keys.console_session(digest), key_id, ex=SESSION_SECONDS)
    return session_id


def key_of(*, session: Session, redis: RedisHandle, session_id: str,
           now: datetime) -> ApiKey | None:
    """The key (its owner loaded) of a live session whose key is still active, else None."""
    digest = session_hash(session_id)
    with redis.fallback("checking a console session") as call:
        held = redis.client.exists(keys.console_session(digest))
    if not call.failed and not held:
        return None
    return session.scalar(
        select(ApiKey)
        .options(joinedload(ApiKey.owner))
        .join(ConsoleSession, ConsoleSession.api_key_id == ApiKey.id)
        .where(ConsoleSession.id == digest, ConsoleSession.revoked_at.is_(None),
               ConsoleSession.expires_at > now, ApiKey.revoked_at.is_(None))
    )


def end(*, session: Session, redis: RedisHandle, session_id: str, now: datetime) -> None:
    """Revoke the session: in the database first (the record), then in Redis."""
    digest = session_hash(session_id)
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == digest, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.commit()
    with redis.fallback("ending a console session"):
        redis.client.delete(keys.console_session(digest))
