"""Fault-test fixtures: this tier's own Redis and PostgreSQL servers, on free loopback
ports, which the tests kill, stop and restart; the machine's shared services (6379,
5432) are never touched. Gunicorn comes from the end-to-end fixtures.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from flask_migrate import upgrade

from service import create_app, owners
from service.infra.db import db
from tests.conftest import SECRET, TABLES
from tests.e2e.conftest import (  # noqa: F401  (fixtures, re-exported for this tier)
    ROOT,
    free_port,
    gunicorn_server,
    pytest_runtest_makereport,
    stopping_servers,
)

START_TIMEOUT_SECONDS = 30
POSTGRES_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:] or [""]
# PostgreSQL refuses to run as root: run it as the `postgres` account when we are root.
AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
FLASK = Path(sys.executable).parent / "flask"
# Each scenario's measured figures, printed at the end of the run.
FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("fault figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def _wait(check, what: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.05)
    pytest.fail(f"{what} did not come up in {timeout} s")


@dataclass
class RedisServer:
    """A throwaway redis-server without persistence, killed and restarted at will."""

    port: int
    folder: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        _wait(lambda: redis.Redis(port=self.port, socket_timeout=1).ping(), "redis-server")

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients, every key gone."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), folder=tmp_path)
    server.start()
    yield server
    server.kill()


@dataclass
class PostgresServer:
    """A PostgreSQL cluster of this test session in a temporary folder."""

    folder: Path
    port: int
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*AS_POSTGRES, f"{POSTGRES_BIN[0]}/pg_ctl", "-D", str(self.folder / "data"),
             *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def init(self) -> None:
        subprocess.run(
            [*AS_POSTGRES, f"{POSTGRES_BIN[0]}/initdb", "-D", str(self.folder / "data"),
             "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
                   "-c fsync=off -c max_connections=200")
        self._pg_ctl("-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        return (self.folder / "data" / "postmaster.pid").exists()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if not POSTGRES_BIN[0]:
        pytest.fail("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin")
    # Not under pytest's tmp folder: the postgres account must be able to reach it.
    folder = Path(tempfile.mkdtemp(prefix="pollbox-faults-pg-"))
    if AS_POSTGRES:
        shutil.chown(folder, "postgres", "postgres")
    server = PostgresServer(folder=folder, port=free_port())
    server.init()
    server.start()
    app = create_app({"SQLALCHEMY_DATABASE_URI": server.url, "SECRET_KEY": SECRET})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    yield server
    if server.is_running():
        server.stop("immediate")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def fault_database(postgres_server) -> str:
    """The fault tier's PostgreSQL, running and emptied for this test."""
    if not postgres_server.is_running():
        postgres_server.start()
    engine = sa.create_engine(postgres_server.url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return postgres_server.url


@pytest.fixture
def database(fault_database):
    engine = sa.create_engine(fault_database)
    yield engine
    engine.dispose()


@pytest.fixture
def owner_key(fault_database) -> str:
    app = create_app({"SQLALCHEMY_DATABASE_URI": fault_database, "SECRET_KEY": SECRET})
    with app.app_context():
        key = owners.create_owner(session=db.session, name="PsyWeb")
        db.engine.dispose()
    return key


def run_flask(*args: str, database_url: str, redis_url: str) -> subprocess.CompletedProcess:
    """`flask --app wsgi ...` against the given services, as an operator runs it."""
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "SECRET_KEY": SECRET}
    return subprocess.run([str(FLASK), "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@dataclass
class Answer:
    status: int | None  # None: no answer (connection reset or refused)
    body: dict | None
    headers: dict[str, str]


async def post_json(port: int, path: str, body: dict, headers: dict[str, str] | None = None,
                    timeout: float = 30) -> Answer:
    """One HTTP/1.1 POST on its own connection, as one browser sends it.

    A raw request, not an HTTP client library: a thousand of them really are in flight at
    once, each on its own socket, with no client-side pool queueing them.
    """
    payload = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: application/json", f"Content-Length: {len(payload)}",
             "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return Answer(None, None, {})
    if not raw:
        return Answer(None, None, {})
    head, _, content = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        answer_headers[name.strip().lower()] = value.strip()
    try:
        parsed = json.loads(content) if content else None
    except ValueError:
        parsed = None
    return Answer(int(status_line.split()[1]), parsed, answer_headers)
