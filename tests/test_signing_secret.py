"""Signed users: the owner rotates the poll's signing secret; the README's example signs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_votes import assert_problem, sign

README = Path(__file__).resolve().parents[1] / "README.md"
HEX_64 = re.compile(r"^[0-9a-f]{64}$")
README_EXAMPLE_LINES = 5


def rotate(client, poll: dict, headers: dict):
    return client.post(f"/api/v1/polls/{poll['id']}/signing-secret", headers=headers)


def readme_signer():
    """The README's Python example for an owner's backend, as published."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    [example] = [block for block in blocks if "def pollbox_voter" in block]
    assert len([line for line in example.splitlines() if line.strip()]) == README_EXAMPLE_LINES
    namespace: dict = {}
    exec(example, namespace)
    return namespace["pollbox_voter"]


def test_owner_rotates_the_signing_secret(client, auth, make_poll):
    poll = make_poll(duplicate_check="user")

    response = rotate(client, poll, auth)

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["poll_id"] == poll["id"]
    assert HEX_64.match(answer["signing_secret"])
    assert answer["signing_secret"] != poll["signing_secret"]
    owner_view = client.get(f"/api/v1/polls/{poll['id']}", headers=auth).get_json()
    assert owner_view["signing_secret"] == answer["signing_secret"]
    public_view = client.get(f"/api/v1/polls/{poll['id']}").get_json()
    assert "signing_secret" not in public_view


def test_signatures_made_with_the_old_secret_are_refused_after_rotation(
    client, auth, make_poll, vote
):
    poll = make_poll(duplicate_check="user")
    new_secret = rotate(client, poll, auth).get_json()["signing_secret"]

    problem = assert_problem(vote(poll, voter=sign(poll, "alice")), 422, "validation_error")

    assert "voter.sig" in problem["errors"]
    assert vote(poll, voter=sign({**poll, "signing_secret": new_secret}, "alice")
                ).status_code == 201


def test_an_account_that_voted_before_rotation_is_still_counted_once(
    app, client, auth, make_poll, vote
):
    poll = make_poll(duplicate_check="user")
    assert vote(poll, voter=sign(poll, "alice")).status_code == 201
    rotated = {**poll, "signing_secret": rotate(client, poll, auth).get_json()["signing_secret"]}

    # Another browser, another address: the same account all the same.
    again = vote(rotated, browser=app.test_client(), ip="198.51.100.5",
                 voter=sign(rotated, "alice"))

    assert_problem(again, 409, "duplicate_vote")


@pytest.mark.parametrize(
    ("headers", "poll_id", "status", "code"),
    [
        (lambda auth, other: {}, None, 401, "unauthorized"),
        (lambda auth, other: other, None, 403, "forbidden"),
        (lambda auth, other: auth, "nosuchpoll12", 404, "not_found"),
    ],
    ids=["no-key", "another-owner", "unknown-poll"],
)
def test_rotation_is_for_the_polls_owner_only(client, auth, other_auth, make_poll, headers,
                                              poll_id, status, code):
    poll = make_poll(duplicate_check="user")

    response = rotate(client, {"id": poll_id or poll["id"]}, headers(auth, other_auth))

    assert_problem(response, status, code)
    owner_view = client.get(f"/api/v1/polls/{poll['id']}", headers=auth).get_json()
    assert owner_view["signing_secret"] == poll["signing_secret"]


def test_the_readme_example_signs_votes_the_service_accepts(app, make_poll, vote):
    poll = make_poll(duplicate_check="user")
    pollbox_voter = readme_signer()

    voter = pollbox_voter(poll["id"], "user-1001", poll["signing_secret"])

    assert vote(poll, voter=voter).status_code == 201
    assert_problem(vote(poll, browser=app.test_client(), ip="198.51.100.6", voter=voter), 409,
                   "duplicate_vote")
