"""Migration 0002 (receipt and idempotency hashes on ballots) upgrades and downgrades on
SQLite (batch mode) and PostgreSQL."""

from __future__ import annotations

import os
from contextlib import nullcontext

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from service import create_app
from service.extensions import db
from tests.conftest import SECRET, migrated_postgres_schema

NEW_COLUMNS = {"receipt_hash", "idempotency_hash"}
NEW_UNIQUE_INDEXES = {"ix_ballots_receipt_hash", "ix_ballots_poll_idempotency"}


def ballots_shape(engine) -> tuple[set[str], set[str]]:
    inspector = sa.inspect(engine)
    columns = {column["name"] for column in inspector.get_columns("ballots")}
    unique = {index["name"] for index in inspector.get_indexes("ballots") if index["unique"]}
    return columns, unique


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0002_adds_and_removes_the_hash_columns(tmp_path, backend):
    if backend == "sqlite":
        database = nullcontext(f"sqlite:///{tmp_path / 'migrated.db'}")
    else:
        database = migrated_postgres_schema(f"pollbox_migration_{os.getpid()}")
    with database as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET})
        with app.app_context():
            upgrade()
            columns, unique = ballots_shape(db.engine)
            assert NEW_COLUMNS.issubset(columns)
            assert NEW_UNIQUE_INDEXES.issubset(unique)

            downgrade(revision="0001")
            columns, unique = ballots_shape(db.engine)
            assert not NEW_COLUMNS & columns
            assert not NEW_UNIQUE_INDEXES & unique

            upgrade()
            assert NEW_COLUMNS.issubset(ballots_shape(db.engine)[0])
            db.engine.dispose()
