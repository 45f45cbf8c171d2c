"""Benchmark: the instant runoff of a big ranked poll, computed from the database.

    .venv/bin/python bench/irv_runoff.py --database sqlite --ballots 1000000
    .venv/bin/python bench/irv_runoff.py --database postgresql --ballots 1000000

Seeds a 5-option ranked poll with partial rankings shaped like real ones (first
preferences skewed towards two front runners; 30 % rank one option, 25 % two, 20 %
three, 10 % four, 15 % all five; later preferences follow the same popularity), then
times what the tallies do on a cache miss: one query of the rankings ordered by ballot
and rank, grouped (service/tallies/irv.py `rankings`) and the rounds (`runoff_of_groups`).
Prints the median of `--runs` timings, the peak Python memory of one computation
(tracemalloc, in a separate run so the timing is not slowed by it) and the process's
peak resident memory. Target: under 2 s; memory bounded by ballots x ranks.

SQLite: a file in --workdir. PostgreSQL: schema `pollbox_bench_irv_<pid>` of database
`test` on 127.0.0.1:5432 (user postgres), dropped afterwards. No Redis is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import string
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade

from service import create_app, owners
from service.infra.clock import utcnow
from service.infra.db import db
from service.infra.redis import redis_handle
from service.polls import manage as polls
from service.tallies import irv

OPTIONS = ["Ada", "Grace", "Edsger", "Barbara", "Donald"]
POPULARITY = [0.34, 0.28, 0.18, 0.12, 0.08]
RANKS_SHARE = {1: 0.30, 2: 0.25, 3: 0.20, 4: 0.10, 5: 0.15}
BATCH_BALLOTS = 50_000
ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 16
TARGET_SECONDS = 2.0
POSTGRES_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), required=True)
    parser.add_argument("--ballots", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--workdir", default="/tmp/pollbox-bench-irv")
    return parser.parse_args()


def ranking(rng: random.Random, option_ids: list[int]) -> list[int]:
    """A partial ranking: its length by RANKS_SHARE, its order by popularity."""
    length = rng.choices(list(RANKS_SHARE), weights=list(RANKS_SHARE.values()))[0]
    left, weights, chosen = list(option_ids), list(POPULARITY), []
    for _ in range(length):
        index = rng.choices(range(len(left)), weights=weights)[0]
        chosen.append(left.pop(index))
        weights.pop(index)
    return chosen


def generate(poll_id: str, option_ids: list[int], count: int, rng: random.Random):
    """Batches of (ballot rows, choice rows with their rank)."""
    created = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30)
    ballots, choices = [], []
    for _ in range(count):
        ballot_id = "".join(rng.choices(ID_ALPHABET, k=ID_LENGTH))
        chosen = ranking(rng, option_ids)
        # As the vote writes them: the ranking on the ballot, each choice with its rank.
        ballots.append((ballot_id, poll_id, created, ",".join(map(str, chosen))))
        choices.extend((ballot_id, option_id, rank)
                       for rank, option_id in enumerate(chosen, start=1))
        if len(ballots) == BATCH_BALLOTS:
            yield ballots, choices
            ballots, choices = [], []
    if ballots:
        yield ballots, choices


def insert(engine: sa.Engine, batches) -> int:
    written = 0
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            for ballots, choices in batches:
                with cursor.copy("COPY ballots (id, poll_id, created_at, ranking, "
                                 "comment_hidden) FROM STDIN") as copy:
                    for row in ballots:
                        copy.write_row((*row, False))
                with cursor.copy("COPY ballot_choices (ballot_id, option_id, rank) "
                                 "FROM STDIN") as copy:
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
    with engine.begin() as connection:
        for ballots, choices in batches:
            connection.exec_driver_sql(
                "INSERT INTO ballots (id, poll_id, created_at, ranking, comment_hidden) "
                "VALUES (?, ?, ?, ?, 0)",
                [(i, p, c.isoformat(sep=" "), r) for i, p, c, r in ballots])
            connection.exec_driver_sql(
                "INSERT INTO ballot_choices (ballot_id, option_id, rank) VALUES (?, ?, ?)",
                choices)
            written += len(choices)
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    return written


def seed(args: argparse.Namespace) -> tuple[str, list[int], int, float]:
    session = db.session
    key = owners.create_owner(session=session, name="IRV bench")
    owner = owners.active_key(session=session, key=key).owner
    data = {"question": "Who should give the keynote?", "options": OPTIONS, "kind": "ranked",
            "max_choices": None, "allow_other": False, "allow_comment": False,
            "duplicate_check": "none", "vote_window_seconds": None, "results": "always",
            "results_min_votes": 0, "opens_at": None, "closes_at": None,
            "allowed_origins": [], "locale": "en"}
    poll = polls.create_poll(session=session, redis=redis_handle(), owner=owner, data=data,
                             now=utcnow())
    option_ids = [option.id for option in poll.options]
    started = time.perf_counter()
    choices = insert(db.engine, generate(poll.id, option_ids, args.ballots,
                                         random.Random(args.seed)))
    return poll.id, option_ids, choices, time.perf_counter() - started


def compute(engine: sa.Engine, poll_id: str, option_ids: list[int]) -> irv.Runoff:
    """What the tallies do on a cache miss."""
    with engine.connect() as connection:
        groups = irv.rankings(connection, poll_id=poll_id, ranks=len(option_ids))
    return irv.runoff_of_groups(groups, option_ids)


def measure(args: argparse.Namespace, url: str) -> dict:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench-secret-key",
                      "REDIS_URL": None})
    with app.app_context():
        upgrade()
        poll_id, option_ids, choices, seed_seconds = seed(args)
        engine = db.engine
        timings, result = [], None
        for _ in range(args.runs):
            started = time.perf_counter()
            result = compute(engine, poll_id, option_ids)
            timings.append(time.perf_counter() - started)
        tracemalloc.start()
        compute(engine, poll_id, option_ids)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        engine.dispose()
    assert result is not None
    return {
        "database": args.database, "ballots": args.ballots, "choices": choices,
        "seed_seconds": round(seed_seconds, 1),
        "seconds_median": round(statistics.median(timings), 3),
        "seconds_all": [round(t, 3) for t in timings],
        "python_peak_mb": round(peak / 2**20, 2),
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ballots_x_ranks_mb": round(choices * 8 / 2**20, 1),  # one 8-byte id per choice
        "rounds": len(result.rounds), "winner": OPTIONS[option_ids.index(result.winner)]
        if result.winner is not None else None,
        "final_round": {OPTIONS[option_ids.index(o)]: n
                        for o, n in result.rounds[-1].counts.items()},
        "exhausted": result.rounds[-1].exhausted,
        "target_met": statistics.median(timings) < TARGET_SECONDS,
        "python": platform.python_version(), "cpus": os.cpu_count(),
    }


def main() -> None:
    args = parse_args()
    if args.database == "sqlite":
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "irv.db"
        path.unlink(missing_ok=True)
        print(json.dumps(measure(args, f"sqlite:///{path}")))
        path.unlink(missing_ok=True)
        return
    schema = f"pollbox_bench_irv_{os.getpid()}"
    admin = sa.create_engine(POSTGRES_BASE)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        print(json.dumps(measure(args, f"{POSTGRES_BASE}?options=-csearch_path%3D{schema}")))
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


if __name__ == "__main__":
    main()
