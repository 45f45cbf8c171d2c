"""Owners and their API keys. A key is shown once; only its SHA-256 is stored.

A key acts in one scope: `read` (every owner GET), `write` (polls, comments, webhooks,
and what `read` may) or `admin` (everything, keys too). The command line makes `admin`
keys; an admin key makes narrower ones over the API or in the console.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from service.infra.clock import utcnow
from service.infra.models import ApiKey, ConsoleSession, Owner, Poll

KEY_PREFIX = "pbk_"
KEY_RANDOM_BYTES = 32
KEY_DISPLAY_CHARS = 8
OWNER_NAME_MAX = 100
DEFAULT_KEY_NAME = "default"
KEY_NAME_MAX = 100
MAX_KEY_ID = 2**31 - 1  # ids are 32-bit integers in every database
# Each scope may do what the ones before it may.
SCOPES = ("read", "write", "admin")
# A key's last use is written at most this often per key and process.
LAST_USE_RESOLUTION = timedelta(minutes=1)


class OwnerError(ValueError):
    """An owner command cannot be carried out."""


class LastAdminKey(OwnerError):
    """Revoking this key would leave its owner without an admin key."""


def scope_allows(scope: str, needed: str) -> bool:
    """Whether a key of `scope` may make a call that needs `needed`."""
    return SCOPES.index(scope) >= SCOPES.index(needed)


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
             scope: str = "admin") -> tuple[ApiKey, str]:
    """Add a key's record (not committed); return it and the key."""
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
    prefix = key[: len(KEY_PREFIX) + KEY_DISPLAY_CHARS]
    record = ApiKey(owner=owner, key_hash=hash_key(key), prefix=prefix, name=name,
                    scope=scope)
    session.add(record)
    return record, key


def create_owner(*, session: Session, name: str) -> str:
    """Create an owner with one API key; return the key."""
    name = name.strip()
    if not 1 <= len(name) <= OWNER_NAME_MAX:
        raise OwnerError(f"an owner's name is 1..{OWNER_NAME_MAX} characters")
    if session.scalar(select(Owner.id).where(Owner.name == name)) is not None:
        raise OwnerError(f"an owner named {name!r} already exists")
    owner = Owner(name=name)
    session.add(owner)
    _, key = _new_key(session=session, owner=owner)
    session.commit()
    return key


def _owner_named(*, session: Session, name: str) -> Owner:
    owner = session.scalar(select(Owner).where(Owner.name == name))
    if owner is None:
        raise OwnerError(f"no owner named {name!r}")
    return owner


def _revoke(*, session: Session, keys, moment: datetime) -> None:
    """Revoke the selected keys and their console sessions (not committed)."""
    # The record of the console sessions ends with the keys; their Redis copies expire
    # on their own, as the console lets no session in on Redis's word alone.
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.api_key_id.in_(keys), ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=moment)
    )
    session.execute(
        update(ApiKey)
        .where(ApiKey.id.in_(keys), ApiKey.revoked_at.is_(None))
        .values(revoked_at=moment)
    )


def rotate_key(*, session: Session, name: str) -> str:
    """Revoke the owner's admin keys and their console sessions; return a new admin key.

    Narrower keys an admin made (an analyst's `read` key) stay valid."""
    owner = _owner_named(session=session, name=name)
    admin_keys = select(ApiKey.id).where(ApiKey.owner_id == owner.id, ApiKey.scope == "admin")
    _revoke(session=session, keys=admin_keys, moment=utcnow())
    _, key = _new_key(session=session, owner=owner)
    session.commit()
    return key


def _checked_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= KEY_NAME_MAX:
        raise OwnerError(f"a key's name is 1..{KEY_NAME_MAX} characters")
    return name


def create_key(*, session: Session, owner: Owner, name: str, scope: str) -> tuple[ApiKey, str]:
    """Make the owner a key of `scope`; return its record and the key (shown once)."""
    if scope not in SCOPES:
        raise OwnerError(f"a key's scope is one of {', '.join(SCOPES)}")
    record, key = _new_key(session=session, owner=owner, name=_checked_name(name),
                           scope=scope)
    session.commit()
    return record, key


def create_key_for(*, session: Session, owner_name: str, name: str, scope: str) -> str:
    """Make the named owner a key of `scope` (the command line); return the key."""
    owner = _owner_named(session=session, name=owner_name)
    return create_key(session=session, owner=owner, name=name, scope=scope)[1]


def list_keys(*, session: Session, owner: Owner) -> list[ApiKey]:
    """The owner's keys that are not revoked, oldest first."""
    return list(session.scalars(
        select(ApiKey)
        .where(ApiKey.owner_id == owner.id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at, ApiKey.id)
    ))


def get_owned_key(*, session: Session, owner: Owner, key_id: int) -> ApiKey | None:
    """The owner's active key with this id, or None (another owner's is None too)."""
    if not 0 < key_id <= MAX_KEY_ID:
        return None
    return session.scalar(select(ApiKey).where(
        ApiKey.id == key_id, ApiKey.owner_id == owner.id, ApiKey.revoked_at.is_(None)
    ))


def revoke_key(*, session: Session, key: ApiKey, moment: datetime) -> None:
    """Revoke a key at once, with its console sessions; never the owner's last admin key."""
    if key.scope == "admin":
        admins = session.scalar(select(func.count(ApiKey.id)).where(
            ApiKey.owner_id == key.owner_id, ApiKey.scope == "admin",
            ApiKey.revoked_at.is_(None)))
        if admins <= 1:
            raise LastAdminKey("This is the owner's last admin key: make another admin key "
                               "first, or rotate it with 'flask --app wsgi owners keys rotate'.")
    _revoke(session=session, keys=[key.id], moment=moment)
    session.commit()


def list_owners(*, session: Session) -> list[OwnerSummary]:
    """Every owner with its newest admin key's prefix and its number of polls."""
    polls = (
        select(func.count(Poll.id)).where(Poll.owner_id == Owner.id).scalar_subquery()
    )
    active_prefix = (
        select(ApiKey.prefix)
        .where(ApiKey.owner_id == Owner.id, ApiKey.scope == "admin",
               ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Owner.name, Owner.created_at, active_prefix, polls).order_by(Owner.name)
    )
    return [OwnerSummary(*row) for row in rows]


def active_key(*, session: Session, key: str) -> ApiKey | None:
    """Return the record of an active key, its owner loaded, or None."""
    return session.scalar(
        select(ApiKey)
        .options(joinedload(ApiKey.owner))
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )


class KeyUse:
    """When keys were last used, kept without a database write per request: each process
    writes a key's time at most once per LAST_USE_RESOLUTION, in its own short
    transaction (a request that only reads commits nothing)."""

    def __init__(self) -> None:
        self._written: dict[int, datetime] = {}

    def note(self, *, engine: Engine, key: ApiKey, moment: datetime) -> None:
        """Record that the key was used at `moment`, if this process has not lately."""
        written = self._written.get(key.id)
        if written is not None and moment - written < LAST_USE_RESOLUTION:
            return
        self._written[key.id] = moment
        with engine.begin() as connection:
            connection.execute(
                update(ApiKey)
                .where(ApiKey.id == key.id,
                       (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < moment))
                .values(last_used_at=moment)
            )
        # The request's own session may read from an older snapshot: it sees the new time
        # too, without anything for it to write.
        set_committed_value(key, "last_used_at", moment)
