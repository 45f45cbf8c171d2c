"""Metrics, request ids and structured logs."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from prometheus_client import REGISTRY

from service import create_app, owners
from service.infra import logs as logging_setup
from service.infra.db import db
from tests.conftest import SECRET, SEED_POLL

# Nothing listens on port 1: connections are refused at once.
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_metrics_count_accepted_and_rejected_votes_by_code(client, make_poll, vote):
    poll = make_poll(duplicate_check="cookie")
    accepted = sample("pollbox_votes_total", outcome="accepted", code="none")
    duplicate = sample("pollbox_votes_total", outcome="rejected", code="duplicate_vote")
    invalid = sample("pollbox_votes_total", outcome="rejected", code="validation_error")
    browser = client.application.test_client()

    assert vote(poll, browser=browser).status_code == 201
    assert vote(poll, browser=browser).status_code == 409
    assert vote(poll, choices=[999]).status_code == 422

    assert sample("pollbox_votes_total", outcome="accepted", code="none") == accepted + 1
    assert sample("pollbox_votes_total", outcome="rejected", code="duplicate_vote") == (
        duplicate + 1
    )
    assert sample("pollbox_votes_total", outcome="rejected", code="validation_error") == (
        invalid + 1
    )


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_metrics_endpoint_serves_prometheus_text_with_latency_by_endpoint(client):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert 'pollbox_request_duration_seconds_bucket{endpoint="ops.healthz"' in text
    assert "pollbox_redis_fallbacks_total" in text or "pollbox_redis_fallbacks" in text
    assert "pollbox_sse_streams_open" in text



@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_cached_latency_children_still_count_each_status_apart(client, make_poll):
    poll = make_poll()
    def count(status: str) -> float:
        return sample("pollbox_request_duration_seconds_count", endpoint="polls.PollById",
                      method="GET", status=status)

    found, missing = count("200"), count("404")
    for _ in range(2):  # the second pass goes through the cached children
        assert client.get(f"/api/v1/polls/{poll['id']}").status_code == 200
        assert client.get("/api/v1/polls/nope").status_code == 404
    assert count("200") == found + 2
    assert count("404") == missing + 2

def test_redis_fallbacks_are_counted(tmp_path, sqlite_template):
    path = tmp_path / "pollbox.db"
    shutil.copyfile(sqlite_template, path)
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SECRET_KEY": SECRET,
                      "REDIS_URL": UNREACHABLE_REDIS_URL})
    with app.app_context():
        key = owners.create_owner(session=db.session, name="PsyWeb")
    client = app.test_client()
    before = sample("pollbox_redis_fallbacks_total", operation="reading a tally")

    poll = client.post("/api/v1/polls", json=SEED_POLL, headers={"Authorization": f"Bearer {key}"})
    assert poll.status_code == 201
    tallies = client.get(f"/api/v1/polls/{poll.get_json()['id']}/tallies")

    assert tallies.status_code == 200
    assert sample("pollbox_redis_fallbacks_total", operation="reading a tally") == before + 1


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
@pytest.mark.parametrize(
    ("given", "echoed"),
    [("abc-123.DEF_4", True), ("x" * 128, True), ("x" * 129, False), ("bad id", False),
     ('evil"{<script>', False), ("", False)],
)
def test_request_id_is_echoed_when_safe_and_replaced_otherwise(client, given, echoed):
    response = client.get("/healthz", headers={"X-Request-ID": given})
    answered = response.headers["X-Request-ID"]
    if echoed:
        assert answered == given
    else:
        assert answered != given
        assert logging_setup.REQUEST_ID_PATTERN.fullmatch(answered)


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_errors_carry_a_request_id_too(client):
    response = client.get("/api/v1/polls/nope")
    assert response.status_code == 404
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_each_answer_is_logged_as_one_json_line_without_address_or_token(client, auth, caplog):
    formatter = logging_setup.JsonFormatter()
    request_filter = logging_setup.RequestContextFilter()
    caplog.set_level(logging.INFO, logger=logging_setup.REQUEST_LOGGER)
    client.get("/api/v1/polls?secret=shh", headers={**auth, "X-Request-ID": "req-42"},
               environ_overrides={"REMOTE_ADDR": "198.51.100.23"})
    records = [r for r in caplog.records if r.name == logging_setup.REQUEST_LOGGER]
    assert records
    record = records[-1]
    request_filter.filter(record)
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["request_id"] == "req-42"
    assert entry["method"] == "GET"
    assert entry["path"] == "/api/v1/polls"
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 0
    assert {"time", "level", "logger", "message"} <= entry.keys()
    token = auth["Authorization"].split()[1]
    for secret in ("198.51.100.23", token, "shh"):
        assert secret not in line


def test_the_app_built_from_the_environment_logs_json_to_stderr(tmp_path, capfd):
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db",
                      "SECRET_KEY": SECRET, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"})
    try:
        logging.getLogger("service.test").warning("hello %s", "world")
        err = capfd.readouterr().err
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert {"level": "warning", "logger": "service.test", "message": "hello world"}.items() \
            <= lines[-1].items()
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, logging_setup._PollboxHandler):
                root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        del app


def test_text_format_names_the_request_id_or_a_dash():
    formatter = logging_setup.TextFormatter(logging_setup.TEXT_FORMAT)
    record = logging.LogRecord("service.x", logging.INFO, __file__, 1, "hello", None, None)
    logging_setup.RequestContextFilter().filter(record)
    assert formatter.format(record).endswith("INFO service.x [-] hello")


@pytest.mark.parametrize(("name", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "loud"),
                                             ("RECONCILE_INTERVAL_SECONDS", "-1")])
def test_bad_operations_settings_are_refused(tmp_path, name, value):
    from service.infra.config import ConfigError, from_environ

    with pytest.raises(ConfigError, match=name):
        from_environ({name: value}, str(tmp_path))
