"""End-to-end fixtures: real gunicorn processes over a real database and the real Redis.

The servers run the production config (`deploy/gunicorn.conf.py`, gevent workers) on a
free loopback port. Redis is database 14, or 9 in the second pytest-xdist worker (the
unit tests use 13 and 15); PostgreSQL is the `pollbox_e2e_<pid>` schema of the `test`
database (the unit tests use `pollbox_test_<pid>`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy as sa

from service import create_app, owners
from service.infra.db import db
from tests.conftest import (
    REDIS_DATABASES,
    SECRET,
    TABLES,
    migrated_postgres_schema,
    unavailable,
)

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"
E2E_REDIS_URL = os.environ.get("POLLBOX_E2E_REDIS_URL",
                               f"redis://127.0.0.1:6379/{REDIS_DATABASES[1]}")
E2E_POSTGRES_SCHEMA = f"pollbox_e2e_{os.getpid()}"
BACKENDS = ("sqlite", "postgresql")
SERVER_START_TIMEOUT_SECONDS = 20
SERVER_STOP_TIMEOUT_SECONDS = 10
HEALTH_POLL_INTERVAL_SECONDS = 0.05
# High enough that no burst in these tests is rate-limited: they test duplicate checks.
E2E_RATELIMIT_VOTES = "100000 per minute"
SERVER_LOGS = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def e2e_redis_url() -> str:
    try:
        redis.Redis.from_url(E2E_REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        unavailable("Redis", error)
    return E2E_REDIS_URL


@pytest.fixture
def clean_redis(e2e_redis_url) -> str:
    """The e2e Redis database, emptied for this test."""
    redis.Redis.from_url(e2e_redis_url).flushdb()
    return e2e_redis_url


@pytest.fixture(scope="session")
def e2e_postgres_url() -> Iterator[str]:
    """The e2e schema, created fresh and migrated once for the session."""
    with migrated_postgres_schema(E2E_POSTGRES_SCHEMA) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def e2e_database_url(request, tmp_path) -> str:
    """An empty, migrated database for this test: a SQLite file or the e2e schema."""
    if request.param == "postgresql":
        url = request.getfixturevalue("e2e_postgres_url")
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        engine.dispose()
        return url
    path = tmp_path / "pollbox.db"
    shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture
def database(e2e_database_url):
    """An engine on the test's database, for asserting what was recorded."""
    engine = sa.create_engine(e2e_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def owner_key(e2e_database_url) -> str:
    """An owner's API key, created in the test's database before any server starts
    (overrides the unit tests' fixture of the same name, which needs their app)."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": e2e_database_url, "SECRET_KEY": SECRET})
    with app.app_context():
        key = owners.create_owner(session=db.session, name="PsyWeb")
        db.engine.dispose()
    return key


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class GunicornServer:
    process: subprocess.Popen
    base_url: str
    stdout_path: Path
    stderr_path: Path

    def logs(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def access_log(self) -> list[str]:
        return self.stdout_path.read_text(errors="replace").splitlines()

    def terminate(self) -> None:
        """Ask for a graceful stop (SIGTERM): finish in-flight requests, then exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def reap(self) -> None:
        """Wait for the stop; SIGKILL the whole process group if it lingers."""
        try:
            self.process.wait(timeout=SERVER_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _wait_until_healthy(server: GunicornServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    with httpx.Client(base_url=server.base_url, timeout=1) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                pytest.fail(f"gunicorn exited with {server.process.returncode}:\n{server.logs()}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(HEALTH_POLL_INTERVAL_SECONDS)
    pytest.fail(f"gunicorn did not become healthy in time:\n{server.logs()}")


@pytest.fixture(scope="session")
def stopping_servers():
    """Servers sent SIGTERM by their test's teardown, reaped when the session ends: a
    graceful stop takes a second or two that no later test needs to wait for."""
    stopping: list[GunicornServer] = []
    yield stopping
    for server in stopping:
        server.reap()


@pytest.fixture
def gunicorn_server(request, tmp_path, stopping_servers):
    """Start gunicorn (production config) on a free loopback port; SIGTERM at teardown.

    `gunicorn_server(database_url=..., redis_url=..., workers=2, args=(), **extra_env)`
    returns a running, healthy `GunicornServer`; `args` go to gunicorn's command line and
    `extra_env` over the server's environment. Its stderr is shown when the test fails.
    """
    servers: list[GunicornServer] = []
    request.node.stash[SERVER_LOGS] = servers

    def start(*, database_url: str, redis_url: str, workers: int = 2, args: Sequence[str] = (),
              **extra_env: str) -> GunicornServer:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": SECRET,
            "TRUSTED_PROXY_COUNT": "1",
            "RATELIMIT_VOTES": E2E_RATELIMIT_VOTES,
            **extra_env,
        }
        name = f"gunicorn-{port}"
        stdout_path, stderr_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [str(GUNICORN), "-c", "deploy/gunicorn.conf.py", "--workers", str(workers),
                 "--bind", f"127.0.0.1:{port}", *args, "wsgi:app"],
                cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True,
            )
        server = GunicornServer(process, f"http://127.0.0.1:{port}", stdout_path, stderr_path)
        servers.append(server)
        _wait_until_healthy(server)
        return server

    yield start
    for server in servers:
        server.terminate()
        stopping_servers.append(server)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach every server's stderr to a failed test's report."""
    report = yield
    if report.failed:
        for server in item.stash.get(SERVER_LOGS, []):
            report.sections.append((f"gunicorn stderr ({server.base_url})", server.logs()))
    return report
