"""Console sign-in: API key check, session cookie, CSRF, rate limit, security headers."""

from __future__ import annotations

import re

import pytest
from flask import request
from werkzeug.http import parse_set_header

from service import owners
from service.infra.db import db
from tests.console.console_client import csrf_of, sign_in

HTTPS = "https://console.example"
PAGES = ("/console/sign-in", "/console/polls", "/console/polls/new", "/console/nope")


def set_cookie(response) -> str:
    [header] = response.headers.getlist("Set-Cookie")
    return header


def cookie_attributes(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def test_a_visitor_is_sent_to_sign_in_with_the_page_to_come_back_to(client):
    response = client.get("/console/polls?page=2")

    assert response.status_code == 302
    assert response.headers["Location"] == "/console/sign-in?next=/console/polls?page%3D2"


def test_signing_in_with_the_api_key_opens_the_console(client, owner_key):
    response = sign_in(client, owner_key, next_url="/console/polls/new")

    assert response.status_code == 302
    assert response.headers["Location"] == "/console/polls/new"
    page = client.get("/console/polls").get_data(as_text=True)
    assert "Signed in as PsyWeb." in page
    assert "PsyWeb" in page and "Sign out" in page


@pytest.mark.parametrize("key, message", [
    ("pbk_unknown", "This API key is not valid (unknown or revoked)."),
    ("", "Enter your API key."),
])
def test_a_wrong_or_missing_key_is_refused_with_a_message(client, key, message):
    response = sign_in(client, key)

    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert f'<p class="pb-field-error" id="api_key-error">{message}</p>' in page
    assert 'aria-invalid="true"' in page
    assert client.get("/console/polls").status_code == 302


def test_a_revoked_key_signs_the_session_out(app, client, owner_key):
    sign_in(client, owner_key)
    assert client.get("/console/polls").status_code == 200
    with app.app_context():
        owners.rotate_key(session=db.session, name="PsyWeb")

    response = client.get("/console/polls")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in")
    assert "Your session has ended" in client.get("/console/sign-in").get_data(as_text=True)


def test_an_old_session_must_sign_in_again(client, owner_key, clock):
    sign_in(client, owner_key)
    clock.advance(hours=13)

    assert client.get("/console/polls").status_code == 302


@pytest.mark.parametrize("target", [
    "https://evil.example/console/polls", "//evil.example/console/", "/api/v1/polls",
    "/console\\..\\evil", "javascript:alert(1)", "/console/\r\nX: 1",
    "/console//evil.example", "/console/../api/v1/polls", "/console/%2e%2e/api/v1/polls",
])
def test_sign_in_never_redirects_outside_the_console(client, owner_key, target):
    response = sign_in(client, owner_key, next_url=target)

    assert response.headers["Location"] == "/console/polls"


# The query as the browser sends it: `next` is percent-decoded once by the server.
@pytest.mark.parametrize("query", [
    "next=/console/%0D%0AX:1",  # header injection: CR LF
    "next=/console/%0AX:1",
    "next=/console/%09polls",  # any other control character
    "next=/console/polls%7F",
    "next=/console/%E2%80%A8polls",  # a line separator
    "next=//evil.example/console/",
    "next=/console//evil.example",
    "next=/console/%5C%5Cevil.example",  # backslashes
    "next=/console/../api/v1/polls",
    "next=/console/%252e%252e/api/v1/polls",  # dot segments a browser resolves
    "next=/consolex/polls",
    "next=/console",
])
def test_a_signed_in_owner_is_sent_home_unless_next_is_a_plain_console_path(console, query):
    response = console.get(f"/console/sign-in?{query}")

    assert response.status_code == 302
    assert response.headers["Location"] == "/console/polls"


@pytest.mark.parametrize("query, location", [
    ("next=/console/polls/new", "/console/polls/new"),
    ("next=/console/polls?page%3D2", "/console/polls?page=2"),
    ("next=/console/webhooks/", "/console/webhooks/"),
])
def test_a_signed_in_owner_is_sent_on_to_a_console_path(console, query, location):
    response = console.get(f"/console/sign-in?{query}")

    assert response.status_code == 302
    assert response.headers["Location"] == location


def test_signing_in_starts_a_fresh_session(client, owner_key):
    client.get("/console/sign-in")
    with client.session_transaction("/console/") as session:
        planted = session["csrf_token"]
        session["extra"] = "planted"

    sign_in(client, owner_key)

    with client.session_transaction("/console/") as session:
        assert session["csrf_token"] != planted
        assert "extra" not in session
        assert set(session) == {"sid", "csrf_token", "_flashes"}


def test_sign_out_ends_the_session(console):
    response = console.post("/console/sign-out")

    assert response.status_code == 302
    assert console.get("/console/polls").status_code == 302


def test_the_http_cookie_is_httponly_and_lax_without_secure(client):
    header = set_cookie(client.get("/console/sign-in"))

    assert header.startswith("pollbox_console=")
    assert cookie_attributes(header) == {"httponly", "path", "samesite"}
    assert "Path=/" in header and "SameSite=Lax" in header


def test_the_https_cookie_is_a_secure_host_cookie(client, owner_key):
    header = set_cookie(client.get("/console/sign-in", base_url=HTTPS))

    assert header.startswith("__Host-pollbox_console=")
    assert cookie_attributes(header) == {"secure", "httponly", "path", "samesite"}
    assert "Path=/;" in header and "SameSite=Lax" in header
    response = sign_in(client, owner_key, base_url=HTTPS)
    assert response.status_code == 302
    assert client.get("/console/polls", base_url=HTTPS).status_code == 200


@pytest.mark.parametrize("path", ["/embed.js", "/api/v1/polls", "/healthz"])
def test_only_the_console_opens_the_session(app, path):
    with app.test_request_context(path, headers={"Cookie": "pollbox_console=anything"}):
        opened = app.session_interface.open_session(app, request)
        assert app.session_interface.is_null_session(opened)
    with app.test_request_context("/console/polls"):
        opened = app.session_interface.open_session(app, request)
        assert not app.session_interface.is_null_session(opened)


def test_an_https_session_is_not_read_over_plain_http(client, owner_key):
    sign_in(client, owner_key, base_url=HTTPS)

    assert client.get("/console/polls", base_url="http://console.example").status_code == 302


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_a_form_without_the_session_token_is_refused(client, owner_key, token):
    page = client.get("/console/sign-in").get_data(as_text=True)
    assert csrf_of(page)
    form = {"api_key": owner_key}
    if token is not None:
        form["csrf_token"] = token

    response = client.post("/console/sign-in", data=form)

    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "This form has expired or did not come from the console." in response.get_data(
        as_text=True)
    assert client.get("/console/polls").status_code == 302


def test_sign_out_without_the_token_is_refused(console):
    assert console.post("/console/sign-out", token=False).status_code == 400
    assert console.get("/console/polls").status_code == 200


def test_the_token_may_come_in_a_header(console):
    response = console.client.post("/console/sign-out",
                                   headers={"X-CSRF-Token": console.token})

    assert response.status_code == 302


def test_sign_in_is_rate_limited_per_address_with_a_friendly_page(app, client, owner_key):
    app.config["CONSOLE_SIGNIN_LIMIT"] = "3 per minute"
    for _ in range(3):
        assert sign_in(client, "pbk_guess").status_code == 401

    response = sign_in(client, owner_key)

    assert response.status_code == 429
    assert response.mimetype == "text/html"
    assert int(response.headers["Retry-After"]) >= 1
    assert "Too many sign-in attempts" in response.get_data(as_text=True)
    other = app.test_client()
    assert sign_in(other, owner_key).status_code == 429  # same address
    elsewhere = app.test_client()
    page = elsewhere.get("/console/sign-in").get_data(as_text=True)
    answer = elsewhere.post("/console/sign-in",
                            data={"api_key": owner_key, "csrf_token": csrf_of(page)},
                            environ_overrides={"REMOTE_ADDR": "198.51.100.9"})
    assert answer.status_code == 302


def test_reading_the_sign_in_page_is_not_rate_limited(app, client):
    app.config["CONSOLE_SIGNIN_LIMIT"] = "1 per minute"

    assert [client.get("/console/sign-in").status_code for _ in range(3)] == [200] * 3


@pytest.mark.parametrize("path", PAGES)
def test_every_console_page_sends_the_security_headers(console, path):
    response = console.get(path)

    policy = {
        part.strip().split(" ", 1)[0]: part.strip().split(" ", 1)[1]
        for part in response.headers["Content-Security-Policy"].split(";")
    }
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["frame-src"] == "'self'"
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "no-store" in parse_set_header(response.headers["Cache-Control"])
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_outside_the_console_keep_their_own_headers(client):
    response = client.get("/healthz")

    assert "X-Frame-Options" not in response.headers


@pytest.mark.parametrize("path", PAGES)
def test_console_pages_have_no_inline_script_or_style(console, path):
    page = console.get(path).get_data(as_text=True)

    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert " style=" not in page and "<style" not in page
    assert re.search(r"\bon[a-z]+=", page) is None


def test_an_unknown_console_page_is_an_html_404(console):
    response = console.get("/console/polls/unknown-poll")

    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Not found" in response.get_data(as_text=True)


@pytest.mark.parametrize("path, status", [("/console/nope", 404), ("/console/sign-out", 405)])
def test_unknown_console_urls_and_methods_get_html_pages(client, path, status):
    response = client.get(path)

    assert response.status_code == status
    assert response.mimetype == "text/html"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_unknown_api_urls_keep_their_problem_details(client):
    response = client.get("/api/v1/nope")

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_a_failing_page_is_an_html_500_without_details(app, console, monkeypatch, caplog):
    from service.console import polls as console_polls

    def broken(**_kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(console_polls.polls, "list_polls", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False

    response = console.get("/console/polls")

    assert response.status_code == 500
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "The console could not complete the request." in page
    assert "secret internals" not in page
    assert "unhandled console error" in caplog.text


def test_a_database_outage_is_an_html_503(app, console, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from service.console import polls as console_polls

    def unreachable(**_kwargs):
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))

    monkeypatch.setattr(console_polls.polls, "list_polls", unreachable)

    response = console.get("/console/polls")

    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert response.headers["Retry-After"] == "5"
    assert "cannot reach its database" in response.get_data(as_text=True)
