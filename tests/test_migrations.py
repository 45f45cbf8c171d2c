"""Each migration after the first upgrades, downgrades and upgrades again on SQLite
(batch mode) and PostgreSQL, adding and then removing exactly what it is for."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from service import create_app
from service.infra.db import db
from tests.conftest import SECRET, migrated_postgres_schema


@dataclass(frozen=True)
class Adds:
    """What a migration adds: tables, columns on ballots and polls, unique indexes on
    ballots."""

    previous: str
    tables: set[str] = field(default_factory=set)
    ballot_columns: set[str] = field(default_factory=set)
    poll_columns: set[str] = field(default_factory=set)
    ballot_unique_indexes: set[str] = field(default_factory=set)


MIGRATIONS = {
    "0002": Adds(  # receipt and idempotency hashes on ballots
        previous="0001",
        ballot_columns={"receipt_hash", "idempotency_hash"},
        ballot_unique_indexes={"ix_ballots_receipt_hash", "ix_ballots_poll_idempotency"},
    ),
    "0003": Adds(  # hidden comments, webhooks, their deliveries and attempts
        previous="0002",
        tables={"webhooks", "webhook_deliveries", "webhook_attempts"},
        ballot_columns={"comment_hidden"},
    ),
    "0004": Adds(  # console sessions, revocable on sign-out and key rotation
        previous="0003",
        tables={"console_sessions"},
    ),
    "0005": Adds(  # a poll's retention of what identifies its ballots
        previous="0004",
        poll_columns={"retention_days"},
    ),
}


def schema(engine) -> tuple[set[str], set[str], set[str], set[str]]:
    """The tables, the ballots' columns, the polls' columns and the ballots' unique
    indexes."""
    inspector = sa.inspect(engine)
    columns = {column["name"] for column in inspector.get_columns("ballots")}
    poll_columns = {column["name"] for column in inspector.get_columns("polls")}
    unique = {index["name"] for index in inspector.get_indexes("ballots") if index["unique"]}
    return set(inspector.get_table_names()), columns, poll_columns, unique


def has_all(engine, adds: Adds) -> bool:
    tables, columns, poll_columns, unique = schema(engine)
    return (adds.tables <= tables and adds.ballot_columns <= columns
            and adds.poll_columns <= poll_columns and adds.ballot_unique_indexes <= unique)


def has_none(engine, adds: Adds) -> bool:
    tables, columns, poll_columns, unique = schema(engine)
    return not (adds.tables & tables or adds.ballot_columns & columns
                or adds.poll_columns & poll_columns or adds.ballot_unique_indexes & unique)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("revision", list(MIGRATIONS))
def test_migration_adds_and_removes_what_it_is_for(tmp_path, backend, revision):
    adds = MIGRATIONS[revision]
    if backend == "sqlite":
        database = nullcontext(f"sqlite:///{tmp_path / 'migrated.db'}")
    else:
        database = migrated_postgres_schema(f"pollbox_migration_{revision}_{os.getpid()}")
    with database as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET})
        with app.app_context():
            upgrade()
            assert has_all(db.engine, adds)
            downgrade(revision=adds.previous)
            assert has_none(db.engine, adds)
            upgrade()
            assert has_all(db.engine, adds)
            db.engine.dispose()
