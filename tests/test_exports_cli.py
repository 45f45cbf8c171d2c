"""`flask export`: the API's exports on the command line, to a file or stdout."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from service import cli

START = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def poll(make_poll, vote, clock):
    """A poll with four ballots on two days, two of them from page `/a`."""
    poll = make_poll(duplicate_check="none", allow_comment=True)
    first, second = poll["options"][0]["id"], poll["options"][1]["id"]
    plan = [(START, first, "/a"), (START + timedelta(hours=1), second, None),
            (START + timedelta(days=2), first, "/a"), (START + timedelta(days=2), second, "/b")]
    for moment, choice, context in plan:
        clock.frozen = moment
        assert vote(poll, [choice], context=context, comment="=1+1").status_code == 201
    return poll


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=["export", *args])


@pytest.mark.parametrize(("data", "fmt"), [
    ("votes", "csv"), ("votes", "ndjson"), ("timeseries", "csv"), ("tallies", "csv"),
    ("tallies", "ndjson"),
])
def test_cli_file_equals_the_http_export(app, client, auth, poll, tmp_path, data, fmt):
    target = tmp_path / f"out.{fmt}"
    result = run(app, poll["id"], "--data", data, "--format", fmt, "-o", str(target))
    assert result.exit_code == 0, result.output
    over_http = client.get(f"/api/v1/polls/{poll['id']}/export?data={data}&format={fmt}",
                           headers=auth)
    assert target.read_bytes() == over_http.get_data()


def test_cli_writes_to_stdout_with_dash(app, poll):
    result = run(app, poll["id"], "--data", "votes", "--format", "csv", "-o", "-")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert len(rows) == 4
    assert {row["comment"] for row in rows} == {"'=1+1"}


def test_cli_json_export_is_one_document(app, poll):
    result = run(app, poll["id"], "--data", "timeseries", "--format", "json")
    document = json.loads(result.stdout)
    assert document["interval"] == "day"
    assert len({row["bucket_start"] for row in document["rows"]}) == 3  # zero-filled day 2


def test_cli_applies_interval_time_window_and_context(app, client, auth, poll):
    args = ["--data", "timeseries", "--format", "csv", "--interval", "hour",
            "--from", "2026-03-01T09:00:00Z", "--to", "2026-03-03", "--context", "/a"]
    result = run(app, poll["id"], *args)
    assert result.exit_code == 0, result.output
    url = (f"/api/v1/polls/{poll['id']}/export?data=timeseries&format=csv&interval=hour"
           "&from=2026-03-01T09:00:00Z&to=2026-03-03&context=/a")
    assert result.stdout_bytes == client.get(url, headers=auth).get_data()
    assert result.stdout.count("2026-03-01T09:00:00Z") == 3  # one row per option


def test_cli_bom_flag_marks_a_csv_for_excel(app, poll):
    result = run(app, poll["id"], "--data", "tallies", "--bom")
    assert result.stdout_bytes.startswith(b"\xef\xbb\xbfpoll_id,")


@pytest.mark.parametrize(("args", "named"), [
    (["--data", "votes", "--interval", "day"], "--interval"),
    (["--data", "votes", "--format", "json", "--bom"], "--bom"),
    (["--data", "votes", "--from", "2026-03-02", "--to", "2026-03-01"], "--to"),
    (["--data", "votes", "--from", "soon"], "--from"),
    (["--data", "everything"], "--data"),
    (["--format", "csv"], "--data"),
])
def test_cli_rejects_invalid_parameters_naming_the_option(app, poll, args, named):
    result = run(app, poll["id"], *args)
    assert result.exit_code == 2
    assert named in result.output


def test_cli_unknown_poll_is_an_error(app, tmp_path):
    target = tmp_path / "out.csv"
    result = run(app, "NoSuchPoll123", "--data", "votes", "-o", str(target))
    assert result.exit_code == 1
    assert "No poll with id 'NoSuchPoll123'" in result.output
    assert not target.exists()


def test_cli_reports_rows_written_to_a_file_without_a_progress_bar_off_terminal(app, poll,
                                                                               tmp_path):
    result = run(app, poll["id"], "--data", "votes", "-o", str(tmp_path / "votes.csv"))
    assert "Exported 4 votes rows to" in result.stderr
    assert "Exporting" not in result.stderr


@pytest.mark.parametrize(("data", "rows"), [("votes", 4), ("timeseries", 9), ("tallies", 3)])
def test_cli_shows_a_progress_bar_on_a_terminal_for_large_exports(app, poll, tmp_path,
                                                                 monkeypatch, data, rows):
    terminal = FakeTerminal()
    monkeypatch.setattr(cli, "EXPORT_PROGRESS_MIN_ROWS", 1)
    monkeypatch.setattr(cli, "EXPORT_PROGRESS_STEP_ROWS", 1)
    monkeypatch.setattr(cli, "_progress_stream", lambda: terminal)
    target = tmp_path / f"{data}.csv"
    result = run(app, poll["id"], "--data", data, "-o", str(target))
    assert result.exit_code == 0, result.output
    assert f"Exporting {data}" in terminal.getvalue()
    # The bar's length is the number of rows counted beforehand: it ends full, not short.
    assert terminal.getvalue().rstrip().endswith("100%\x1b[?25h")
    assert len(target.read_text().splitlines()) == rows + 1


def test_cli_writes_no_progress_bar_into_stdout_exports(app, poll, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(cli, "EXPORT_PROGRESS_MIN_ROWS", 1)
    monkeypatch.setattr(cli, "_progress_stream", lambda: terminal)
    result = run(app, poll["id"], "--data", "votes", "-o", "-")
    assert terminal.getvalue() == ""
    assert result.stdout.startswith("vote_id,")
