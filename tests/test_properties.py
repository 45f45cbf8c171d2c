"""Generated hostile input against every public and owner endpoint (Hypothesis).

Each endpoint of the app's URL map gets bodies, query values, headers and path ids drawn
from what attackers send: unicode digits, lone surrogates, NULs, huge numbers, deep
nesting, other charsets and content types. Whatever arrives:
- nothing answers 5xx;
- under /api/, every 4xx is problem+json with a `code`;
- the poll's ballots are exactly the votes answered as accepted (a refused vote counts
  nothing; a withdrawn one leaves).

Runs on SQLite and on PostgreSQL (both with the real Redis). `POLLBOX_PROPERTY_EXAMPLES`
sets the cases per endpoint and database (default 40).
"""

from __future__ import annotations

import json
import os
import string
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import create_app
from service.infra.db import db
from service.infra.models import Ballot
from tests.console.console_client import ConsoleClient

EXAMPLES = int(os.environ.get("POLLBOX_PROPERTY_EXAMPLES", "40"))
ACCEPTED_STATUSES = {201}
# Percent-encoded bytes a query or form may carry: invalid UTF-8, an encoded surrogate,
# NUL, superscript and Arabic-Indic digits, CR LF.
RAW_ESCAPES = ["%FF", "%ED%A0%80", "%00", "%C2%B2", "%D9%A3", "%0D%0A", "%C0%AF", "%25"]
TRICKY_STRINGS = [
    "", " ", "\x00", "a\x00b", "\ud800", "\udfff", "²", "٣", "\uff11\uff12", "-1", "0", "1e309",
    "NaN", "Infinity", "9" * 5000, "4611686018427387904", "-9223372036854775809",
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-02-30T00:00:00Z",
    "../../etc/passwd", "/console/\r\nX: 1", "//evil.example", "javascript:alert(1)",
    "<script>alert(1)</script>", "x" * 10_000, "\u202e", "\ufeff", "%s%n", "'; DROP TABLE",
]
FIELD_NAMES = [
    "choices", "other", "comment", "context", "voter", "id", "sig", "question", "options",
    "kind", "max_choices", "allow_other", "allow_comment", "duplicate_check",
    "vote_window_seconds", "results", "results_min_votes", "opens_at", "closes_at",
    "allowed_origins", "locale", "status", "label", "url", "events", "poll_id", "hidden",
    "position", "retention_days", "choice", "csrf_token", "key", "next",
]
QUERY_NAMES = [
    "page", "page_size", "context", "from", "to", "data", "format", "interval", "bom",
    "lang", "theme", "voted", "view", "error", "maxwidth", "maxheight", "url", "parent",
    "accent", "bg", "fg", "hidden", "next", "poll_id",
]
CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-16", "application/json; charset=latin-1",
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/xml", None,
]
# Endpoints not driven here: a live stream never ends, and the docs' static assets are
# files.
SKIPPED_ENDPOINTS = {"static", "ops.docs_asset", "widgets.assets", "console.static"}


def _no_line_breaks(text: str) -> bool:
    return "\r" not in text and "\n" not in text


hostile_text = st.one_of(
    st.sampled_from(TRICKY_STRINGS),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)
hostile_scalar = st.one_of(
    hostile_text, st.integers(min_value=-(2**70), max_value=2**70), st.booleans(),
    st.none(), st.floats(allow_nan=False, allow_infinity=False),
)
hostile_json = st.recursive(
    hostile_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), hostile_text), inner,
                        max_size=5),
    ),
    max_leaves=12,
)


def _encode_json(value) -> bytes:
    # ensure_ascii writes a lone surrogate as a \\ud800 escape, as an attacker would.
    return json.dumps(value, ensure_ascii=True).encode()


raw_bodies = st.one_of(
    st.sampled_from([
        b"[" * 10_000, b'{"choices": [' + b"9" * 5000 + b"]}", b'{"comment": "\\ud800"}',
        b"\xff\xfe{\x00}\x00", b"\xef\xbb\xbf{}", b'{"a":' * 2000, b"", b"null", b"[]",
        b'{"choices": [1e400]}', b'{"choices": NaN}',
    ]),
    st.binary(max_size=200),
    hostile_json.map(_encode_json),
)
hostile_query = st.lists(
    st.tuples(st.sampled_from(QUERY_NAMES),
              st.one_of(hostile_text.map(lambda text: quote(text, errors="surrogatepass")),
                        st.sampled_from(RAW_ESCAPES))),
    max_size=4,
).map(lambda pairs: "&".join(f"{name}={value}" for name, value in pairs))
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60).filter(
    _no_line_breaks)
hostile_headers = st.fixed_dictionaries({}, optional={
    "Idempotency-Key": header_text,
    "Origin": st.one_of(header_text, st.just("https://evil.example")),
    "X-Forwarded-For": st.one_of(header_text, st.just("::ffff:127.0.0.1, 10.0.0.1")),
    "Accept-Language": header_text,
    "If-None-Match": header_text,
    "Cookie": header_text.map(lambda text: f"pollbox_voter={text}"),
    "Last-Event-ID": header_text,
    "Authorization": st.one_of(header_text, st.just("Bearer pbk_")),
})


@st.composite
def requests(draw, endpoint: tuple[str, str, tuple[str, ...]], real: dict[str, str]):
    """One request to the endpoint: path ids (mostly real), query, headers, body."""
    rule, method, arguments = endpoint
    path = rule
    destructive = method == "DELETE" or rule.endswith(("/delete", "/sign-out"))
    for argument in arguments:
        # A destructive request gets made-up ids only: the poll under test must stay.
        real_id = real.get(argument) if not destructive else None
        value = draw(st.one_of(st.just(real_id), hostile_text)) if real_id else draw(
            hostile_text)
        path = path.replace(f"<{argument}>", quote(value or "x", safe="", errors="surrogatepass"))
    headers = dict(draw(hostile_headers))
    if draw(st.booleans()):  # most owner requests should get past the key check
        headers["Authorization"] = f"Bearer {real['owner_key']}"
    body, content_type = b"", None
    if method in ("POST", "PUT", "PATCH"):
        content_type = draw(st.sampled_from(CONTENT_TYPES))
        if content_type == "application/x-www-form-urlencoded":
            form = draw(hostile_query)
            if real.get("csrf_token") and not destructive and draw(st.booleans()):
                form += f"&csrf_token={quote(real['csrf_token'])}"  # past the form check
            body = form.encode()
        else:
            body = draw(raw_bodies)
    query = draw(hostile_query)
    return method, path + (f"?{query}" if query else ""), headers, body, content_type


def _endpoints(app) -> list[tuple[str, str, tuple[str, ...]]]:
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SKIPPED_ENDPOINTS or rule.endpoint.endswith(".stream"):
            continue
        template = rule.rule
        arguments = tuple(sorted(rule.arguments))
        for argument in arguments:
            template = template.replace(f"<id:{argument}>", f"<{argument}>").replace(
                f"<path:{argument}>", f"<{argument}>")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((template, method, arguments))
    return sorted(found)


ENDPOINTS = _endpoints(create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://",
                                   "SECRET_KEY": "endpoints", "REDIS_URL": None}))


@pytest.fixture
def hostile_app(app, make_app):
    """The stack's app, believing one proxy (so X-Forwarded-For is read) and raising
    nothing into the test: what a client sees is what gunicorn would send."""
    return make_app(TRUSTED_PROXY_COUNT=1, PROPAGATE_EXCEPTIONS=False,
                    RATELIMIT_VOTES=app.config["RATELIMIT_VOTES"])


@pytest.fixture
def real_ids(hostile_app, make_poll, owner_key) -> dict[str, str]:
    client = hostile_app.test_client()
    auth = {"Authorization": f"Bearer {owner_key}"}
    poll = make_poll(allow_comment=True, allow_other=True, duplicate_check="none")
    voted = client.post(f"/api/v1/polls/{poll['id']}/votes",
                        json={"choices": [poll["options"][0]["id"]], "comment": "hi"}).get_json()
    webhook = client.post("/api/v1/webhooks", headers=auth, json={
        "url": "https://hooks.example.org/pollbox", "events": ["vote.created"]}).get_json()
    return {"poll_id": poll["id"], "receipt": voted["vote"]["receipt"],
            "vote_id": voted["vote"]["id"], "webhook_id": webhook.get("id", "nohook"),
            "owner_key": owner_key, "filename": "swagger-ui.css"}


def _ballots(app, poll_id: str) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count()).select_from(Ballot).where(Ballot.poll_id == poll_id))


def _change_in_ballots(method: str, path: str, response) -> int:
    """What the answer says happened to the poll's ballots."""
    if method == "POST" and path.split("?")[0].endswith("/votes") and \
            response.status_code in ACCEPTED_STATUSES:
        return 1
    if method == "POST" and "/widget" in path and "voted=" in response.headers.get(
            "Location", ""):
        return 1
    if method == "DELETE" and "/receipts/" in path and response.status_code == 204:
        return -1
    return 0


def _check_answer(method: str, path: str, response) -> None:
    # oEmbed 1.0 itself says 501 for a format the provider does not serve.
    allowed = response.status_code == 501 and path.startswith("/oembed")
    assert response.status_code < 500 or allowed, (
        method, path, response.get_data(as_text=True)[:500])
    if path.startswith("/api/") and response.status_code >= 400:
        assert response.mimetype == "application/problem+json", (method, path)
        assert isinstance(response.get_json()["code"], str)


@pytest.mark.parametrize("stack", ["sqlite-redis", "postgresql-redis"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e[1]} {e[0]}"
                         if isinstance(e, tuple) else str(e))
def test_hostile_requests_never_answer_5xx_nor_count_a_refused_vote(
        hostile_app, real_ids, endpoint, stack):
    client = hostile_app.test_client()
    if endpoint[0].startswith("/console"):
        real_ids = {**real_ids, "csrf_token": ConsoleClient(client, real_ids["owner_key"]).token}
    poll_id = real_ids["poll_id"]
    expected = [_ballots(hostile_app, poll_id)]

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(request=requests(endpoint, real_ids))
    def check(request):
        method, path, headers, body, content_type = request
        response = client.open(path, method=method, headers=headers, data=body,
                               content_type=content_type)
        try:
            _check_answer(method, path, response)
            expected[0] += _change_in_ballots(method, path, response)
        finally:
            response.close()
        assert _ballots(hostile_app, poll_id) == expected[0], (method, path)

    check()


def test_every_endpoint_is_driven():
    """The list above is the app's own URL map: a new endpoint is driven without edits."""
    rules = {rule for rule, _method, _arguments in ENDPOINTS}
    assert "/api/v1/polls/<poll_id>/votes" in rules
    assert "/polls/<poll_id>/widget" in rules
    assert any(rule.startswith("/console") for rule in rules)
    assert len(ENDPOINTS) >= 50
    assert all(set(string.whitespace).isdisjoint(rule) for rule in rules)
