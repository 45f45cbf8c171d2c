"""Owners and API keys on the command line, and the demo seed (API.md, Owners and API keys)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from service.infra.db import db
from service.infra.models import ApiKey, Ballot, Base, Owner, Poll
from tests.conftest import SEED_POLL
from tests.console.console_client import sign_in as sign_in_with

POLLS = "/api/v1/polls"
TALLIES_URL = re.compile(r"https?://\S+?(/api/v1/polls/([A-Za-z0-9]+)/tallies)\b")


@pytest.fixture
def cli(app):
    """Run a `flask` command; return click's result."""
    runner = app.test_cli_runner()

    def run(*args: str):
        return runner.invoke(args=list(args))

    return run


@pytest.fixture
def create_owner(cli):
    """`owners create NAME`; return the printed key."""

    def create(name: str) -> str:
        result = cli("owners", "create", name)
        assert result.exit_code == 0, result.output
        return last_line(result.stdout)

    return create


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert lines, "the command printed nothing on stdout"
    return lines[-1].strip()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def list_status(client, key: str) -> int:
    return client.get(POLLS, headers=bearer(key)).status_code


def every_stored_value(app) -> str:
    """All rows of all tables as text, to search for what must never be stored."""
    with app.app_context():
        return "\n".join(
            repr(row)
            for table in Base.metadata.sorted_tables
            for row in db.session.execute(select(table)).all()
        )


# --- owners create ---------------------------------------------------------------------


def test_create_prints_a_key_last_that_works_against_the_api(client, create_owner):
    key = create_owner("PsyWeb")

    assert list_status(client, key) == 200
    created = client.post(POLLS, json=SEED_POLL, headers=bearer(key))
    assert created.status_code == 201, created.get_json()


def test_create_stores_only_the_sha256_of_the_key(app, create_owner):
    key = create_owner("PsyWeb")

    with app.app_context():
        stored = db.session.scalars(select(ApiKey)).all()
    assert [row.key_hash for row in stored] == [hashlib.sha256(key.encode()).hexdigest()]
    assert key not in every_stored_value(app)


def test_each_owner_gets_a_different_key(create_owner):
    assert create_owner("PsyWeb") != create_owner("Someone else")


def test_create_refuses_a_duplicate_name_with_a_clear_message(app, cli, create_owner):
    create_owner("PsyWeb")

    result = cli("owners", "create", "PsyWeb")

    assert result.exit_code != 0
    assert "already exists" in result.output and "PsyWeb" in result.output
    assert result.stdout.strip() == ""  # no key printed
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Owner)) == 1
        assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 1


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_create_refuses_an_empty_or_overlong_name(cli, name):
    result = cli("owners", "create", name)

    assert result.exit_code != 0
    assert "1..100 characters" in result.output


# --- owners keys rotate ----------------------------------------------------------------


def test_rotate_revokes_the_old_key_and_prints_a_working_new_one(client, cli, create_owner):
    old = create_owner("PsyWeb")
    poll = client.post(POLLS, json=SEED_POLL, headers=bearer(old)).get_json()

    result = cli("owners", "keys", "rotate", "PsyWeb")

    assert result.exit_code == 0, result.output
    new = last_line(result.stdout)
    assert new != old
    refused = client.get(POLLS, headers=bearer(old))
    assert refused.status_code == 401
    assert refused.get_json()["code"] == "unauthorized"
    listed = client.get(POLLS, headers=bearer(new))
    assert [p["id"] for p in listed.get_json()] == [poll["id"]]  # same owner, same polls


def test_rotate_of_an_unknown_owner_fails_with_a_clear_message(cli):
    result = cli("owners", "keys", "rotate", "Nobody")

    assert result.exit_code != 0
    assert "no owner named 'Nobody'" in result.output


# --- owners list -----------------------------------------------------------------------


def test_list_shows_each_owner_with_its_poll_count_and_no_full_key(client, cli, create_owner):
    key = create_owner("PsyWeb")
    other_key = create_owner("Quiet Site")
    for _ in range(2):
        assert client.post(POLLS, json=SEED_POLL, headers=bearer(key)).status_code == 201
    rotated = last_line(cli("owners", "keys", "rotate", "PsyWeb").stdout)

    result = cli("owners", "list")

    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert rows["PsyWeb"][-1] == "2"
    assert rows["Quiet"][-1] == "0"
    for secret in (key, other_key, rotated):
        assert secret not in result.output


def test_list_without_owners_says_how_to_create_one(cli):
    result = cli("owners", "list")

    assert result.exit_code == 0
    assert "owners create" in result.output


# --- demo ------------------------------------------------------------------------------


def test_demo_is_idempotent_and_prints_a_fresh_working_key_last(app, client, cli):
    first = cli("demo")
    second = cli("demo")

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    first_key, second_key = last_line(first.stdout), last_line(second.stdout)
    assert first_key != second_key
    assert list_status(client, first_key) == 401
    listed = client.get(POLLS, headers=bearer(second_key))
    assert listed.status_code == 200
    assert json.loads(listed.headers["X-Pagination"])["total"] == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Poll)) == 1
        assert db.session.scalar(select(func.count()).select_from(Owner)) == 1


def test_demo_prints_the_tallies_url_of_its_poll(client, cli):
    outputs = [cli("demo").stdout for _ in range(2)]

    found = [TALLIES_URL.search(output) for output in outputs]
    assert all(found), outputs
    assert found[0].group(2) == found[1].group(2)  # the same demo poll both times
    tallies = client.get(found[0].group(1))
    assert tallies.status_code == 200
    assert tallies.get_json()["poll_id"] == found[0].group(2)


def test_demo_prints_the_console_where_its_key_signs_in(client, cli):
    output = cli("demo", "--base-url", "http://localhost").stdout

    console_url = re.search(r"Console: +http://localhost(/console/)", output)
    assert console_url, output
    sign_in = client.get(console_url.group(1), follow_redirects=True)
    assert sign_in.status_code == 200 and sign_in.request.path == "/console/sign-in"
    assert sign_in_with(client, last_line(output)).status_code == 302


def test_demo_leaves_other_owners_alone(client, cli, create_owner):
    key = create_owner("PsyWeb")

    assert cli("demo").exit_code == 0

    assert list_status(client, key) == 200
    assert client.get(POLLS, headers=bearer(key)).get_json() == []


def test_demo_poll_shows_its_3978_earlier_votes_without_inventing_ballots(app, client, cli,
                                                                         clock):
    clock.frozen = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    output = cli("demo").stdout
    tallies_url = TALLIES_URL.search(output).group(1)
    widget_url = re.search(r"Widget: +http://[^/]+(/\S+)", output).group(1)

    tallies = client.get(tallies_url).get_json()
    assert tallies["total_votes"] == 3978
    assert [option["votes"] for option in tallies["options"]] == [1203, 1012, 1763]
    assert tallies["baseline"] == {"total_votes": 3978, "source": "PsyWeb poll, 2009-2026",
                                   "as_of": "2026-11-30T00:00:00Z"}
    widget = client.get(widget_url, query_string={"view": "results"}).get_data(as_text=True)
    assert "Total votes: 3,978" in widget
    assert "includes 3,978 votes before Nov 30, 2026" in widget
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Ballot)) == 0
    assert cli("demo").exit_code == 0  # seeded once: a second run keeps the same numbers
    assert client.get(tallies_url).get_json()["total_votes"] == 3978
