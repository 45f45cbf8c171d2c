"""Each migration after the first upgrades, downgrades and upgrades again on SQLite
(batch mode) and PostgreSQL, adding and then removing exactly what it is for."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
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
    claim_columns: set[str] = field(default_factory=set)
    key_columns: set[str] = field(default_factory=set)
    choice_columns: set[str] = field(default_factory=set)
    option_columns: set[str] = field(default_factory=set)


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
    "0006": Adds(  # claims that expire: windowed polls backed by the database too
        previous="0005",
        claim_columns={"expires_at"},
    ),
    "0007": Adds(  # API keys with a name, a scope and a last-use time
        previous="0006",
        key_columns={"name", "scope", "last_used_at"},
    ),
    "0008": Adds(  # a poll's baseline: the votes it had before it moved to Pollbox
        previous="0007",
        tables={"poll_baselines", "poll_baseline_options"},
    ),
    "0009": Adds(  # a poll may show its options in an order of each visitor's own
        previous="0008",
        poll_columns={"shuffle_options"},
    ),
    "0011": Adds(  # a poll may ask votes for a proof of work
        previous="0009",
        poll_columns={"challenge", "challenge_until"},
        tables={"spent_challenges"},
    ),
    "0012": Adds(  # a poll may close itself at exactly max_votes ballots
        previous="0011",
        poll_columns={"max_votes", "closed_reason"},
    ),
    "0013": Adds(  # a voter may change their vote; the ballot says when they last did
        previous="0012",
        poll_columns={"allow_change"},
        ballot_columns={"changed_at"},
    ),
    "0014": Adds(  # rating and NPS polls: a poll's scale, an option's numeric value
        previous="0013",
        poll_columns={"scale"},
        option_columns={"value"},
    ),
    "0015": Adds(  # a ballot's choices keep the voter's order: ranked polls
        previous="0014",
        choice_columns={"rank"},
        ballot_columns={"ranking"},
    ),
}


def schema(engine) -> tuple[set[str], ...]:
    """The tables, the ballots' columns, the polls' columns, the ballots' unique indexes,
    the vote claims' columns, the API keys' columns, the ballot choices' columns and the
    options' columns."""
    inspector = sa.inspect(engine)
    columns = {column["name"] for column in inspector.get_columns("ballots")}
    poll_columns = {column["name"] for column in inspector.get_columns("polls")}
    unique = {index["name"] for index in inspector.get_indexes("ballots") if index["unique"]}
    claim_columns = {column["name"] for column in inspector.get_columns("vote_claims")}
    key_columns = {column["name"] for column in inspector.get_columns("api_keys")}
    choice_columns = {column["name"] for column in inspector.get_columns("ballot_choices")}
    option_columns = {column["name"] for column in inspector.get_columns("options")}
    return (set(inspector.get_table_names()), columns, poll_columns, unique, claim_columns,
            key_columns, choice_columns, option_columns)


def has_all(engine, adds: Adds) -> bool:
    (tables, columns, poll_columns, unique, claim_columns, key_columns, choices,
     options) = schema(engine)
    return (adds.tables <= tables and adds.ballot_columns <= columns
            and adds.poll_columns <= poll_columns and adds.ballot_unique_indexes <= unique
            and adds.claim_columns <= claim_columns and adds.key_columns <= key_columns
            and adds.choice_columns <= choices and adds.option_columns <= options)


def has_none(engine, adds: Adds) -> bool:
    (tables, columns, poll_columns, unique, claim_columns, key_columns, choices,
     options) = schema(engine)
    return not (adds.tables & tables or adds.ballot_columns & columns
                or adds.poll_columns & poll_columns or adds.ballot_unique_indexes & unique
                or adds.claim_columns & claim_columns or adds.key_columns & key_columns
                or adds.choice_columns & choices or adds.option_columns & options)


@contextmanager
def migrated_app(tmp_path, backend: str, name: str) -> Iterator[Flask]:
    """An app on a fresh database of `backend`, migrated to the head, in its context;
    the engine disposed of afterwards."""
    if backend == "sqlite":
        database = nullcontext(f"sqlite:///{tmp_path / 'migrated.db'}")
    else:
        database = migrated_postgres_schema(f"pollbox_migration_{name}_{os.getpid()}")
    with database as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET})
        with app.app_context():
            upgrade()
            yield app
            db.engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("revision", list(MIGRATIONS))
def test_migration_adds_and_removes_what_it_is_for(tmp_path, backend, revision):
    adds = MIGRATIONS[revision]
    with migrated_app(tmp_path, backend, revision):
        assert has_all(db.engine, adds)
        downgrade(revision=adds.previous)
        assert has_none(db.engine, adds)
        upgrade()
        assert has_all(db.engine, adds)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_windowed_ballots_inside_their_window_get_their_claims(tmp_path, backend):
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with migrated_app(tmp_path, backend, "claims"):
        downgrade(revision="0005")
        with db.engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO owners (id, name, created_at) VALUES (1, 'o', :now)"),
                {"now": now})
            for poll_id, window in (("Windowed0001", 3600), ("OneVote00001", None)):
                connection.execute(sa.text(
                    "INSERT INTO polls (id, owner_id, question, kind, max_choices, "
                    "allow_other, allow_comment, duplicate_check, vote_window_seconds, "
                    "results, results_min_votes, allowed_origins, locale, "
                    "signing_secret, created_at, updated_at) VALUES (:id, 1, 'Q?', "
                    "'single', 1, false, false, 'cookie_and_ip', :window, 'always', 0, "
                    "'[]', 'en', 's', :now, :now)"), {"id": poll_id, "window": window,
                                                      "now": now})
            for ballot_id, poll_id, age, ip in (
                    ("Old000000000001", "Windowed0001", 7200, "ip-old"),
                    ("Mid000000000001", "Windowed0001", 1800, "ip-a"),
                    ("New000000000001", "Windowed0001", 60, "ip-a"),
                    ("Ever00000000001", "OneVote00001", 60, "ip-b")):
                connection.execute(sa.text(
                    "INSERT INTO ballots (id, poll_id, created_at, cookie_hash, ip_hash, "
                    "comment_hidden) VALUES (:id, :poll, :at, :cookie, :ip, false)"),
                    {"id": ballot_id, "poll": poll_id, "cookie": f"c-{ballot_id}",
                     "ip": ip, "at": now - timedelta(seconds=age)})
        upgrade()
        with db.engine.connect() as connection:
            claims = {identity: (ballot, until) for identity, ballot, until in
                      connection.execute(sa.text(
                          "SELECT identity, ballot_id, expires_at FROM vote_claims"))}
            ballots = connection.execute(sa.text("SELECT count(*) FROM ballots")).scalar()
    assert ballots == 4  # no later migration loses a ballot
    until = now - timedelta(seconds=60) + timedelta(seconds=3600)
    assert {identity: ballot for identity, (ballot, _) in claims.items()} == {
        "cookie:c-Mid000000000001": "Mid000000000001",
        "cookie:c-New000000000001": "New000000000001",
        "ip:ip-a": "New000000000001",  # the address's latest ballot holds its window
    }
    assert str(claims["ip:ip-a"][1])[:19] == str(until)[:19]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_keys_made_before_scopes_are_their_owners_admin_keys(tmp_path, backend):
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with migrated_app(tmp_path, backend, "keys"):
        downgrade(revision="0006")
        with db.engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO owners (id, name, created_at) VALUES (1, 'o', :now)"),
                {"now": now})
            connection.execute(sa.text(
                "INSERT INTO api_keys (owner_id, key_hash, prefix, created_at) "
                "VALUES (1, :hash, 'pbk_abcdefgh', :now)"), {"hash": "a" * 64, "now": now})
            connection.execute(sa.text(
                "INSERT INTO console_sessions (id, api_key_id, created_at, expires_at) "
                "SELECT :id, id, :now, :now FROM api_keys"), {"id": "s" * 64, "now": now})
        upgrade()
        with db.engine.connect() as connection:
            found = connection.execute(sa.text(
                "SELECT name, scope, last_used_at FROM api_keys")).all()
            sessions = connection.execute(sa.text(
                "SELECT count(*) FROM console_sessions")).scalar()
    assert [tuple(row) for row in found] == [("default", "admin", None)]
    # SQLite rebuilds api_keys to drop the defaults: its sessions are not cascaded away.
    assert sessions == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_choices_made_before_ranks_are_ranked_in_the_options_order(tmp_path, backend):
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with migrated_app(tmp_path, backend, "ranks"):
        downgrade(revision="0011")
        with db.engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO owners (id, name, created_at) VALUES (1, 'o', :now)"),
                {"now": now})
            connection.execute(sa.text(
                "INSERT INTO polls (id, owner_id, question, kind, max_choices, "
                "allow_other, allow_comment, duplicate_check, results, results_min_votes, "
                "allowed_origins, locale, signing_secret, created_at, updated_at) VALUES "
                "('Multi0000001', 1, 'Q?', 'multiple', 3, false, false, 'none', 'always', "
                "0, '[]', 'en', 's', :now, :now)"), {"now": now})
            for option_id, position in ((7, 2), (8, 0), (9, 1)):
                connection.execute(sa.text(
                    "INSERT INTO options (id, poll_id, label, position) "
                    "VALUES (:id, 'Multi0000001', :label, :position)"),
                    {"id": option_id, "label": f"o{option_id}", "position": position})
            for ballot_id, option_ids in (("Three0000000001", (7, 8, 9)),
                                          ("One00000000001", (7,))):
                connection.execute(sa.text(
                    "INSERT INTO ballots (id, poll_id, created_at, comment_hidden) "
                    "VALUES (:id, 'Multi0000001', :now, false)"), {"id": ballot_id, "now": now})
                for option_id in option_ids:
                    connection.execute(sa.text(
                        "INSERT INTO ballot_choices (ballot_id, option_id) "
                        "VALUES (:ballot, :option)"), {"ballot": ballot_id, "option": option_id})
        upgrade()
        with db.engine.connect() as connection:
            ranks = {(ballot, option): rank for ballot, option, rank in connection.execute(
                sa.text("SELECT ballot_id, option_id, rank FROM ballot_choices"))}
    assert ranks == {("Three0000000001", 8): 1, ("Three0000000001", 9): 2,
                     ("Three0000000001", 7): 3, ("One00000000001", 7): 1}
