"""Reconciliation: Redis tallies that drifted from the database are found, counted and
rebuilt exactly; the periodic job runs once per period across processes."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from service.infra import keys
from service.infra.db import db
from service.infra.redis import redis_handle
from service.tallies import counts as tallies
from service.tallies import reconcile

REDIS_STACKS = ["sqlite-redis", "postgresql-redis"]


def drift_count(kind: str) -> float:
    return REGISTRY.get_sample_value("pollbox_reconcile_drift_total", {"kind": kind}) or 0.0


def stored(poll: dict, context: str | None = None) -> tallies.Counts:
    return tallies.Counts.from_hash(redis_handle().client.hgetall(keys.tally(poll["id"], context)))


@pytest.fixture
def voted_poll(make_poll, vote):
    poll = make_poll(duplicate_check="none")
    for n, option in enumerate((0, 0, 1)):
        assert vote(poll, [poll["options"][option]["id"]], ip=f"203.0.113.{n}",
                    context="page-a" if n else None).status_code == 201
    return poll


@pytest.mark.parametrize("stack", REDIS_STACKS, indirect=True)
def test_a_tally_that_drifted_is_counted_logged_and_rebuilt(app, voted_poll, caplog):
    first = voted_poll["options"][0]["id"]
    before = drift_count("mismatch")
    with app.app_context():
        redis_handle().client.hincrby(keys.tally(voted_poll["id"]), f"o:{first}", 5)
        redis_handle().client.hincrby(keys.tally(voted_poll["id"], "page-a"), "total", 1)

        report = reconcile.reconcile(engine=db.engine, redis=redis_handle())

        assert report.drift == {"mismatch": 2, "missing": 0}
        assert stored(voted_poll).total == 3
        assert stored(voted_poll).options[first] == 2
        assert stored(voted_poll, "page-a").total == 2
    assert drift_count("mismatch") == before + 2
    assert "tally drift" in caplog.text


@pytest.mark.parametrize("stack", REDIS_STACKS, indirect=True)
def test_tallies_in_step_with_the_database_are_left_alone(app, voted_poll):
    with app.app_context():
        report = reconcile.reconcile(engine=db.engine, redis=redis_handle())
        assert report.rebuilt == 0
        assert report.checked == 2  # the poll's tally and its one context


@pytest.mark.parametrize("stack", REDIS_STACKS, indirect=True)
def test_a_flushed_redis_gets_its_tallies_back(app, voted_poll):
    with app.app_context():
        redis_handle().client.flushdb()
        report = reconcile.reconcile(engine=db.engine, redis=redis_handle())
        assert report.drift["missing"] == 1
        assert stored(voted_poll).total == 3


@pytest.mark.parametrize("stack", REDIS_STACKS, indirect=True)
def test_reconcile_command_names_what_it_rebuilt(app, voted_poll):
    with app.app_context():
        redis_handle().client.hset(keys.tally(voted_poll["id"]), "total", 99)
    result = app.test_cli_runner().invoke(args=["reconcile", voted_poll["id"]])
    assert result.exit_code == 0, result.output
    assert "1 differed from the database" in result.output
    with app.app_context():
        assert stored(voted_poll).total == 3


@pytest.mark.parametrize("stack", REDIS_STACKS, indirect=True)
def test_reconcile_command_refuses_an_unknown_poll(app):
    result = app.test_cli_runner().invoke(args=["reconcile", "nope"])
    assert result.exit_code == 1
    assert "No poll 'nope'" in result.output


@pytest.mark.parametrize("stack", REDIS_STACKS, indirect=True)
def test_one_process_per_period_runs_the_periodic_job(app, voted_poll):
    app.config["RECONCILE_INTERVAL_SECONDS"] = 60
    with app.app_context():
        redis_handle().client.delete(keys.reconcile_lock())
    first = reconcile.run_once(app)
    second = reconcile.run_once(app)  # as another worker would, in the same period
    assert first is not None
    assert first.checked == 2
    assert second is None


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_the_periodic_job_needs_a_shared_redis(app):
    app.config["RECONCILE_INTERVAL_SECONDS"] = 60
    assert reconcile.start_periodic(app) is None
