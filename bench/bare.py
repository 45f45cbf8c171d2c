"""The same job bare: a vote and a tallies read doing only what Pollbox's must, under
the same gunicorn config, the reference bench/run.py measures Pollbox against.

A vote: parse the JSON; check the one choice against the poll's options (an in-memory
set, read once per poll); HMAC the client address with the poll id; claim it in Redis
with SET NX (409 if taken); insert the ballot row with autocommit through SQLAlchemy
Core; HINCRBY the tally; answer 201 with a small JSON. Three round trips, counted once
and only once committed, as Pollbox guarantees. Tallies: one HGETALL and json.dumps.

Env: DATABASE_URL, REDIS_URL, SECRET_KEY (as Pollbox's); it reads Pollbox's `options`
table and writes its own `bare_ballots` table.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

import redis
import sqlalchemy as sa
from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

from service.infra.config import (
    DEFAULT_DATABASE_MAX_OVERFLOW,
    DEFAULT_DATABASE_POOL_SIZE,
    database_uri,
)

SEEN_SECONDS = 30 * 24 * 3600

# Pollbox's pool, sized as Pollbox's is (DATABASE_POOL_SIZE, DATABASE_MAX_OVERFLOW).
engine = sa.create_engine(
    database_uri(os.environ["DATABASE_URL"], "."), isolation_level="AUTOCOMMIT",
    pool_size=int(os.environ.get("DATABASE_POOL_SIZE", DEFAULT_DATABASE_POOL_SIZE)),
    max_overflow=int(os.environ.get("DATABASE_MAX_OVERFLOW", DEFAULT_DATABASE_MAX_OVERFLOW)))
metadata = sa.MetaData()
ballots = sa.Table(
    "bare_ballots", metadata,
    sa.Column("id", sa.String(22), primary_key=True),
    sa.Column("poll_id", sa.String(32), nullable=False),
    sa.Column("option_id", sa.Integer, nullable=False),
    sa.Column("voter_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
try:
    metadata.create_all(engine, checkfirst=True)
except sa.exc.DBAPIError:  # both workers create it at once: the other one did
    metadata.create_all(engine, checkfirst=True)
options_table = sa.table("options", sa.column("id"), sa.column("poll_id"))
client = redis.Redis.from_url(os.environ["REDIS_URL"])
secret = os.environ["SECRET_KEY"].encode()
known_options: dict[str, frozenset[int]] = {}

app = Flask(__name__)
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)


def options_of(poll_id: str) -> frozenset[int]:
    found = known_options.get(poll_id)
    if found is None:
        with engine.connect() as connection:
            found = frozenset(connection.scalars(
                sa.select(options_table.c.id).where(options_table.c.poll_id == poll_id)))
        known_options[poll_id] = found
    return found


def answer(body: dict, status: int) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")


def ballot_of(poll_id: str) -> tuple[int, str] | None:
    """The request's one choice, checked against the poll's options, and its voter: the
    client address HMACed with the poll id. None when the choice is not valid."""
    body = request.get_json(silent=True) or {}
    choices = body.get("choices")
    if not (isinstance(choices, list) and len(choices) == 1
            and choices[0] in options_of(poll_id)):
        return None
    voter = hmac.new(secret, f"{poll_id}:{request.remote_addr}".encode(),
                     hashlib.sha256).hexdigest()
    return choices[0], voter


def cast(poll_id: str, *, claim: Callable[[str], bool], insert: Callable[[dict], None],
         count: Callable[[tuple[str, str]], None]) -> Response:
    """The vote, given how to claim the voter in Redis, insert the ballot and count it
    (one at a time here; in batches in bench/bare_batched.py)."""
    ballot = ballot_of(poll_id)
    if ballot is None:
        return answer({"code": "validation_failed"}, 422)
    option, voter = ballot
    seen = f"bare:{{{poll_id}}}:seen:{voter}"
    if not claim(seen):
        return answer({"code": "duplicate_vote"}, 409)
    ballot_id = secrets.token_urlsafe(16)
    try:
        insert({"id": ballot_id, "poll_id": poll_id, "option_id": option,
                "voter_hash": voter, "created_at": datetime.now(UTC)})
    except Exception:
        client.delete(seen)  # not recorded: may vote again
        raise
    count((f"bare:{{{poll_id}}}:tally", str(option)))
    return answer({"id": ballot_id, "choices": [option]}, 201)


def claim_one(seen: str) -> bool:
    return bool(client.set(seen, 1, nx=True, ex=SEEN_SECONDS))


def insert_one(row: dict) -> None:
    with engine.connect() as connection:
        connection.execute(ballots.insert().values(**row))


def count_one(tally: tuple[str, str]) -> None:
    client.hincrby(*tally, 1)


@app.post("/api/v1/polls/<poll_id>/votes")
def vote(poll_id: str) -> Response:
    return cast(poll_id, claim=claim_one, insert=insert_one, count=count_one)


@app.get("/api/v1/polls/<poll_id>/tallies")
def tallies(poll_id: str) -> Response:
    counts = client.hgetall(f"bare:{{{poll_id}}}:tally")
    return answer({"poll_id": poll_id,
                   "options": {k.decode(): int(v) for k, v in counts.items()}}, 200)


@app.get("/healthz")
def healthz() -> Response:
    return answer({"status": "ok"}, 200)
