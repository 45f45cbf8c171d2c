"""A test client signed in to the owner console (for console tests)."""

from __future__ import annotations

import re

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a console page."""
    return CSRF_INPUT.search(html).group(1)


def sign_in(client, key: str, *, next_url: str | None = None, base_url: str | None = None):
    """Sign in through the form (GET for the token, then POST); return the POST's answer."""
    extra = {"base_url": base_url} if base_url else {}
    page = client.get("/console/sign-in", **extra).get_data(as_text=True)
    form = {"api_key": key, "csrf_token": csrf_of(page)}
    if next_url is not None:
        form["next"] = next_url
    return client.post("/console/sign-in", data=form, **extra)


class ConsoleClient:
    """A signed-in test client that posts forms with the session's CSRF token."""

    def __init__(self, client, key: str) -> None:
        self.client = client
        answer = sign_in(client, key)
        assert answer.status_code == 302, answer.get_data(as_text=True)
        with client.session_transaction("/console/") as session:
            self.token = session["csrf_token"]

    def get(self, url: str, **kwargs):
        return self.client.get(url, **kwargs)

    def post(self, url: str, data: dict | None = None, *, token: bool = True, **kwargs):
        form = {**(data or {}), **({"csrf_token": self.token} if token else {})}
        return self.client.post(url, data=form, **kwargs)
