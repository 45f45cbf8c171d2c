"""Owners and their API keys. A key is shown once; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.infra.clock import utcnow
from service.infra.models import ApiKey, ConsoleSession, Owner, Poll

KEY_PREFIX = "pbk_"
KEY_RANDOM_BYTES = 32
KEY_DISPLAY_CHARS = 8
OWNER_NAME_MAX = 100
DEFAULT_KEY_NAME = "default"


class OwnerError(ValueError):
    """An owner command cannot be carried out."""


@dataclass(frozen=True)
class OwnerSummary:
    name: str
    created_at: datetime
    key_prefix: str | None
    polls: int


def hash_key(key: str) -> str:
    """Return the stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key(*, session: Session, owner: Owner, name: str = DEFAULT_KEY_NAME,
             scope: str = "admin") -> str:
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
    prefix = key[: len(KEY_PREFIX) + KEY_DISPLAY_CHARS]
    session.add(ApiKey(owner=owner, key_hash=hash_key(key), prefix=prefix, name=name,
                       scope=scope))
    return key


def create_owner(*, session: Session, name: str) -> str:
    """Create an owner with one API key; return the key."""
    name = name.strip()
    if not 1 <= len(name) <= OWNER_NAME_MAX:
        raise OwnerError(f"an owner's name is 1..{OWNER_NAME_MAX} characters")
    if session.scalar(select(Owner.id).where(Owner.name == name)) is not None:
        raise OwnerError(f"an owner named {name!r} already exists")
    owner = Owner(name=name)
    session.add(owner)
    key = _new_key(session=session, owner=owner)
    session.commit()
    return key


def rotate_key(*, session: Session, name: str) -> str:
    """Revoke the owner's keys and their console sessions; return a new key."""
    owner = session.scalar(select(Owner).where(Owner.name == name))
    if owner is None:
        raise OwnerError(f"no owner named {name!r}")
    revoked_at = utcnow()
    # The record of the console sessions ends with the keys; their Redis copies expire
    # on their own, as the console lets no session in on Redis's word alone.
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.api_key_id.in_(select(ApiKey.id).where(ApiKey.owner_id == owner.id)),
               ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=revoked_at)
    )
    session.execute(
        update(ApiKey)
        .where(ApiKey.owner_id == owner.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=revoked_at)
    )
    key = _new_key(session=session, owner=owner)
    session.commit()
    return key


def list_owners(*, session: Session) -> list[OwnerSummary]:
    """Every owner with its active key's prefix and its number of polls."""
    polls = (
        select(func.count(Poll.id)).where(Poll.owner_id == Owner.id).scalar_subquery()
    )
    active_prefix = (
        select(ApiKey.prefix)
        .where(ApiKey.owner_id == Owner.id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Owner.name, Owner.created_at, active_prefix, polls).order_by(Owner.name)
    )
    return [OwnerSummary(*row) for row in rows]


def owner_for_key(*, session: Session, key: str) -> Owner | None:
    """Return the owner of an active key, or None."""
    return session.scalar(
        select(Owner)
        .join(ApiKey)
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )
