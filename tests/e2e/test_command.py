"""The `pollbox` command as an analyst runs it: exports and tallies over real HTTP from
a gunicorn server, on SQLite and PostgreSQL; clear messages for refusals; no partial
file, ever."""

from __future__ import annotations

import csv
import io
import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openpyxl
import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.gunicorn

POLLBOX = Path(sys.executable).parent / "pollbox"


def pollbox(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(POLLBOX), *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, check=False)


@pytest.fixture
def served(gunicorn_server, e2e_database_url, clean_redis, owner_key):
    """A server with a poll of three votes; the owner's key."""
    server = gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis)
    owner = {"Authorization": f"Bearer {owner_key}"}
    poll = httpx.post(f"{server.base_url}/api/v1/polls", headers=owner, timeout=10, json={
        "question": "Which one?", "options": ["A, or \"a\"", "B", "C"],
        "duplicate_check": "ip"}).json()
    for n, option in enumerate((0, 0, 1)):
        answer = httpx.post(f"{server.base_url}/api/v1/polls/{poll['id']}/votes", timeout=10,
                            json={"choices": [poll["options"][option]["id"]]},
                            headers={"X-Forwarded-For": f"198.51.100.{n + 1}"})
        assert answer.status_code == 201
    return server, poll, owner_key


@pytest.fixture
def folder(tmp_path) -> Path:
    """A folder of its own for the command's files (tmp_path holds the SQLite file)."""
    made = tmp_path / "analyst"
    made.mkdir()
    return made


def test_export_writes_the_servers_export_to_a_file_and_to_standard_output(served, folder):
    server, poll, key = served
    target = folder / "votes.csv"

    done = pollbox("export", "--server", server.base_url, "--key", key, poll["id"],
                   "--data", "votes", "--format", "csv", "-o", str(target))

    assert done.returncode == 0, done.stderr
    assert f"Wrote {target}" in done.stderr
    expected = httpx.get(f"{server.base_url}/api/v1/polls/{poll['id']}/export",
                         params={"data": "votes", "format": "csv"}, timeout=10,
                         headers={"Authorization": f"Bearer {key}"}).content
    assert target.read_bytes() == expected
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == 3 and set(rows[0]) >= {"vote_id", "created_at", "option_ids"}
    assert [p.name for p in folder.iterdir()] == ["votes.csv"]  # no partial file left

    listed = pollbox("export", "--server", server.base_url, "--key", key, poll["id"],
                     "--data", "tallies", "--format", "ndjson", "-o", "-")
    assert listed.returncode == 0, listed.stderr
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(line["votes"] for line in lines) == [0, 1, 2]

    sheet = folder / "votes.xlsx"
    assert pollbox("export", "--server", server.base_url, "--key", key, poll["id"],
                   "--format", "xlsx", "-o", str(sheet)).returncode == 0
    read = openpyxl.load_workbook(sheet).worksheets[0]
    assert read.max_row == 1 + 3 and read.freeze_panes == "A2"


def test_export_shows_its_progress_on_a_terminal(served, folder):
    if shutil.which("script") is None:
        pytest.skip("util-linux `script` (a terminal for the command) is not installed")
    server, poll, key = served
    target = folder / "tallies.json"
    command = " ".join([str(POLLBOX), "export", "--server", server.base_url, "--key", key,
                        poll["id"], "--data", "tallies", "--format", "json", "-o", str(target)])

    done = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                          text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stdout
    assert "bytes, done." in done.stdout  # the terminal saw the progress line
    assert json.loads(target.read_text())


@pytest.mark.parametrize(("case", "status", "hint"), [
    ("wrong key", 401, "check --key"),
    ("another owner's key", 403, "the key may not do this"),
    ("unknown poll", 404, "check POLL_ID and --server"),
])
def test_a_refused_export_says_why_and_leaves_the_file_as_it_was(
    served, folder, make_other_owner, case, status, hint
):
    server, poll, key = served
    poll_id = "NoSuchPoll00" if case == "unknown poll" else poll["id"]
    key = {"wrong key": "pbk_not-a-key", "another owner's key": make_other_owner()}.get(case, key)
    target = folder / "votes.csv"
    target.write_text("yesterday's export\n")

    done = pollbox("export", "--server", server.base_url, "--key", key, poll_id, "-o",
                   str(target))

    assert done.returncode == 1
    assert f"({status}: {hint}" in done.stderr
    assert "Traceback" not in done.stderr
    assert target.read_text() == "yesterday's export\n"
    assert [p.name for p in folder.iterdir()] == ["votes.csv"]


def test_an_export_cut_off_midway_leaves_no_partial_file(tmp_path):
    """A server that promises more than it sends, then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_half():
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n"
                               b"Content-Length: 100000\r\n\r\nvote_id,created_at\r\n")

    thread = threading.Thread(target=answer_half, daemon=True)
    thread.start()
    target = tmp_path / "votes.csv"

    done = pollbox("export", "--server", f"http://127.0.0.1:{port}", "--key", "k", "P1",
                   "-o", str(target))

    thread.join(5)
    listener.close()
    assert done.returncode == 1
    assert "Could not reach" in done.stderr or "RemoteProtocolError" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_tallies_prints_a_table_with_the_intervals(served):
    server, poll, _key = served

    done = pollbox("tallies", "--server", server.base_url, poll["id"])

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Poll {poll['id']}: open, 3 votes"
    assert lines[1].split() == ["option", "votes", "percent", "95", "%", "interval"]
    row = next(line for line in lines if line.startswith('A, or "a"'))
    assert "2" in row.split() and "66.7 %" in row and " to " in row


def test_an_analysts_read_key_exports_but_changes_nothing(served, folder):
    server, poll, key = served
    made = httpx.post(f"{server.base_url}/api/v1/keys", timeout=5,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"name": "analyst", "scope": "read"})
    assert made.status_code == 201, made.text
    read_key = made.json()["key"]
    target = folder / "votes.csv"

    done = pollbox("export", "--server", server.base_url, "--key", read_key, poll["id"],
                   "--data", "votes", "-o", str(target))

    assert done.returncode == 0, done.stderr
    assert len(target.read_text().splitlines()) == 4
    closing = httpx.patch(f"{server.base_url}/api/v1/polls/{poll['id']}", timeout=5,
                          headers={"Authorization": f"Bearer {read_key}"},
                          json={"status": "closed"})
    assert (closing.status_code, closing.json()["code"]) == (403, "insufficient_scope")


def test_tallies_say_when_they_include_votes_from_before(served):
    server, poll, key = served
    counts = {str(option["id"]): 1 for option in poll["options"]}
    carried = httpx.put(f"{server.base_url}/api/v1/polls/{poll['id']}/baseline",
                        headers={"Authorization": f"Bearer {key}"}, timeout=5, json={
                            "total_votes": len(counts), "options": counts,
                            "source": "Old site", "as_of": "2026-01-01T00:00:00Z"})
    assert carried.status_code == 200, carried.text

    done = pollbox("tallies", "--server", server.base_url, poll["id"])

    lines = done.stdout.splitlines()
    assert lines[0] == f"Poll {poll['id']}: open, {3 + len(counts)} votes"
    assert lines[1] == f"Includes {len(counts)} votes before 2026-01-01 (Old site)."


@pytest.fixture
def make_other_owner(e2e_database_url):
    def make() -> str:
        from service import create_app, owners
        from service.infra.db import db
        from tests.conftest import SECRET

        app = create_app({"SQLALCHEMY_DATABASE_URI": e2e_database_url, "SECRET_KEY": SECRET})
        with app.app_context():
            key = owners.create_owner(session=db.session, name="Someone else")
            db.engine.dispose()
        return key
    return make


def test_an_installed_wheel_serves_from_an_empty_folder(tmp_path):
    """`pip install .` then `pollbox serve`: the migrations and the gunicorn settings
    travel in the package (no checkout, no deploy/ folder)."""
    wheels, target, empty = tmp_path / "wheels", tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(wheels), str(ROOT)], capture_output=True, text=True,
                           timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("pollbox-*.whl")
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                                "--target", str(target), str(wheel)], capture_output=True,
                               text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stderr
    assert (target / "service" / "migrations" / "versions").is_dir()
    assert (target / "service" / "gunicorn.conf.py").is_file()

    port = _free_port()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "HOME": str(tmp_path)}
    found = subprocess.run([sys.executable, "-c", "import service; print(service.__file__)"],
                           cwd=empty, env=env, capture_output=True, text=True, check=True)
    assert Path(found.stdout.strip()).is_relative_to(target)  # the wheel's, not this checkout
    server = subprocess.Popen([sys.executable, "-m", "service.command", "serve", "--bind",
                               f"127.0.0.1:{port}"], cwd=empty, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        printed = _read_until(server, "Serving on")
        assert f"Widget:       http://127.0.0.1:{port}/polls/" in printed
        assert _wait_for(f"http://127.0.0.1:{port}/healthz").status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ok", "database": "ok", "redis": "ok"}
        tallies_url = next(line.split()[-1] for line in printed.splitlines()
                           if line.startswith("Tallies:"))
        shown = httpx.get(tallies_url, timeout=5).json()
        assert (shown["total_votes"], shown["baseline"]["total_votes"]) == (3978, 3978)
        assert (empty / "instance" / "pollbox.db").is_file()
    finally:
        server.terminate()
        server.wait(timeout=20)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _read_until(process: subprocess.Popen, marker: str) -> str:
    lines = []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError("".join(lines))


def _wait_for(url: str) -> httpx.Response:
    import time

    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_tallies_print_a_ratings_mean_and_median(served):
    server, _poll, key = served
    owner = {"Authorization": f"Bearer {key}"}
    poll = httpx.post(f"{server.base_url}/api/v1/polls", headers=owner, timeout=10, json={
        "question": "How useful?", "kind": "rating", "duplicate_check": "ip"}).json()
    for n, value in enumerate((5, 4, 4, 3, 5)):
        option = next(o["id"] for o in poll["options"] if o["value"] == value)
        answer = httpx.post(f"{server.base_url}/api/v1/polls/{poll['id']}/votes", timeout=10,
                            json={"choices": [option]},
                            headers={"X-Forwarded-For": f"198.51.100.{n + 1}"})
        assert answer.status_code == 201

    done = pollbox("tallies", "--server", server.base_url, poll["id"])

    assert done.returncode == 0, done.stderr
    # mean 4.2, s^2 = 0.7, t(4) = 2.776445: 4.2 -+ 1.04
    assert done.stdout.splitlines()[-1] == "Mean 4.2, median 4 (95 % interval 3.16 to 5)"
