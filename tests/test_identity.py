"""Unit tests of service.identity: client addresses, per-poll keyed hashes, the signed
voter cookie. No database or Redis: a bare Flask app where a request is needed."""

from __future__ import annotations

import re

import pytest
from flask import Flask, Response, jsonify
from itsdangerous import Signer
from werkzeug.test import EnvironBuilder

from service.infra.identity import client_address, keyed_hash
from service.web import voter as identity
from service.web.voter import (
    VOTER_COOKIE,
    VOTER_COOKIE_SALT,
    current_voter,
    read_voter,
    set_voter_cookie,
)

SECRET = "unit-test-secret"


# -- client_address ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", id="same-64"),
        pytest.param("2001:db8:1:2::1", "2001:DB8:1:2:0:0:0:9", id="same-64-other-spelling"),
        pytest.param("192.0.2.10", "::ffff:192.0.2.10", id="ipv4-mapped"),
        pytest.param("192.0.2.10", "::ffff:c000:20a", id="ipv4-mapped-in-hex"),
        pytest.param("203.0.113.7", "203.0.113.7:51234", id="ipv4-with-port"),
        pytest.param("2001:db8:1:2::1", "[2001:db8:1:2::5]:443", id="bracketed-ipv6-with-port"),
        pytest.param("2001:db8:1:2::1", "[2001:db8:1:2::5]", id="bracketed-ipv6"),
        pytest.param("203.0.113.7", " 203.0.113.7 ", id="surrounding-spaces"),
    ],
)
def test_addresses_of_one_client_map_to_one_identity(first, second):
    assert client_address(first) == client_address(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("2001:db8:1:2::1", "2001:db8:1:3::1", id="neighbouring-64"),
        pytest.param("2001:db8:1:2::1", "2001:db9:1:2::1", id="other-ipv6-network"),
        pytest.param("192.0.2.10", "192.0.2.11", id="ipv4-is-not-grouped"),
        pytest.param("192.0.2.10", "::ffff:192.0.2.11", id="other-mapped-ipv4"),
        pytest.param("203.0.113.7:1000", "203.0.113.8:1000", id="ipv4-with-ports"),
    ],
)
def test_addresses_of_different_clients_map_to_different_identities(first, second):
    assert client_address(first) != client_address(second)


def test_ipv6_address_is_reduced_to_its_64_network():
    assert client_address("2001:db8:abcd:12:3456:789a:bcde:f012") == "2001:db8:abcd:12::/64"


def test_ipv4_address_is_kept_as_is():
    assert client_address("198.51.100.23") == "198.51.100.23"


@pytest.mark.parametrize("raw", [None, "", "not-an-address", "[broken", "300.1.1.1"])
def test_missing_or_unparsable_address_does_not_fail(raw):
    assert client_address(raw) == client_address(None)
    assert client_address(raw) != client_address("192.0.2.1")


def test_scoped_link_local_address_does_not_fail():
    assert client_address("fe80::1%eth0") == client_address("fe80::2")


# -- keyed_hash --------------------------------------------------------------------------


def test_keyed_hash_is_stable_for_one_poll_and_identity():
    assert keyed_hash(SECRET, "poll1", "ip", "192.0.2.1") == keyed_hash(
        SECRET, "poll1", "ip", "192.0.2.1"
    )


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"poll_id": "poll2"}, id="another-poll"),
        pytest.param({"kind": "cookie"}, id="another-kind"),
        pytest.param({"value": "192.0.2.2"}, id="another-value"),
        pytest.param({"secret": "another-secret"}, id="another-secret"),
    ],
)
def test_keyed_hash_changes_with_poll_kind_value_and_secret(changed):
    base = {"secret": SECRET, "poll_id": "poll1", "kind": "ip", "value": "192.0.2.1"}

    assert keyed_hash(**base) != keyed_hash(**{**base, **changed})


def test_keyed_hash_does_not_run_fields_together():
    # "a" + "b:c" must not collide with "a:b" + "c".
    assert keyed_hash(SECRET, "poll", "ip", "a:b") != keyed_hash(SECRET, "poll:ip", "a", "b")


def test_keyed_hash_is_hex_and_does_not_contain_the_value():
    digest = keyed_hash(SECRET, "poll1", "user", "alice@example.com")

    assert re.fullmatch(r"[0-9a-f]{32}", digest)
    assert "alice" not in digest


# -- the voter cookie ----------------------------------------------------------------------


def _request(*, cookie: str | None = None, remote_addr: str = "192.0.2.1"):
    headers = {"Cookie": f"{VOTER_COOKIE}={cookie}"} if cookie is not None else {}
    return EnvironBuilder(
        path="/", headers=headers, environ_base={"REMOTE_ADDR": remote_addr}
    ).get_request()


def _signed(value: str, secret: str = SECRET) -> str:
    return Signer(secret, salt=VOTER_COOKIE_SALT).sign(value).decode()


def test_request_without_cookie_gets_a_new_random_id():
    first = read_voter(_request(), SECRET)
    second = read_voter(_request(), SECRET)

    assert first.cookie_is_new and second.cookie_is_new
    assert first.cookie_id != second.cookie_id
    assert len(first.cookie_id) >= 16


def test_signed_cookie_is_read_back_as_the_same_voter():
    voter = read_voter(_request(), SECRET)
    response = Response()
    set_voter_cookie(response, voter, secure=False, secret=SECRET)
    value = response.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]

    again = read_voter(_request(cookie=value), SECRET)

    assert again.cookie_id == voter.cookie_id
    assert not again.cookie_is_new


def _flip_last(value: str) -> str:
    return value[:-1] + ("A" if value[-1] != "A" else "B")


@pytest.mark.parametrize(
    "cookie",
    [
        pytest.param(_flip_last(_signed("voter-1")), id="tampered-signature"),
        pytest.param(_signed("voter-1").replace("voter-1", "voter-2"), id="tampered-id"),
        pytest.param("voter-1", id="unsigned"),
        pytest.param(_signed("voter-1", "another-secret"), id="another-secret"),
        pytest.param(Signer(SECRET, salt="another-salt").sign("voter-1").decode(),
                     id="another-salt"),
        pytest.param("", id="empty"),
    ],
)
def test_invalid_cookie_counts_as_absent(cookie):
    voter = read_voter(_request(cookie=cookie), SECRET)

    assert voter.cookie_is_new
    assert voter.cookie_id not in ("voter-1", "voter-2")


def test_voter_address_is_the_grouped_client_address():
    voter = read_voter(_request(remote_addr="2001:db8:1:2::99"), SECRET)

    assert voter.address == client_address("2001:db8:1:2::1")


@pytest.mark.parametrize(
    ("secure", "expected", "absent"),
    [
        pytest.param(False, {"HttpOnly", "Path=/", "SameSite=Lax"},
                     {"Secure", "Partitioned", "SameSite=None"}, id="http"),
        pytest.param(True, {"HttpOnly", "Path=/", "Secure", "SameSite=None", "Partitioned"},
                     {"SameSite=Lax"}, id="https"),
    ],
)
def test_cookie_attributes_suit_plain_http_or_third_party_https(secure, expected, absent):
    voter = read_voter(_request(), SECRET)
    response = Response()

    set_voter_cookie(response, voter, secure=secure, secret=SECRET)

    [header] = response.headers.getlist("Set-Cookie")
    name_value, *attributes = (part.strip() for part in header.split(";"))
    assert name_value.startswith(f"{VOTER_COOKIE}=")
    assert Signer(SECRET, salt=VOTER_COOKIE_SALT).unsign(
        name_value.split("=", 1)[1]
    ).decode() == voter.cookie_id
    assert expected <= set(attributes)
    assert not absent & set(attributes)
    assert any(a.startswith("Max-Age=") and int(a.split("=")[1]) > 0 for a in attributes)


# -- within a request -------------------------------------------------------------------


@pytest.fixture
def app():
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    identity.init_app(app)

    @app.get("/identify")
    def identify():
        first, second = current_voter(), current_voter()
        return jsonify(same=first is second, new=first.cookie_is_new, address=first.address)

    @app.get("/quiet")
    def quiet():
        return "no voter asked for"

    return app


def test_new_voter_gets_a_cookie_once_per_request(app):
    browser = app.test_client()

    response = browser.get("/identify")

    assert response.get_json()["same"] is True
    assert response.get_json()["new"] is True
    assert len([h for h in response.headers.getlist("Set-Cookie")
                if h.startswith(f"{VOTER_COOKIE}=")]) == 1


def test_returning_voter_gets_no_new_cookie(app):
    browser = app.test_client()
    browser.get("/identify")

    response = browser.get("/identify")

    assert response.get_json()["new"] is False
    assert "Set-Cookie" not in response.headers


def test_requests_that_do_not_identify_a_voter_set_no_cookie(app):
    response = app.test_client().get("/quiet")

    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_https_request_gets_the_third_party_cookie(app):
    response = app.test_client().get("/identify", base_url="https://localhost")

    header = response.headers["Set-Cookie"]
    assert "Secure" in header and "SameSite=None" in header and "Partitioned" in header
