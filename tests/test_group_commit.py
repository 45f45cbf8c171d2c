"""Group commit (service/voting/records.py): the ballots of concurrent votes of a process
are written in one statement or transaction and one commit, and each vote still gets the
outcome it would have got alone, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from service.infra.db import db
from service.infra.models import Ballot, BallotChoice, VoteClaim
from service.voting import records
from service.voting.ballot import new_ballot_id
from service.voting.ports import AlreadyRecorded
from tests.batches import WAIT_SECONDS, run_as_one_batch

pytestmark = pytest.mark.parametrize("stack", ["sqlite-fakeredis", "postgresql-redis"],
                                     indirect=True)


def ballot(poll: dict, clock, *, identities=(), option=0, claims_until=None,
           context=None) -> records._Vote:
    ballot_id = new_ballot_id()
    row = {"id": ballot_id, "poll_id": poll["id"], "created_at": clock(), "other": None,
           "comment": None, "context": context, "cookie_hash": None, "ip_hash": None,
           "user_hash": None, "receipt_hash": f"receipt-{ballot_id}", "idempotency_hash": None,
           "ranking": None}
    return records._Vote(row, (poll["options"][option]["id"],), list(identities), claims_until)


def write_together(app, votes: list[records._Vote]) -> tuple[dict, list[str]]:
    """Record the ballots (SqlBallots, the vote's BallotStore) as one batch: each
    ballot's outcome (None: written), and the SQL statements run."""
    with app.app_context():
        engine = db.engine
        coalescer = records.group_commit(engine).coalescer
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement.split(None, 1)[0])

    def record(vote):
        def call():
            with app.app_context():
                try:
                    records.SqlBallots(db.session).record(
                        vote.row, option_ids=vote.option_ids, claims=vote.claims,
                        claims_until=vote.claims_until)
                finally:
                    db.session.remove()
        return call

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        outcomes = run_as_one_batch(coalescer, [record(vote) for vote in votes])
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    return {vote.row["id"]: outcome for vote, outcome in zip(votes, outcomes, strict=True)}, \
        statements


def recorded(app, poll: dict) -> tuple[set[str], int, dict[str, str]]:
    with app.app_context():
        session = db.session
        ballots = set(session.scalars(sa.select(Ballot.id).where(Ballot.poll_id == poll["id"])))
        choices = session.scalar(sa.select(sa.func.count()).select_from(BallotChoice)
                                 .where(BallotChoice.ballot_id.in_(ballots))) if ballots else 0
        claims = dict(session.execute(sa.select(VoteClaim.identity, VoteClaim.ballot_id)
                                      .where(VoteClaim.poll_id == poll["id"])).all())
        db.session.remove()
    return ballots, choices, claims


def test_concurrent_ballots_are_written_with_one_commit(app, stack, make_poll, clock):
    poll = make_poll(duplicate_check="cookie_and_ip")
    votes = [ballot(poll, clock, identities=(f"cookie:c{n}", f"ip:i{n}"), option=n % 3)
             for n in range(20)]

    outcomes, statements = write_together(app, votes)

    assert outcomes == {vote.row["id"]: None for vote in votes}
    ballots, choices, claims = recorded(app, poll)
    assert ballots == set(outcomes) and choices == 20
    assert claims == {identity: vote.row["id"] for vote in votes for identity in vote.claims}
    if stack.startswith("postgresql"):  # one statement in autocommit: one round trip
        assert statements == ["WITH"]
    else:  # ballots, choices and claims, each one executemany, in one transaction
        assert statements.count("INSERT") == 3


def test_a_voter_already_recorded_is_refused_alone(app, make_poll, clock):
    """Redis had forgotten a voter who voted: the database refuses her second ballot, and
    only hers; the batch's other voters are written."""
    poll = make_poll(duplicate_check="cookie_and_ip")
    first = ballot(poll, clock, identities=("cookie:c0", "ip:i0"))
    assert write_together(app, [first])[0] == {first.row["id"]: None}
    again = ballot(poll, clock, identities=("cookie:c0", "ip:i0"))
    partly = ballot(poll, clock, identities=("cookie:new", "ip:i0"))  # her address only
    others = [ballot(poll, clock, identities=(f"cookie:c{n}", f"ip:i{n}")) for n in (1, 2, 3)]

    outcomes, _ = write_together(app, [others[0], again, others[1], partly, others[2]])

    assert isinstance(outcomes.pop(again.row["id"]), AlreadyRecorded)
    assert isinstance(outcomes.pop(partly.row["id"]), AlreadyRecorded)
    assert outcomes == {vote.row["id"]: None for vote in others}
    ballots, choices, claims = recorded(app, poll)
    assert ballots == {first.row["id"], *outcomes} and choices == 4
    assert claims["ip:i0"] == claims["cookie:c0"] == first.row["id"]
    assert "cookie:new" not in claims


def test_one_voter_twice_in_one_batch_is_written_once(app, make_poll, clock):
    poll = make_poll(duplicate_check="ip")
    twice = [ballot(poll, clock, identities=("ip:same",)) for _ in range(2)]
    others = [ballot(poll, clock, identities=(f"ip:i{n}",)) for n in range(3)]

    outcomes, _ = write_together(app, [twice[0], *others, twice[1]])

    refused = [ballot_id for ballot_id, error in outcomes.items() if error is not None]
    assert len(refused) == 1 and refused[0] in {vote.row["id"] for vote in twice}
    assert isinstance(outcomes[refused[0]], AlreadyRecorded)
    ballots, _, claims = recorded(app, poll)
    assert ballots == set(outcomes) - set(refused)
    assert claims["ip:same"] in ballots


def test_an_expired_claim_is_taken_over_in_a_batch(app, make_poll, clock):
    """A windowed poll: a claim whose window has passed is the voter's again."""
    poll = make_poll(duplicate_check="ip", vote_window_seconds=3600)
    first = ballot(poll, clock, identities=("ip:i0",), claims_until=clock() + timedelta(hours=1))
    write_together(app, [first])
    clock.advance(hours=2)
    later = [ballot(poll, clock, identities=(f"ip:i{n}",),
                    claims_until=clock() + timedelta(hours=1)) for n in range(3)]

    outcomes, _ = write_together(app, later)

    assert outcomes == {vote.row["id"]: None for vote in later}
    assert recorded(app, poll)[2]["ip:i0"] == later[0].row["id"]


def test_without_the_database_every_vote_of_the_batch_is_told(app, stack, make_poll, clock,
                                                             tmp_path):
    poll = make_poll(duplicate_check="none")
    if stack.startswith("postgresql"):
        url = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens there
    else:
        url = f"sqlite:///{tmp_path / 'missing' / 'pollbox.db'}"  # a folder that is not
    engine = sa.create_engine(url)
    commit = records.GroupCommit(engine)
    votes = [ballot(poll, clock) for _ in range(3)]
    errors = []

    def write(vote):
        with contextlib.suppress(sa.exc.OperationalError):
            commit.write(vote)
            errors.append(None)
            return
        errors.append("refused")

    threads = [threading.Thread(target=write, args=(vote,)) for vote in votes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)

    assert errors == ["refused"] * 3
    assert commit.coalescer.idle
