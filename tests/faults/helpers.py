"""Shared steps of the fault scenarios: polls, bursts of votes, and what the database holds."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from service.infra.models import Ballot, BallotChoice
from tests.faults.conftest import FIGURES, Answer, post_json

# Addresses from 198.18.0.0/15, the range set aside for benchmarking (RFC 2544).
FIRST_ADDRESS = ipaddress.IPv4Address("198.18.0.1")
OPTION_PATTERN = (0, 0, 0, 1, 1, 2)


def address(n: int) -> str:
    return str(FIRST_ADDRESS + n)


def port_of(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


def create_poll(base_url: str, owner_key: str, **fields) -> dict:
    """A poll checking duplicates by address (one vote ever, backed by the database)."""
    body = {"question": "Which one?", "options": ["A", "B", "C"], "duplicate_check": "ip",
            "results": "always", **fields}
    response = httpx.post(f"{base_url}/api/v1/polls", json=body, timeout=10,
                          headers={"Authorization": f"Bearer {owner_key}"})
    assert response.status_code == 201, response.text
    return response.json()


def choice(poll: dict, n: int) -> int:
    return poll["options"][OPTION_PATTERN[n % len(OPTION_PATTERN)]]["id"]


async def cast(base_url: str, poll: dict, n: int) -> Answer:
    """Voter n's vote, from its own address, through the (trusted) proxy header."""
    return await post_json(port_of(base_url), f"/api/v1/polls/{poll['id']}/votes",
                           {"choices": [choice(poll, n)]}, {"X-Forwarded-For": address(n)})


@dataclass
class Burst:
    answers: dict[int, Answer] = field(default_factory=dict)
    in_flight_at_fault: int = 0

    def statuses(self) -> Counter:
        return Counter(answer.status for answer in self.answers.values())

    def accepted(self) -> dict[int, str]:
        """Voter -> ballot id of every acknowledged (201) vote."""
        return {n: a.body["vote"]["id"] for n, a in self.answers.items() if a.status == 201}


async def burst(base_url: str, poll: dict, voters: range, *,
                fault: Callable[[], None] | None = None, fault_after: int = 0) -> Burst:
    """Send every voter's vote at once; run `fault` once `fault_after` have been answered."""
    result = Burst()
    done = 0

    async def one(n: int) -> None:
        nonlocal done
        result.answers[n] = await cast(base_url, poll, n)
        done += 1

    tasks = [asyncio.create_task(one(n)) for n in voters]
    if fault is not None:
        while done < fault_after and not all(task.done() for task in tasks):
            await asyncio.sleep(0.001)
        result.in_flight_at_fault = len(tasks) - done
        await asyncio.to_thread(fault)
    await asyncio.gather(*tasks)
    return result


def worker_pids(master_pid: int) -> list[int]:
    """A gunicorn master's worker processes."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def pending(answer: Answer) -> bool:
    """`409 vote_pending`: an earlier attempt's fate is not known yet; retry."""
    return answer.status == 409 and (answer.body or {}).get("code") == "vote_pending"


async def retry_until_settled(base_url: str, poll: dict, voters: list[int], *,
                              every: float = 0.25, give_up_after: float = 15
                              ) -> tuple[dict[int, list[Answer]], float]:
    """Send each voter's vote again every `every` seconds while it is answered
    `vote_pending`, as the widget does: every answer per voter, and how long it took
    until none was pending."""
    answers: dict[int, list[Answer]] = {n: [] for n in voters}
    started = time.monotonic()
    waiting = list(voters)
    while waiting and time.monotonic() - started < give_up_after:
        got = await asyncio.gather(*(cast(base_url, poll, n) for n in waiting))
        for n, answer in zip(waiting, got, strict=True):
            answers[n].append(answer)
        waiting = [n for n, answer in zip(waiting, got, strict=True) if pending(answer)]
        if waiting:
            await asyncio.sleep(every)
    return answers, time.monotonic() - started


def recorded(engine: sa.Engine, poll: dict) -> dict[str, str]:
    """Ballot id -> address hash of every ballot the database holds for the poll."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(Ballot.id, Ballot.ip_hash).where(Ballot.poll_id == poll["id"])
        )
        return dict(rows.all())


def recorded_counts(engine: sa.Engine, poll: dict) -> dict[int, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(BallotChoice.option_id, sa.func.count())
            .join(Ballot, Ballot.id == BallotChoice.ballot_id)
            .where(Ballot.poll_id == poll["id"]).group_by(BallotChoice.option_id)
        )
        return dict(rows.all())


def doubled(rows: dict[str, str]) -> int:
    """Voters (addresses) with more than one ballot."""
    return sum(1 for n in Counter(rows.values()).values() if n > 1)


def api_tallies(base_url: str, poll: dict) -> dict[int, int]:
    response = httpx.get(f"{base_url}/api/v1/polls/{poll['id']}/tallies", timeout=10)
    assert response.status_code == 200, response.text
    return {option["id"]: option["votes"] for option in response.json()["options"]
            if option["votes"]}


def report(name: str, **figures) -> None:
    """Keep a scenario's figures for the run's summary (see conftest.py)."""
    FIGURES.append(f"{name}: " + ", ".join(f"{key}={value}" for key, value in figures.items()))
