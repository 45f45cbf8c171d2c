"""The console's Keys page (admin keys), and the console a narrower key signs in to: a
`read` key sees results, exports, integrity and comments, and no button that would fail."""

# Fixtures imported from tests/test_webhooks.py are used as parameters of the same name.
# ruff: noqa: F401, F811

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from tests.console.console_client import ConsoleClient
from tests.test_webhooks import hooks_app, receiver

KEY_ON_PAGE = re.compile(r'id="new-key"[^>]*><code>(pbk_[^<]+)</code>')
CRAWL_MAX_PAGES = 80


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_key(console, name: str, scope: str):
    return console.post("/console/keys", {"name": name, "scope": scope})


def made_key(console, name: str, scope: str) -> str:
    response = make_key(console, name, scope)
    assert response.status_code == 201, response.get_data(as_text=True)
    return KEY_ON_PAGE.search(response.get_data(as_text=True)).group(1)


def test_the_keys_page_makes_a_key_shown_once(console, client):
    page = console.get("/console/keys").get_data(as_text=True)
    assert "default" in page and "admin" in page
    key = made_key(console, "analyst", "read")
    assert client.get("/api/v1/polls", headers=bearer(key)).status_code == 200
    listing = console.get("/console/keys").get_data(as_text=True)
    assert "analyst" in listing and key[:12] in listing
    assert key not in listing
    assert "Never" not in listing.split("analyst", 1)[0]  # the admin key signed in: used


@pytest.mark.parametrize("form, field, message", [
    ({"name": "", "scope": "read"}, "name", "Give the key a name"),
    ({"name": "analyst", "scope": "owner"}, "scope", "Choose a scope."),
    ({"name": "x" * 101, "scope": "read"}, "name", "1 to 100 characters"),
])
def test_a_bad_key_form_names_the_field(console, form, field, message):
    response = console.post("/console/keys", form)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'id="{field}-error"' in page and message in page


def test_revoking_a_key_stops_it_at_once_but_never_the_last_admin_key(console, client, auth):
    key = made_key(console, "analyst", "write")
    ids = [k["id"] for k in client.get("/api/v1/keys", headers=auth).get_json()]
    revoked = console.post(f"/console/keys/{ids[1]}/revoke")
    assert revoked.status_code == 302
    assert client.get("/api/v1/polls", headers=bearer(key)).status_code == 401
    refused = console.post(f"/console/keys/{ids[0]}/revoke", follow_redirects=True)
    assert "last admin key" in refused.get_data(as_text=True)
    assert client.get("/api/v1/polls", headers=auth).status_code == 200
    assert console.post("/console/keys/999999/revoke").status_code == 404


def test_revoking_the_key_one_signed_in_with_signs_out(console, client, auth):
    made_key(console, "second admin", "admin")
    own_id = client.get("/api/v1/keys", headers=auth).get_json()[0]["id"]
    assert console.post(f"/console/keys/{own_id}/revoke").status_code == 302
    assert console.get("/console/polls").headers["Location"].startswith("/console/sign-in")


def test_the_keys_page_is_for_admin_keys_only(app, console):
    for scope in ("write", "read"):
        narrower = ConsoleClient(app.test_client(), made_key(console, scope, scope))
        assert narrower.get("/console/keys").status_code == 403
        assert make_key(narrower, "x", "admin").status_code == 403
        page = narrower.get("/console/polls").get_data(as_text=True)
        assert 'href="/console/keys"' not in page
    assert 'href="/console/keys"' in console.get("/console/polls").get_data(as_text=True)


# The read-only console ----------------------------------------------------------------


class Page(HTMLParser):
    """The console links and the POST forms of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: set[str] = set()
        self.post_actions: list[str] = []

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "a" and found.get("href"):
            self.links.add(found["href"])
        if tag == "form" and (found.get("method") or "").lower() == "post":
            self.post_actions.append(found.get("action") or "")


def crawl(console, start: str) -> dict[str, tuple[int, Page]]:
    """Every console page reachable from `start` by links (same site, /console/ only)."""
    seen: dict[str, tuple[int, Page]] = {}
    queue = [start]
    while queue and len(seen) < CRAWL_MAX_PAGES:
        url = queue.pop(0)
        if url in seen:
            continue
        response = console.get(url)
        body = response.get_data()
        response.close()  # a streamed export holds its request's context until closed
        page = Page()
        if response.mimetype == "text/html":
            page.feed(body.decode())
        seen[url] = (response.status_code, page)
        for link in page.links:
            parts = urlsplit(urljoin(url, link))
            if not parts.netloc and parts.path.startswith("/console/"):
                queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return seen


@pytest.fixture
def owner_world(console, hooks_app, receiver, make_poll, vote, client, auth):
    """A poll with a commented vote, a baseline and a webhook, made by the admin."""
    poll = make_poll(allow_comment=True)
    vote(poll, comment="Helpful")
    counts = {str(option["id"]): 1 for option in poll["options"]}
    assert client.put(f"/api/v1/polls/{poll['id']}/baseline", headers=auth, json={
        "total_votes": len(counts), "options": counts, "source": "Before",
        "as_of": "2026-01-01T00:00:00Z"}).status_code == 200
    response = console.post("/console/webhooks/new", {
        "url": receiver.url, "events": ["vote.created"], "poll_id": poll["id"]})
    assert response.status_code == 201
    return poll, response.headers["Location"]


def test_a_read_key_sees_every_page_and_no_button_that_would_fail(app, console, owner_world):
    poll, webhook_url = owner_world
    reader = ConsoleClient(app.test_client(), made_key(console, "analyst", "read"))
    pages = crawl(reader, "/console/polls")
    for must in (f"/console/polls/{poll['id']}", f"/console/polls/{poll['id']}/feedback",
                 f"/console/polls/{poll['id']}/integrity", "/console/webhooks",
                 urlsplit(webhook_url).path):
        assert must in pages
    assert any("/export?" in url for url in pages)
    failed = {url: status for url, (status, _) in pages.items() if status >= 400}
    assert failed == {}
    forms = {action for _, page in pages.values() for action in page.post_actions}
    assert forms == {"/console/sign-out"}
    shown = reader.get(f"/console/polls/{poll['id']}").get_data(as_text=True)
    assert "read only" in shown and "Helpful" in reader.get(
        f"/console/polls/{poll['id']}/feedback").get_data(as_text=True)


def test_a_write_key_keeps_its_buttons(app, console, owner_world):
    poll, _ = owner_world
    writer = ConsoleClient(app.test_client(), made_key(console, "editor", "write"))
    pages = crawl(writer, "/console/polls")
    forms = {action for _, page in pages.values() for action in page.post_actions}
    assert f"/console/polls/{poll['id']}/status" in forms
    assert f"/console/polls/{poll['id']}/edit" in pages


def test_a_read_key_is_refused_every_change_and_every_form(app, console, owner_world):
    poll, webhook_url = owner_world
    reader = ConsoleClient(app.test_client(), made_key(console, "analyst", "read"))
    webhook = urlsplit(webhook_url).path
    changes = [f"/console/polls/{poll['id']}/status", f"/console/polls/{poll['id']}/edit",
               f"/console/polls/{poll['id']}/baseline",
               f"/console/polls/{poll['id']}/baseline/delete",
               f"/console/polls/{poll['id']}/delete", f"/console/polls/{poll['id']}/signing-secret",
               "/console/polls/new", "/console/presets/page-feedback", "/console/webhooks/new",
               f"{webhook}/test", f"{webhook}/delete"]
    for url in changes:
        response = reader.post(url, {"status": "closed"})
        assert response.status_code == 403, url
        assert "needs a 'write' key" in html.unescape(response.get_data(as_text=True))
    for form in ("/console/polls/new", f"/console/polls/{poll['id']}/edit",
                 f"/console/polls/{poll['id']}/baseline",
                 f"/console/polls/{poll['id']}/delete", "/console/presets/page-feedback",
                 "/console/webhooks/new", f"{webhook}/delete"):
        assert reader.get(form).status_code == 403, form
    assert console.get(f"/console/polls/{poll['id']}").status_code == 200
    assert 'id="close-poll"' in console.get(f"/console/polls/{poll['id']}").get_data(as_text=True)
