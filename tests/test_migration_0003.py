"""Migration 0003 (hidden comments, webhooks, deliveries, attempts) upgrades and
downgrades on SQLite (batch mode) and PostgreSQL."""

from __future__ import annotations

import os
from contextlib import nullcontext

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from service import create_app
from service.extensions import db
from tests.conftest import SECRET, migrated_postgres_schema

NEW_TABLES = {"webhooks", "webhook_deliveries", "webhook_attempts"}


def shape(engine) -> tuple[set[str], bool]:
    inspector = sa.inspect(engine)
    columns = {column["name"] for column in inspector.get_columns("ballots")}
    return set(inspector.get_table_names()), "comment_hidden" in columns


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0003_adds_and_removes_webhooks_and_hidden_comments(tmp_path, backend):
    if backend == "sqlite":
        database = nullcontext(f"sqlite:///{tmp_path / 'migrated.db'}")
    else:
        database = migrated_postgres_schema(f"pollbox_migration3_{os.getpid()}")
    with database as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET})
        with app.app_context():
            upgrade()
            tables, hidden = shape(db.engine)
            assert tables >= NEW_TABLES and hidden

            downgrade(revision="0002")
            tables, hidden = shape(db.engine)
            assert not NEW_TABLES & tables and not hidden

            upgrade()
            tables, hidden = shape(db.engine)
            assert tables >= NEW_TABLES and hidden
            db.engine.dispose()
