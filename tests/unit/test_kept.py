"""The bounded memory the process keeps answers in (service/infra/kept.py)."""

from __future__ import annotations

import os

from service.infra.kept import Kept


def test_the_first_put_goes_first_once_full():
    kept = Kept(2)
    kept.put("a", 1)
    kept.put("b", 2)
    assert kept.get("a") == 1  # reading does not keep it longer
    kept.put("c", 3)
    assert (kept.get("a"), kept.get("b"), kept.get("c"), len(kept)) == (None, 2, 3, 2)


def test_with_recent_the_least_recently_read_goes_first():
    kept = Kept(2, recent=True)
    kept.put("a", 1)
    kept.put("b", 2)
    assert kept.get("a") == 1
    kept.put("c", 3)
    assert (kept.get("a"), kept.get("b"), kept.get("c")) == (1, None, 3)
    kept.clear()
    assert len(kept) == 0 and kept.get("a") is None


def test_a_forked_process_makes_its_own_request_record():
    """The request log line's record is copied from one made once per process: a child
    of a fork (a gunicorn worker) names its own pid, not its parent's."""
    from service.infra import logs

    assert logs._RequestRecord((), {}).process == os.getpid()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's exit code says)
        os.close(reader)
        os.write(writer, str(logs._RequestRecord((), {}).process).encode())
        os._exit(0)
    os.close(writer)
    told = os.read(reader, 32).decode()
    os.waitpid(child, 0)
    os.close(reader)
    assert told == str(child)
