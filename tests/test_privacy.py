"""Privacy audit of the trust features: Idempotency-Keys, receipts, rate limits and
integrity counts keep no raw address, cookie id, user id, key or receipt anywhere."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from service.infra.db import db
from service.infra.models import Ballot
from tests.test_votes import (
    IP_TRACES,
    RAW_IPS,
    USER_IDS,
    _database_rows,
    _redis_entries,
    cookie_id,
    cookie_value,
    sign,
)

POLICIES = ("none", "cookie", "ip", "cookie_and_ip", "user")
WINDOW = 60


def test_a_voting_session_leaves_no_raw_identity_key_or_receipt_anywhere(
    app, client, make_poll, caplog
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    app.config["RATELIMIT_VOTES"] = "3 per minute"  # so that some attempts are limited
    browsers = [app.test_client() for _ in RAW_IPS]
    receipts, idempotency_keys = [], []
    for policy in POLICIES:
        for window in (None, WINDOW):
            poll = make_poll(question=f"{policy} {window}", duplicate_check=policy,
                             vote_window_seconds=window, allowed_origins=["https://a.example"])
            for n, (voter, ip, user_id) in enumerate(zip(browsers, RAW_IPS, USER_IDS,
                                                          strict=True)):
                key = f"idem-{user_id}-{policy}-{window}"
                idempotency_keys.append(key)
                receipts += _vote_retry_and_refusals(poll, voter, ip=ip, user_id=user_id,
                                                     key=key, page=n)
                if n == 0 and receipts:
                    assert client.get(f"/api/v1/receipts/{receipts[-1]}").status_code == 200
                    assert client.delete(f"/api/v1/receipts/{receipts[-1]}").status_code == 204
            assert client.get(f"/api/v1/polls/{poll['id']}/tallies").status_code == 200

    secrets_ = [*IP_TRACES, *USER_IDS, *idempotency_keys, *receipts]
    for voter in browsers:
        secrets_ += [cookie_id(voter), cookie_value(voter)]
    rows = _database_rows(app)
    redis_entries = _redis_entries(app.extensions["pollbox.redis"].client)
    assert receipts and rows["ballots"]
    for part in (":idem:", ":integrity:", ":seen:", ":tally"):
        assert any(part in entry for entry in redis_entries), part
    if app.config["REDIS_URL"]:
        assert any(":ratelimit:" in entry for entry in redis_entries)

    for secret in secrets_:
        for table, table_rows in rows.items():
            assert not [row for row in table_rows if secret in row], (secret, table)
        assert not [entry for entry in redis_entries if secret in entry], secret
        assert secret not in caplog.text, secret


def _vote_retry_and_refusals(poll: dict, voter, *, ip: str, user_id: str, key: str,
                             page: int) -> list[str]:
    """A keyed vote, its retry, a duplicate without the key, and a vote from a site the
    poll does not allow; the receipts of the votes accepted."""
    receipts = []
    body = {"choices": [poll["options"][0]["id"]], "context": f"/page/{page}"}
    if poll["duplicate_check"] == "user":
        body["voter"] = sign(poll, user_id)
    for attempt in range(2):  # a retry, then a duplicate without the key
        headers = {"Idempotency-Key": key} if attempt == 0 else {}
        response = voter.post(f"/api/v1/polls/{poll['id']}/votes", json=body,
                              headers=headers, environ_overrides={"REMOTE_ADDR": ip})
        assert response.status_code in (201, 409, 429), response.get_json()
        if response.status_code == 201:
            receipts.append(response.get_json()["vote"]["receipt"])
    refused = voter.post(f"/api/v1/polls/{poll['id']}/votes", json=body,
                         headers={"Origin": "https://b.example"},
                         environ_overrides={"REMOTE_ADDR": ip})
    assert refused.status_code in (403, 429)
    return receipts


def test_one_idempotency_key_has_unrelated_hashes_in_two_polls(app, make_poll):
    first, second = make_poll(), make_poll()
    for poll in (first, second):
        response = app.test_client().post(
            f"/api/v1/polls/{poll['id']}/votes", json={"choices": [poll["options"][0]["id"]]},
            headers={"Idempotency-Key": "the-same-key"},
        )
        assert response.status_code == 201

    with app.app_context():
        hashes = db.session.scalars(
            sa.select(Ballot.idempotency_hash).where(Ballot.poll_id.in_([first["id"],
                                                                          second["id"]]))
        ).all()
    redis = app.extensions["pollbox.redis"].client
    stored = {key.decode().rsplit(":", 1)[1] for key in redis.scan_iter(match="*:idem:*")}

    assert len(hashes) == 2 and None not in hashes
    assert hashes[0] != hashes[1]
    assert stored == set(hashes)


def test_the_same_address_has_unrelated_rate_limit_keys_in_two_polls(app, make_poll, vote):
    polls = [make_poll(), make_poll()]
    for poll in polls:
        assert vote(poll, ip=RAW_IPS[0]).status_code == 201
    redis = app.extensions["pollbox.redis"].client

    limiter_keys = [key.decode() for key in redis.scan_iter(match="*:ratelimit:*")]

    # pollbox:{poll id}:ratelimit:<keyed hash of the address>:<amount>/<window>
    hashes = {key.split(":ratelimit:", 1)[1].split(":", 1)[0] for key in limiter_keys}
    assert len(limiter_keys) == 2 and len(hashes) == 2
    assert not [key for key in limiter_keys if any(trace in key for trace in IP_TRACES)]
