"""A poll carried over with its baseline (API.md, "Carrying an existing poll over"): set
and removed by its owner, added to the whole poll's tallies and said so, never to a
context's tallies, the time series or the votes export (no ballot is invented); it
survives a flushed Redis, the exact rebuild and reconciliation (three stacks)."""

from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import openpyxl
import pytest
from sqlalchemy import func, select

from service.infra import keys
from service.infra.db import db
from service.infra.models import Ballot, PollBaseline, PollBaselineOption
from service.infra.redis import redis_handle
from service.tallies import counts as tallies
from service.tallies import reconcile
from service.tallies.results import wilson_interval
from tests.test_tallies import textbook_wilson, votes_by_option
from tests.test_trust_api_spec import openapi_validator

AS_OF = "2026-11-30T00:00:00Z"
SOURCE = "PsyWeb poll, 2009-2026"
SEED_COUNTS = (1203, 1012, 1763)  # 3,978 votes in all
REDIS_STACKS = ["sqlite-redis", "postgresql-redis"]


def baseline_url(poll: dict) -> str:
    return f"/api/v1/polls/{poll['id']}/baseline"


def tallies_of(client, poll: dict, **query) -> dict:
    response = client.get(f"/api/v1/polls/{poll['id']}/tallies", query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def seed_body(poll: dict, counts=SEED_COUNTS, **fields) -> dict:
    return {"total_votes": sum(counts),
            "options": {str(option["id"]): n for option, n in zip(poll["options"], counts,
                                                                  strict=True)},
            "source": SOURCE, "as_of": AS_OF, **fields}


@pytest.fixture
def put_baseline(client, auth):
    def put(poll: dict, body: dict | None = None, **fields):
        return client.put(baseline_url(poll), json=body or seed_body(poll, **fields),
                          headers=auth)

    return put


@pytest.fixture
def carried(make_poll, put_baseline, clock) -> dict:
    """The seed poll with its 3,978 votes from PsyWeb."""
    clock.frozen = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    poll = make_poll(duplicate_check="none")
    assert put_baseline(poll).status_code == 200
    return poll


# --- setting, reading and removing it ---------------------------------------------------


def test_the_owner_sets_a_baseline_and_reads_it_back(client, auth, make_poll, put_baseline,
                                                     clock):
    clock.frozen = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    poll = make_poll()

    response = put_baseline(poll)

    assert response.status_code == 200
    expected = {"poll_id": poll["id"], "total_votes": 3978,
                "options": {str(o["id"]): n for o, n in zip(poll["options"], SEED_COUNTS,
                                                            strict=True)},
                "source": SOURCE, "as_of": AS_OF, "set_at": "2026-12-03T12:00:00Z"}
    assert response.get_json() == expected
    assert client.get(baseline_url(poll), headers=auth).get_json() == expected


def test_a_new_baseline_replaces_the_old_one(client, auth, carried, put_baseline):
    first = carried["options"][0]["id"]
    body = {"total_votes": 10, "options": {str(first): 10}, "source": "Survey 2025",
            "as_of": "2025-01-01T00:00:00Z"}

    assert put_baseline(carried, body).status_code == 200

    shown = tallies_of(client, carried)
    assert shown["total_votes"] == 10
    assert votes_by_option(shown) == {first: 10, carried["options"][1]["id"]: 0,
                                      carried["options"][2]["id"]: 0}
    assert shown["baseline"] == {"total_votes": 10, "source": "Survey 2025",
                                 "as_of": "2025-01-01T00:00:00Z"}
    assert client.get(baseline_url(carried), headers=auth).get_json()["options"] == {
        str(first): 10}


def test_deleting_the_baseline_leaves_the_ballots_alone(client, auth, carried, vote):
    assert vote(carried).status_code == 201

    response = client.delete(baseline_url(carried), headers=auth)

    assert response.status_code == 204
    shown = tallies_of(client, carried)
    assert shown["total_votes"] == 1
    assert shown["baseline"] is None
    assert client.get(baseline_url(carried), headers=auth).status_code == 404
    assert client.delete(baseline_url(carried), headers=auth).status_code == 204


def test_a_poll_without_a_baseline_has_none(client, auth, make_poll):
    poll = make_poll()
    assert tallies_of(client, poll)["baseline"] is None
    response = client.get(baseline_url(poll), headers=auth)
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_the_baseline_is_the_owners_alone(client, make_poll, other_auth, method):
    poll = make_poll()
    body = seed_body(poll)

    anonymous = getattr(client, method)(baseline_url(poll), json=body)
    foreign = getattr(client, method)(baseline_url(poll), json=body, headers=other_auth)

    assert anonymous.status_code == 401
    assert foreign.status_code == 403
    assert tallies_of(client, poll)["baseline"] is None


def test_a_baseline_of_an_unknown_poll_is_404(client, auth):
    response = client.put("/api/v1/polls/unknownpoll1/baseline",
                          json={"total_votes": 1, "options": {}, "source": "x", "as_of": AS_OF},
                          headers=auth)
    assert response.status_code == 404


def test_deleting_the_poll_deletes_its_baseline(app, client, auth, carried):
    assert client.delete(f"/api/v1/polls/{carried['id']}", headers=auth).status_code == 204
    with app.app_context():
        for model in (PollBaseline, PollBaselineOption):
            assert db.session.scalar(select(func.count()).select_from(model)) == 0


# --- what a baseline may be ---------------------------------------------------------------


def errors_of(response) -> dict:
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["code"] == "validation_error"
    return body["errors"]


def test_an_option_may_not_have_more_votes_than_the_total(make_poll, put_baseline):
    poll = make_poll(kind="multiple")
    first = poll["options"][0]["id"]
    errors = errors_of(put_baseline(poll, {"total_votes": 100, "options": {str(first): 101},
                                           "source": SOURCE, "as_of": AS_OF}))
    assert list(errors) == ["options"]
    assert str(first) in errors["options"][0]


def test_a_single_choice_polls_options_add_up_to_the_total(make_poll, put_baseline):
    poll = make_poll()
    errors = errors_of(put_baseline(poll, seed_body(poll, total_votes=3979)))
    assert list(errors) == ["options"]
    assert "3978" in errors["options"][0] and "3979" in errors["options"][0]


def test_a_multiple_choice_polls_options_may_add_up_past_the_total(client, make_poll,
                                                                   put_baseline):
    poll = make_poll(kind="multiple")
    assert put_baseline(poll, seed_body(poll, counts=(90, 80, 70), total_votes=100)
                        ).status_code == 200
    shown = tallies_of(client, poll)
    assert shown["total_votes"] == 100
    assert [option["percent"] for option in shown["options"]] == [90.0, 80.0, 70.0]


def test_an_unknown_option_is_named(make_poll, put_baseline):
    poll, other = make_poll(), make_poll()
    foreign = other["options"][0]["id"]
    body = seed_body(poll)
    body["options"][str(foreign)] = 0
    errors = errors_of(put_baseline(poll, body))
    assert errors == {"options": [f"Unknown option {foreign}."]}


@pytest.mark.parametrize(("change", "field"), [
    ({"colour": "red"}, "colour"),
    ({"total_votes": "3978"}, "total_votes"),
    ({"total_votes": 0}, "total_votes"),
    ({"source": ""}, "source"),
    ({"source": "x" * 201}, "source"),
    ({"as_of": "yesterday"}, "as_of"),
    ({"as_of": "2027-01-01T00:00:00Z"}, "as_of"),
])
def test_invalid_fields_are_named(make_poll, put_baseline, clock, change, field):
    clock.frozen = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    poll = make_poll()
    errors = errors_of(put_baseline(poll, {**seed_body(poll), **change}))
    assert field in errors


@pytest.mark.parametrize("missing", ["total_votes", "options", "source", "as_of"])
def test_every_field_is_required(make_poll, put_baseline, missing):
    poll = make_poll()
    body = seed_body(poll)
    del body[missing]
    assert missing in errors_of(put_baseline(poll, body))


def test_a_negative_or_non_numeric_option_count_is_named(make_poll, put_baseline):
    poll = make_poll()
    first = str(poll["options"][0]["id"])
    errors = errors_of(put_baseline(poll, {**seed_body(poll), "options": {first: -1,
                                                                        "abc": 1}}))
    assert any(path.startswith("options") for path in errors)


def test_a_refused_baseline_changes_nothing(client, carried, put_baseline):
    before = tallies_of(client, carried)
    errors_of(put_baseline(carried, seed_body(carried, total_votes=1)))
    assert tallies_of(client, carried) == before


def test_options_with_baseline_votes_are_kept_like_options_with_ballots(client, auth,
                                                                        carried):
    kept = [{"id": option["id"], "label": option["label"]} for option in carried["options"]]

    removed = client.patch(f"/api/v1/polls/{carried['id']}", json={"options": kept[:2]},
                           headers=auth)
    rekinded = client.patch(f"/api/v1/polls/{carried['id']}", json={"kind": "multiple"},
                            headers=auth)
    relabelled = client.patch(f"/api/v1/polls/{carried['id']}",
                              json={"options": [{**kept[0], "label": "Yes, now"}, *kept[1:]]},
                              headers=auth)

    assert removed.status_code == rekinded.status_code == 409
    assert removed.get_json()["code"] == "poll_has_votes"
    assert relabelled.status_code == 200
    assert tallies_of(client, carried)["options"][0]["label"] == "Yes, now"
    assert tallies_of(client, carried)["total_votes"] == 3978


# --- tallies --------------------------------------------------------------------------


def test_tallies_add_the_baseline_to_every_count_and_say_so(client, carried, vote):
    a, b, c = (option["id"] for option in carried["options"])
    assert vote(carried, [a]).status_code == 201
    assert vote(carried, [c], ip="203.0.113.8").status_code == 201

    shown = tallies_of(client, carried)

    assert shown["total_votes"] == 3980
    assert votes_by_option(shown) == {a: 1204, b: 1012, c: 1764}
    assert shown["baseline"] == {"total_votes": 3978, "source": SOURCE, "as_of": AS_OF}
    assert [option["percent"] for option in shown["options"]] == [
        round(n / 3980 * 100, 2) for n in (1204, 1012, 1764)]


def test_the_wilson_intervals_use_the_combined_counts(client, carried, vote):
    assert vote(carried).status_code == 201
    shown = tallies_of(client, carried)
    for option, votes in zip(shown["options"], (1204, 1012, 1763), strict=True):
        low, high = textbook_wilson(votes, 3979)
        assert option["ci95"] == pytest.approx([low, high], abs=0.006)
        assert option["ci95"] == list(wilson_interval(votes, 3979))


def test_a_context_filter_never_includes_the_baseline(client, carried, vote):
    a = carried["options"][0]["id"]
    assert vote(carried, [a], context="/articles/healing-power").status_code == 201

    shown = tallies_of(client, carried, context="/articles/healing-power")
    unused = tallies_of(client, carried, context="/elsewhere")

    assert shown["total_votes"] == 1
    assert votes_by_option(shown)[a] == 1
    assert shown["baseline"] is None
    assert unused["total_votes"] == 0 and unused["baseline"] is None


def test_the_baseline_counts_toward_results_min_votes(client, make_poll, put_baseline, vote):
    poll = make_poll(results_min_votes=100)
    assert vote(poll).status_code == 201
    assert tallies_of(client, poll)["suppressed"] is True

    assert put_baseline(poll).status_code == 200

    shown = tallies_of(client, poll)
    assert shown["suppressed"] is False
    assert shown["total_votes"] == 3979
    # A context's tallies count its ballots alone, so they stay suppressed.
    assert tallies_of(client, poll, context="/a")["suppressed"] is True


def test_setting_or_removing_the_baseline_changes_the_etag(client, auth, make_poll,
                                                          put_baseline):
    poll = make_poll()
    url = f"/api/v1/polls/{poll['id']}/tallies"
    before = client.get(url).headers["ETag"]
    assert client.get(url, headers={"If-None-Match": before}).status_code == 304

    assert put_baseline(poll).status_code == 200
    with_baseline = client.get(url, headers={"If-None-Match": before})
    assert with_baseline.status_code == 200
    assert with_baseline.get_json()["total_votes"] == 3978
    etag = with_baseline.headers["ETag"]
    assert etag != before

    assert put_baseline(poll, source="PsyWeb, counted again").status_code == 200
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.get_json()["baseline"]["source"] == "PsyWeb, counted again"

    assert client.delete(baseline_url(poll), headers=auth).status_code == 204
    removed = client.get(url, headers={"If-None-Match": changed.headers["ETag"]})
    assert removed.status_code == 200
    assert removed.get_json()["baseline"] is None


@pytest.mark.parametrize("stack", REDIS_STACKS, indirect=True)
def test_a_baseline_set_in_one_process_shows_at_once_in_another(client, auth, make_app,
                                                                 make_poll, put_baseline):
    poll = make_poll()
    other = make_app().test_client()
    assert tallies_of(other, poll)["total_votes"] == 0  # cached there from now on

    assert put_baseline(poll).status_code == 200
    assert tallies_of(other, poll)["total_votes"] == 3978

    assert client.delete(baseline_url(poll), headers=auth).status_code == 204
    assert tallies_of(other, poll)["baseline"] is None


def test_the_vote_answer_includes_the_baseline(carried, vote):
    answer = vote(carried).get_json()
    assert answer["tallies"]["total_votes"] == 3979
    assert answer["tallies"]["baseline"]["total_votes"] == 3978


def test_a_replayed_vote_answer_still_includes_the_baseline(app, carried):
    browser = app.test_client()
    body = {"choices": [carried["options"][1]["id"]]}
    url = f"/api/v1/polls/{carried['id']}/votes"
    first = browser.post(url, json=body, headers={"Idempotency-Key": "k-1"})
    again = browser.post(url, json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.get_json()["tallies"] == first.get_json()["tallies"]
    assert again.get_json()["tallies"]["baseline"]["total_votes"] == 3978


# --- exports ----------------------------------------------------------------------------


def export(client, auth, poll: dict, **query):
    response = client.get(f"/api/v1/polls/{poll['id']}/export", query_string=query,
                          headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    response.get_data()  # read the streamed body now, before the next request
    return response


def csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))


@pytest.fixture
def carried_and_voted(carried, vote) -> dict:
    """The carried poll with two ballots: one on a page, one elsewhere."""
    a, _, c = (option["id"] for option in carried["options"])
    assert vote(carried, [a], context="/articles/healing-power").status_code == 201
    assert vote(carried, [c], ip="203.0.113.8").status_code == 201
    return carried


def test_the_tallies_export_adds_the_baseline_in_its_own_last_column(client, auth,
                                                                      carried_and_voted):
    rows = csv_rows(export(client, auth, carried_and_voted, data="tallies", format="csv"))
    api = tallies_of(client, carried_and_voted)

    assert list(rows[0]) == ["poll_id", "question", "option_id", "option_label", "votes",
                             "percent", "ci95_low", "ci95_high", "baseline_votes", "value"]
    assert [(int(r["votes"]), int(r["baseline_votes"])) for r in rows] == [
        (1204, 1203), (1012, 1012), (1764, 1763)]
    assert [float(r["percent"]) for r in rows] == [o["percent"] for o in api["options"]]
    assert [[float(r["ci95_low"]), float(r["ci95_high"])] for r in rows] == [
        o["ci95"] for o in api["options"]]


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_the_tallies_export_says_which_baseline_it_includes(client, auth, carried_and_voted,
                                                            fmt):
    response = export(client, auth, carried_and_voted, data="tallies", format=fmt)
    if fmt == "json":
        document = response.get_json()
        assert document["baseline"] == {"total_votes": 3978, "source": SOURCE, "as_of": AS_OF}
        rows = document["rows"]
    else:
        rows = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [row["baseline_votes"] for row in rows] == list(SEED_COUNTS)
    assert sum(row["votes"] for row in rows) == 3980


def test_the_xlsx_tallies_export_has_the_baseline_column(client, auth, carried_and_voted):
    response = export(client, auth, carried_and_voted, data="tallies", format="xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(response.data)).active
    header, *rows = list(sheet.values)
    assert header[-2:] == ("baseline_votes", "value")
    assert [row[-2] for row in rows] == list(SEED_COUNTS)


@pytest.mark.parametrize("query", [
    {"context": "/articles/healing-power"},
    {"from": "2026-12-01T00:00:00Z"},
])
def test_a_filtered_tallies_export_counts_ballots_alone(client, auth, carried_and_voted,
                                                       query):
    response = export(client, auth, carried_and_voted, data="tallies", format="json", **query)
    document = response.get_json()
    assert document["baseline"] is None
    assert all(row["baseline_votes"] == 0 for row in document["rows"])
    expected = 1 if "context" in query else 2
    assert sum(row["votes"] for row in document["rows"]) == expected


def test_the_time_series_and_the_votes_export_hold_only_ballots(app, client, auth,
                                                                carried_and_voted):
    series = export(client, auth, carried_and_voted, data="timeseries", format="json")
    votes = export(client, auth, carried_and_voted, data="votes", format="json")

    assert sum(row["votes"] for row in series.get_json()["rows"]) == 2
    assert "baseline" not in series.get_json()
    assert len(votes.get_json()["rows"]) == 2
    with app.app_context():  # and no ballot was invented to hold the baseline
        assert db.session.scalar(select(func.count(Ballot.id))) == 2


def test_the_account_export_adds_each_polls_baseline(client, auth, carried_and_voted,
                                                    make_poll, vote):
    plain = make_poll(question="Without a baseline?")
    assert vote(plain).status_code == 201

    response = client.get("/api/v1/export", query_string={"format": "json"}, headers=auth)

    rows = response.get_json()["rows"]
    by_poll: dict[str, list[tuple[int, int]]] = {}
    for row in rows:
        by_poll.setdefault(row["poll_id"], []).append((row["votes"], row["baseline_votes"]))
    assert by_poll[carried_and_voted["id"]] == [(1204, 1203), (1012, 1012), (1764, 1763)]
    assert by_poll[plain["id"]] == [(1, 0), (0, 0), (0, 0)]
    carried_rows = [row for row in rows if row["poll_id"] == carried_and_voted["id"]]
    assert carried_rows[0]["percent"] == round(1204 / 3980 * 100, 2)


# --- the read model: a flushed Redis, the exact rebuild, reconciliation, integrity -----


def stored_tally(poll: dict) -> tallies.Counts:
    return tallies.Counts.from_hash(redis_handle().client.hgetall(keys.tally(poll["id"])))


def test_the_redis_tally_counts_ballots_only(app, carried_and_voted):
    with app.app_context():
        assert stored_tally(carried_and_voted).total == 2
        assert sum(stored_tally(carried_and_voted).options.values()) == 2


def test_the_baseline_survives_a_redis_flush_and_reconciliation(app, client,
                                                                carried_and_voted):
    before = tallies_of(client, carried_and_voted)
    assert before["total_votes"] == 3980
    with app.app_context():
        redis_handle().client.flushdb()

        report = reconcile.reconcile(engine=db.engine, redis=redis_handle())

        assert report.drift == {"mismatch": 0, "missing": 1}
        assert stored_tally(carried_and_voted).total == 2  # rebuilt from the ballots alone
        # The tally now agrees with the record: the baseline is no drift to "fix".
        assert reconcile.reconcile(engine=db.engine, redis=redis_handle()).rebuilt == 0
    after = tallies_of(client, carried_and_voted)
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"}


def test_the_exact_rebuild_leaves_the_baseline_to_the_read_model(app, client,
                                                                 carried_and_voted, vote):
    with app.app_context():
        redis_handle().client.delete(keys.tally(carried_and_voted["id"]))
        rebuilt = tallies.rebuild(engine=db.engine, redis=redis_handle(),
                                  poll_id=carried_and_voted["id"])
        assert rebuilt.total == 2
    assert vote(carried_and_voted, ip="203.0.113.9").status_code == 201
    shown = tallies_of(client, carried_and_voted)
    assert shown["total_votes"] == 3981
    assert shown["options"][0]["votes"] == 1205


@pytest.mark.parametrize("stack", REDIS_STACKS, indirect=True)
def test_reconcile_takes_a_baseline_written_into_redis_for_drift_and_counts_it_once(
    app, client, carried_and_voted
):
    first = carried_and_voted["options"][0]["id"]
    with app.app_context():
        tally = keys.tally(carried_and_voted["id"])
        redis_handle().client.hincrby(tally, "total", 3978)
        redis_handle().client.hincrby(tally, f"o:{first}", 1203)

        report = reconcile.reconcile(engine=db.engine, redis=redis_handle())

        assert report.drift["mismatch"] == 1
        assert stored_tally(carried_and_voted).total == 2
    assert tallies_of(client, carried_and_voted)["total_votes"] == 3980


def test_the_integrity_report_counts_ballots_not_the_baseline(client, auth,
                                                             carried_and_voted):
    report = client.get(f"/api/v1/polls/{carried_and_voted['id']}/integrity",
                        headers=auth).get_json()
    assert report["totals"]["accepted"] == 2


def test_tallies_read_from_the_database_while_redis_is_down_include_the_baseline(
    make_app, carried_and_voted
):
    offline = make_app(REDIS_URL="redis://127.0.0.1:1/0").test_client()
    shown = tallies_of(offline, carried_and_voted)
    assert shown["total_votes"] == 3980
    assert shown["baseline"]["total_votes"] == 3978
    assert tallies_of(offline, carried_and_voted, context="/articles/healing-power")[
        "total_votes"] == 1


# --- live tallies -----------------------------------------------------------------------


def next_tallies(chunks) -> dict:
    for line in next(chunks).decode().splitlines():
        if line.startswith("data: "):
            return json.loads(line.removeprefix("data: "))
    raise AssertionError("no tallies event")


def test_the_live_stream_sends_new_tallies_when_the_baseline_changes(app, client, auth,
                                                                    make_poll, put_baseline):
    poll = make_poll()
    reader = app.test_client()  # a visitor's browser
    response = reader.get(f"/api/v1/polls/{poll['id']}/tallies/stream", buffered=False)
    chunks = iter(response.response)
    # The owner's requests run in a thread of their own: the open stream's request
    # context must not be theirs (as with two connections to a real server).
    owner = ThreadPoolExecutor(max_workers=1)
    try:
        assert next_tallies(chunks)["total_votes"] == 0
        assert app.extensions["pollbox.stream"].wait_until_listening(5)

        assert owner.submit(put_baseline, poll).result().status_code == 200
        started = time.monotonic()
        shown = next_tallies(chunks)
        assert time.monotonic() - started < 2
        assert shown["total_votes"] == 3978
        assert shown["baseline"]["source"] == SOURCE

        removed = owner.submit(client.delete, baseline_url(poll), headers=auth).result()
        assert removed.status_code == 204
        assert next_tallies(chunks)["baseline"] is None
    finally:
        owner.shutdown()
        response.close()


# --- the OpenAPI document -----------------------------------------------------------------


def test_the_openapi_spec_documents_the_baseline(client, auth, carried, make_poll):
    spec = client.get("/api/v1/openapi.json").get_json()
    operations = spec["paths"]["/api/v1/polls/{poll_id}/baseline"]
    assert {"200", "401", "403", "404", "422"} <= set(operations["put"]["responses"])
    assert {"204", "401", "403", "404"} <= set(operations["delete"]["responses"])
    assert {"200", "401", "403", "404"} <= set(operations["get"]["responses"])
    assert all(operations[method].get("summary") for method in ("get", "put", "delete"))
    body = operations["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Baseline"}
    assert set(spec["components"]["schemas"]["Baseline"]["required"]) == {
        "total_votes", "options", "source", "as_of"}
    assert "baseline" in spec["components"]["schemas"]["Tallies"]["properties"]
    assert "baseline_votes" in spec["components"]["schemas"]["TallyRow"]["properties"]

    openapi_validator(client, "BaselineAnswer").validate(
        client.get(baseline_url(carried), headers=auth).get_json())
    openapi_validator(client, "Tallies").validate(tallies_of(client, carried))
    openapi_validator(client, "Tallies").validate(tallies_of(client, make_poll()))  # null
