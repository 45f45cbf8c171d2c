"""The database extensions, created unbound and bound by the factory: SQLAlchemy (the
record: SQLite by default, PostgreSQL in production) and Alembic migrations."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import make_url

from service.infra.models import Base

SQLITE_BUSY_TIMEOUT_MS = 15_000
# Owner-only: the database holds polls' signing secrets and webhooks' secrets.
SQLITE_FILE_MODE = 0o600
# SQLite gives the files it makes beside the database (WAL, its index, the rollback
# journal) the database's mode; ones made before it was tightened keep their own.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

log = logging.getLogger(__name__)

db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate(render_as_batch=True, compare_type=True)


def engine_options(config: Mapping) -> dict:
    """Pool and driver settings for the configured database."""
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    pool = {"pool_size": config["DATABASE_POOL_SIZE"],
            "max_overflow": config["DATABASE_MAX_OVERFLOW"]}
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            pool = {}  # one in-memory database, one shared connection: nothing to size
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **pool}
    return {"pool_pre_ping": True, **pool}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers and one writer work at once. Writers queue for the busy timeout,
    # set by the driver's `timeout` connect argument (engine_options, or the configured
    # SQLALCHEMY_ENGINE_OPTIONS): a PRAGMA here would override the configuration.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _private_sqlite_file(uri: str, instance_path: str) -> None:
    """Create the SQLite file owner-only before SQLite makes it 0644; tighten existing ones."""
    path = _sqlite_path(uri, instance_path)
    if path is None:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # An empty file is an empty SQLite database; an existing one is left as it is.
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, SQLITE_FILE_MODE))
    for name in (path, *(path + suffix for suffix in SQLITE_SIDE_FILES)):
        try:
            os.chmod(name, SQLITE_FILE_MODE)
        except FileNotFoundError:
            continue
        except PermissionError:  # another user's file: say so rather than not start
            log.warning("cannot make %s owner-only (mode %o)", name, SQLITE_FILE_MODE)


def _sqlite_path(uri: str, instance_path: str) -> str | None:
    """The file an SQLite URI opens, resolved as Flask-SQLAlchemy does; None if none."""
    url = make_url(uri)
    in_memory = url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    if url.get_backend_name() != "sqlite" or in_memory:
        return None
    path = url.database.removeprefix("file:") if url.query.get("uri") else url.database
    # Relative to the instance folder, as Flask-SQLAlchemy opens it; absolute stays so.
    return os.path.join(instance_path, path)


def init_app(app: Flask) -> None:
    """Bind the database and the migrations (service/migrations/, shipped in the package,
    so that an installed Pollbox can create and upgrade its database)."""
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config))
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    _private_sqlite_file(uri, app.instance_path)
    db.init_app(app)
    if uri.startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)
    # The app is the `service` package: its root is the package's folder.
    migrate.init_app(app, db, directory=os.path.join(app.root_path, "migrations"))
