"""Configuration: read once from the environment, coerced, with safe defaults."""

from __future__ import annotations

import os
import stat

import pytest
import sqlalchemy as sa

from service import create_app
from service.infra import config
from service.infra.db import db, engine_options

OWNER_ONLY = 0o077  # group and other bits: none may be set


def test_defaults_use_sqlite_in_the_instance_folder_and_no_redis(tmp_path):
    settings = config.from_environ({}, str(tmp_path))
    assert settings["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'pollbox.db'}"
    assert settings["REDIS_URL"] is None
    assert settings["TRUSTED_PROXY_COUNT"] == 0
    assert settings["MAX_CONTENT_LENGTH"] == 65536
    assert settings["RATELIMIT_VOTES"] == "60 per minute"
    assert settings["CONSOLE_SIGNIN_LIMIT"] == "10 per minute"
    assert settings["PUBLIC_BASE_URL"] is None
    assert settings["WEBHOOK_ALLOWED_PORTS"] == {443, 8443}
    assert "SECRET_KEY" not in settings


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////srv/pollbox.db", "sqlite:////srv/pollbox.db"),
    ],
)
def test_database_url_uses_psycopg3_for_postgresql(url, expected, tmp_path):
    assert config.database_uri(url, str(tmp_path)) == expected


def test_environment_values_are_coerced(tmp_path):
    settings = config.from_environ(
        {
            "TRUSTED_PROXY_COUNT": "2",
            "MAX_CONTENT_LENGTH": "131072",
            "PUBLIC_BASE_URL": "https://polls.example/",
            "REDIS_URL": "redis://cache:6379/0",
            "SECRET_KEY": "s3cret",
            "CONSOLE_SIGNIN_LIMIT": "3 per minute",
            "WEBHOOK_ALLOWED_PORTS": "443, 9443",
        },
        str(tmp_path),
    )
    assert settings["TRUSTED_PROXY_COUNT"] == 2
    assert settings["MAX_CONTENT_LENGTH"] == 131072
    assert settings["PUBLIC_BASE_URL"] == "https://polls.example"
    assert settings["REDIS_URL"] == "redis://cache:6379/0"
    assert settings["SECRET_KEY"] == "s3cret"
    assert settings["CONSOLE_SIGNIN_LIMIT"] == "3 per minute"
    assert settings["WEBHOOK_ALLOWED_PORTS"] == {443, 9443}


@pytest.mark.parametrize(
    "name, value",
    [("TRUSTED_PROXY_COUNT", "two"), ("TRUSTED_PROXY_COUNT", "-1"), ("MAX_CONTENT_LENGTH", "10"),
     ("WEBHOOK_ALLOWED_PORTS", "https"), ("WEBHOOK_ALLOWED_PORTS", "0"),
     ("WEBHOOK_ALLOWED_PORTS", "443,70000")],
)
def test_unusable_environment_values_are_refused_by_name(name, value, tmp_path):
    with pytest.raises(config.ConfigError, match=name):
        config.from_environ({name: value}, str(tmp_path))


def test_secret_key_is_generated_once_and_kept_private(tmp_path):
    first = config.instance_secret_key(str(tmp_path))
    second = config.instance_secret_key(str(tmp_path))
    assert first == second
    assert len(first) >= 48
    mode = stat.S_IMODE(os.stat(tmp_path / config.SECRET_KEY_FILE).st_mode)
    assert mode == 0o600


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_database_starts_without_pool_sizes(uri, tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "s"})
    with app.app_context():
        from service.infra.db import db

        assert db.session.execute(sa.text("SELECT 1")).scalar() == 1
    assert "pool_size" not in engine_options(app.config)
    on_disk = engine_options({**app.config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db"})
    assert on_disk["pool_size"] == app.config["DATABASE_POOL_SIZE"]


def test_app_without_secret_key_takes_the_instance_secret(tmp_path, monkeypatch):
    monkeypatch.setattr("flask.Flask.auto_find_instance_path", lambda self: str(tmp_path))
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}"})
    assert app.config["SECRET_KEY"] == (tmp_path / config.SECRET_KEY_FILE).read_text().strip()


def test_in_process_redis_stand_in_warns_once_that_dedup_is_per_process(tmp_path, caplog):
    create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}", "SECRET_KEY": "x"})
    warnings = [r for r in caplog.records if "in-process Redis stand-in" in r.getMessage()]
    assert len(warnings) == 1
    assert "per process" in warnings[0].getMessage()


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_sqlite_database_is_readable_by_its_owner_alone(tmp_path):
    path = tmp_path / "instance" / "pollbox.db"
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SECRET_KEY": "s"})
    assert mode(path) & OWNER_ONLY == 0  # before the first connection
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE secrets (value TEXT)"))
        connection.execute(sa.text("INSERT INTO secrets VALUES ('whsec_x')"))
        # WAL: the write log and its index sit beside the database while it is open.
        for side in ("-wal", "-shm"):
            assert mode(f"{path}{side}") & OWNER_ONLY == 0, side
    with app.app_context():
        db.engine.dispose()


def test_an_existing_sqlite_database_and_its_side_files_are_made_owner_only(tmp_path):
    path = tmp_path / "pollbox.db"
    for name in (path, f"{path}-wal", f"{path}-shm"):
        open(name, "w").close()
        os.chmod(name, 0o644)
    create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SECRET_KEY": "s"})
    for name in (path, f"{path}-wal", f"{path}-shm"):
        assert mode(name) & OWNER_ONLY == 0, name


def test_a_relative_sqlite_path_is_made_in_the_instance_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("flask.Flask.auto_find_instance_path", lambda self: str(tmp_path))
    monkeypatch.chdir(tmp_path / "..")
    create_app({"SQLALCHEMY_DATABASE_URI": "sqlite:///relative.db", "SECRET_KEY": "s"})
    assert mode(tmp_path / "relative.db") & OWNER_ONLY == 0
