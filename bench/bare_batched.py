"""The same job bare, with group commit: the vote of bench/bare.py, with the concurrent
votes of a worker coalesced as Pollbox coalesces its own (service/infra/batching.py):
one SET NX pipeline, one multi-row INSERT (autocommit: one commit) and one HINCRBY
pipeline per batch, each vote still told its own outcome. Nothing else is added: no rate
limit, idempotency, integrity, receipts, webhook note or live publish.

It is the reference the speed issue's vote target was set against (a prototype of it
reached 2.5-3.0x the unbatched bare job there); bench/run.py measures it beside the bare
job, so a run tells how much group commit alone is worth on the machine it runs on.
Tallies are bench/bare.py's. Env as bench/bare.py's.
"""

from __future__ import annotations

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from bench.bare import SEEN_SECONDS, ballots, cast, client, engine, healthz
from service.infra.batching import Coalescer


def _claim(keys: list[str]) -> list[bool]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, 1, nx=True, ex=SEEN_SECONDS)
    return [bool(claimed) for claimed in pipe.execute()]


def _insert(rows: list[dict]) -> list[None]:
    with engine.connect() as connection:
        connection.execute(ballots.insert().values(rows))
    return [None] * len(rows)


def _count(tallies: list[tuple[str, str]]) -> list[None]:
    pipe = client.pipeline(transaction=False)
    for key, option in tallies:
        pipe.hincrby(key, option, 1)
    pipe.execute()
    return [None] * len(tallies)


claims, inserts, counts = Coalescer(_claim), Coalescer(_insert), Coalescer(_count)

app = Flask(__name__)
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)
app.get("/healthz")(healthz)


@app.post("/api/v1/polls/<poll_id>/votes")
def vote(poll_id: str) -> Response:
    return cast(poll_id, claim=claims.submit, insert=inserts.submit, count=counts.submit)
