"""The named calls of the Lua scripts lay their KEYS and ARGV out as the scripts' headers
say (service/infra/redis/lua/*.lua), so that the scripts read what the names mean."""

from __future__ import annotations

from service.infra import keys
from service.infra.redis.scripts import (
    PENDING_COUNT_SECONDS,
    AdmitCall,
    CountCall,
    KeyHold,
    LimitWindow,
)


def test_admit_lists_version_limits_key_integrity_then_claims():
    call = AdmitCall(
        poll_id="P", now_ms=1000, integrity_hour="2026120312", retention_seconds=60,
        limits=(LimitWindow(3, 60_000), LimitWindow(2, 1000)), limited_as="addr",
        key=KeyHold(entry="E", token="T", body="B", hold_ms=5000), ballot_id="b1",
        identities=(("cookie", "cookie:c"), ("ip", "ip:i")), window_ms=0, orphan_ms=45_000,
        lease="me", lease_ms=3000, count_duplicate=True, version="v9")

    script_keys, args = call.keys_and_args()

    assert script_keys == [
        keys.poll_version("P"), keys.rate_limit("P", "addr", 3, 60_000),
        keys.rate_limit("P", "addr", 2, 1000), "E", keys.integrity("P", "2026120312"),
        keys.lease("P", "me"), keys.seen("P", "cookie:c"), keys.seen("P", "ip:i"),
    ]
    assert args == [1000, 2, "1", 60, "1", "v9", 0, 3, 60_000, 2, 1000, "T", "B", 5000,
                    "b1", 0, 45_000, "me", 3000, "cookie", "ip"]
    assert call.claim == "b1:0:1000:me"  # what admit.lua writes: ballot:until:claimed:owner


def test_admit_for_the_limits_alone_claims_nothing():
    call = AdmitCall(poll_id="P", now_ms=1, integrity_hour="h", retention_seconds=60,
                     limits=(LimitWindow(1, 10),), limited_as="a")

    script_keys, args = call.keys_and_args()

    assert script_keys == [keys.rate_limit("P", "a", 1, 10), keys.integrity("P", "h"),
                           keys.lease("P", "")]
    assert args == [1, 1, "0", 60, "0", "", 0, 1, 10, "", 0, 0, "", 0]


def test_admit_of_a_poll_with_max_votes_reads_its_tally_after_the_version():
    call = AdmitCall(poll_id="P", now_ms=1, integrity_hour="h", retention_seconds=60,
                     ballot_id="b1", identities=(("ip", "ip:i"),), version="v1", max_votes=100)

    script_keys, args = call.keys_and_args()

    assert script_keys == [keys.poll_version("P"), keys.tally("P"), keys.integrity("P", "h"),
                           keys.lease("P", ""), keys.seen("P", "ip:i")]
    assert args[5:7] == ["v1", 100]


def test_count_lists_its_tally_scopes_then_each_steps_keys_in_order():
    call = (CountCall(poll_id="P", ballot_id="b1", at_ms=5, option_ids=(11, 12),
                      has_other=True, context="/page")
            .publish().integrity("accepted", hour="h", retention_seconds=60)
            .note_webhook(owner_id=7, second=100).read()
            .keep_answer(entry="E", token="T", answer="{}", keep_ms=9, with_tally=True))

    script_keys, args = call.keys_and_args()

    assert script_keys == [
        *keys.tally_scope("P"), *keys.tally_scope("P", "/page"), keys.integrity("P", "h"),
        keys.webhook_subscribers(), keys.webhook_batches(), keys.webhook_batch("P:100"), "E",
    ]
    assert args[:8] == ["b1", 5, "1", PENDING_COUNT_SECONDS, 2, 2, 11, 12]
    assert args[8:] == ["publish", keys.tally_changes("P"), "integrity", "accepted", 60,
                        "webhook", 7, "P:100", 100, 100_000, 86_400, "read",
                        "answer", "T", "{}", 9, "1"]


def test_a_note_alone_counts_no_tally():
    script_keys, args = CountCall(poll_id="P", ballot_id="b1", at_ms=0, counted=False) \
        .note_webhook(owner_id=7, second=100).keys_and_args()

    assert script_keys[0] == keys.webhook_subscribers() and len(script_keys) == 3
    assert args[4:6] == [0, 0]  # no scope, no option


def test_confirm_lists_the_voters_claims_and_their_committed_value():
    call = CountCall(poll_id="P", ballot_id="b1", at_ms=5).confirm(
        identities=["cookie:c", "ip:i"], claim="b1:0:1000:me").publish()

    script_keys, args = call.keys_and_args()

    assert script_keys[4:] == [keys.seen("P", "cookie:c"), keys.seen("P", "ip:i")]
    assert args[6:] == ["confirm", 2, "b1:0:1000:me", "b1:0:1000:-",
                        "publish", keys.tally_changes("P")]
