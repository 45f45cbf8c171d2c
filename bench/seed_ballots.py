"""Seed one poll with many ballots, fast, for the export benchmark.

    .venv/bin/python bench/seed_ballots.py --database-url URL --ballots 1000000

Creates (or migrates) the schema, an owner with a fresh API key and a multiple-choice
poll, then bulk-inserts ballots and their choices: COPY on PostgreSQL, executemany in
one transaction on SQLite. Prints one JSON line: {"poll_id", "api_key", "ballots",
"choices", "seconds"}. Randomness is seeded, so two runs make the same shapes of data.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade

from service import create_app, owners
from service.infra.clock import utcnow
from service.infra.db import db
from service.infra.models import Ballot, BallotChoice
from service.infra.redis import redis_handle
from service.polls import manage as polls

BATCH_BALLOTS = 20_000
ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 16
HASH_HEX = 32
OPTIONS = ["Yes, currently", "Yes, in the past", "No, never", "Prefer not to say"]
CONTEXTS = [f"/articles/{n}" for n in range(50)] + [None] * 50
COMMENTS = ["Helpful, thanks", "=HYPERLINK(\"http://example.com\")", "Ça m'a aidé 🙂",
            "Too long", "@SUM(1)", "-1+2", 'He said "hi", then left']
COMMENT_SHARE = 0.05
OTHER_SHARE = 0.02
SECOND_CHOICE_SHARE = 0.2
REPEAT_VOTER_SHARE = 0.1
SPREAD_DAYS = 60


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True,
                        help="SQLAlchemy URL, e.g. sqlite:////tmp/bench.db or "
                             "postgresql+psycopg://postgres@127.0.0.1:5432/test"
                             "?options=-csearch_path%%3Dpollbox_bench")
    parser.add_argument("--schema", help="PostgreSQL: drop and recreate this schema first")
    parser.add_argument("--ballots", type=int, default=1_000_000)
    parser.add_argument("--owner", default="Bench")
    parser.add_argument("--secret-key", default="bench-secret-key")
    parser.add_argument("--seed", type=int, default=20261129)
    return parser.parse_args()


def reset_schema(base_url: str, schema: str) -> None:
    engine = sa.create_engine(base_url.split("?")[0])
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()


def make_poll(owner_name: str):
    session = db.session
    try:
        key = owners.create_owner(session=session, name=owner_name)
    except owners.OwnerError:
        key = owners.rotate_key(session=session, name=owner_name)
    owner = owners.active_key(session=session, key=key).owner
    data = {
        "question": "Are you currently taking or have you ever been prescribed "
                    "anti-depressants?",
        "options": OPTIONS, "kind": "multiple", "max_choices": 2, "allow_other": True,
        "allow_comment": True, "duplicate_check": "none", "vote_window_seconds": None,
        "results": "always", "results_min_votes": 0, "opens_at": None, "closes_at": None,
        "allowed_origins": [], "locale": "en",
    }
    poll = polls.create_poll(session=session, redis=redis_handle(), owner=owner, data=data,
                             now=utcnow())
    return poll, key


def generate(poll_id: str, option_ids: list[int], count: int, rng: random.Random):
    """Yield batches of (ballot rows, choice rows) as plain tuples."""
    end = datetime.now(UTC).replace(tzinfo=None)
    start = end - timedelta(days=SPREAD_DAYS)
    span = (end - start).total_seconds()
    voters: list[str] = []
    ballots, choices = [], []
    for number in range(count):
        ballot_id = "".join(rng.choices(ID_ALPHABET, k=ID_LENGTH))
        # In time order, as ballots arrive in production (rows are appended as cast).
        created = start + timedelta(seconds=(number + rng.random()) * span / count)
        if voters and rng.random() < REPEAT_VOTER_SHARE:
            cookie = rng.choice(voters)
        else:
            cookie = f"{rng.getrandbits(128):0{HASH_HEX}x}"
            if len(voters) < 10_000:
                voters.append(cookie)
        other = "Something else" if rng.random() < OTHER_SHARE else None
        comment = rng.choice(COMMENTS) if rng.random() < COMMENT_SHARE else None
        ballots.append((ballot_id, poll_id, created, other, comment, rng.choice(CONTEXTS),
                        cookie, f"{rng.getrandbits(128):0{HASH_HEX}x}", None))
        picked = rng.sample(option_ids, 2 if rng.random() < SECOND_CHOICE_SHARE else 1)
        choices.extend((ballot_id, option_id) for option_id in picked)
        if len(ballots) == BATCH_BALLOTS:
            yield ballots, choices
            ballots, choices = [], []
    if ballots:
        yield ballots, choices


BALLOT_COLUMNS = ("id", "poll_id", "created_at", "other", "comment", "context",
                  "cookie_hash", "ip_hash", "user_hash")


def insert_postgresql(engine: sa.Engine, batches) -> int:
    raw = engine.raw_connection()
    written = 0
    try:
        cursor = raw.cursor()
        for ballots, choices in batches:
            with cursor.copy(f"COPY ballots ({', '.join(BALLOT_COLUMNS)}) FROM STDIN") as copy:
                for row in ballots:
                    copy.write_row(row)
            with cursor.copy("COPY ballot_choices (ballot_id, option_id) FROM STDIN") as copy:
                for row in choices:
                    copy.write_row(row)
            written += len(choices)
        raw.commit()
        cursor.execute("ANALYZE ballots")
        cursor.execute("ANALYZE ballot_choices")
        raw.commit()
    finally:
        raw.close()
    return written


def insert_sqlite(engine: sa.Engine, batches) -> int:
    ballot_table, choice_table = Ballot.__table__, BallotChoice.__table__
    written = 0
    with engine.begin() as connection:
        for ballots, choices in batches:
            # Core executemany; times go in aware, as the UTCDateTime column wants them.
            connection.execute(ballot_table.insert(), [
                dict(zip(BALLOT_COLUMNS, (*row[:2], row[2].replace(tzinfo=UTC), *row[3:]),
                         strict=True))
                for row in ballots
            ])
            connection.execute(choice_table.insert(), [
                {"ballot_id": ballot_id, "option_id": option_id} for ballot_id, option_id in choices
            ])
            written += len(choices)
    with engine.begin() as connection:
        connection.execute(sa.text("ANALYZE"))
    return written


def main() -> None:
    args = parse_args()
    if args.schema:
        reset_schema(args.database_url, args.schema)
    app = create_app({"SQLALCHEMY_DATABASE_URI": args.database_url,
                      "SECRET_KEY": args.secret_key, "REDIS_URL": None})
    started = time.perf_counter()
    with app.app_context():
        upgrade()
        poll, key = make_poll(args.owner)
        option_ids = [option.id for option in poll.options]
        batches = generate(poll.id, option_ids, args.ballots, random.Random(args.seed))
        if db.engine.dialect.name == "postgresql":
            choices = insert_postgresql(db.engine, batches)
        else:
            choices = insert_sqlite(db.engine, batches)
        db.engine.dispose()
    print(json.dumps({"poll_id": poll.id, "api_key": key, "ballots": args.ballots,
                      "choices": choices, "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
