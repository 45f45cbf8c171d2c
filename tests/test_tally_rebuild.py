"""Rebuilding a tally from the database while ballots keep arriving counts each ballot
exactly once: the interleavings the Lua scripts guard against, played out one by one."""

from __future__ import annotations

import pytest

from service.infra import keys
from service.infra.clock import epoch_ms, utcnow
from service.infra.db import db
from service.infra.models import Ballot, BallotChoice
from service.infra.redis import redis_handle
from service.infra.redis.scripts import CountCall
from service.polls.manage import get_poll
from service.tallies import counts as tallies


@pytest.fixture
def poll(make_poll):
    return make_poll(duplicate_check="none")


def commit_ballot(poll: dict, ballot_id: str, option_index: int = 0) -> int:
    """A ballot committed to the database but not yet counted in Redis."""
    option_id = poll["options"][option_index]["id"]
    db.session.add(Ballot(id=ballot_id, poll_id=poll["id"], created_at=utcnow()))
    db.session.flush()
    db.session.add(BallotChoice(ballot_id=ballot_id, option_id=option_id))
    db.session.commit()
    return option_id


def count(poll: dict, ballot_id: str, option_id: int) -> None:
    """The vote's own count: count.lua with its tally scopes."""
    redis_handle().scripts.count(CountCall(poll_id=poll["id"], ballot_id=ballot_id,
                                           at_ms=epoch_ms(utcnow()), option_ids=(option_id,)))


def read(poll: dict) -> tallies.Counts:
    return tallies.read(session=db.session, redis=redis_handle(),
                        poll=get_poll(session=db.session, poll_id=poll["id"]))


def drop_tally(poll: dict) -> None:
    redis_handle().client.delete(keys.tally(poll["id"]))


def test_a_late_count_of_a_ballot_the_rebuild_already_read_is_not_added_again(app, poll):
    with app.app_context():
        option_id = commit_ballot(poll, "late0000000000001")
        drop_tally(poll)
        assert read(poll).total == 1  # rebuilt from the database, which holds the ballot
        count(poll, "late0000000000001", option_id)  # the vote's own count arrives late
        counts = read(poll)
        assert counts.total == 1
        assert counts.options[option_id] == 1


def test_a_ballot_counted_while_the_tally_was_missing_is_counted_once_by_the_rebuild(
    app, poll
):
    with app.app_context():
        drop_tally(poll)
        option_id = commit_ballot(poll, "gap00000000000001")
        count(poll, "gap00000000000001", option_id)  # no tally: it waits as pending
        assert read(poll).total == 1
        assert read(poll).options[option_id] == 1


def test_a_ballot_committed_during_a_rebuild_after_its_snapshot_is_counted(
    app, poll, monkeypatch
):
    """The rebuild's snapshot misses the ballot; its count waits for the rebuild to add it."""
    snapshot_reader = tallies._ballots_in_snapshot

    def meanwhile(connection, **kwargs):
        found = snapshot_reader(connection, **kwargs)
        option_id = commit_ballot(poll, "during00000000001", option_index=1)
        count(poll, "during00000000001", option_id)
        return found

    with app.app_context():
        commit_ballot(poll, "before00000000001")
        drop_tally(poll)
        monkeypatch.setattr(tallies, "_ballots_in_snapshot", meanwhile)
        assert read(poll).total == 1  # this reader's snapshot: the earlier ballot only
        monkeypatch.undo()
        counts = read(poll)
        assert counts.total == 2
        assert counts.options == {poll["options"][0]["id"]: 1, poll["options"][1]["id"]: 1}


def test_a_rebuild_that_lost_its_lock_does_not_overwrite_the_tally(app, poll, monkeypatch):
    snapshot_reader = tallies._ballots_in_snapshot

    def lock_taken_over(connection, **kwargs):
        found = snapshot_reader(connection, **kwargs)
        redis_handle().client.set(keys.tally_scope(poll["id"])[2], "someone-else")
        return found

    with app.app_context():
        commit_ballot(poll, "ballot00000000001")
        drop_tally(poll)
        monkeypatch.setattr(tallies, "_ballots_in_snapshot", lock_taken_over)
        assert read(poll).total == 1  # answered from the snapshot...
        assert redis_handle().client.exists(keys.tally(poll["id"])) == 0  # ...not stored


def test_counts_wait_while_another_process_rebuilds(app, poll):
    with app.app_context():
        tally, pending, lock, _ = keys.tally_scope(poll["id"])
        client = redis_handle().client
        client.set(lock, "another-process")
        option_id = commit_ballot(poll, "wait0000000000001")
        count(poll, "wait0000000000001", option_id)
        assert client.hget(tally, "total") == b"0"  # not counted into a tally being replaced
        assert client.llen(pending) == 1  # but kept for that rebuild to add
