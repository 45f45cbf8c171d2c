"""The console's webhook pages end to end: under gunicorn (gevent workers), an owner signs
in, creates a webhook to a receiver on loopback (WEBHOOKS_ALLOW_PRIVATE=1), reads its
secret once, presses "Send test", and the receiver gets a `webhook.test` message whose
Standard Webhooks signature verifies with that secret; the deliveries log shows it.

Deliveries are sent by the real worker command (dispatcher + RQ) or, without REDIS_URL,
by the web process itself: tests/e2e/test_webhooks.py's receiver and worker fixtures."""

# Fixtures imported from tests/e2e/test_webhooks.py are used as parameters of the same name.
# ruff: noqa: F401, F811

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.console.console_client import csrf_of
from tests.e2e.test_webhooks import receiver, verified, webhooks_worker

pytestmark = pytest.mark.gunicorn

DELIVERY_TIMEOUT_SECONDS = 30
SECRET_ON_PAGE = re.compile(r'id="webhook-secret"[^>]*><code>(whsec_[^<]+)</code>')


def signed_in(client: httpx.Client, key: str) -> None:
    page = client.get("/console/sign-in")
    answer = client.post("/console/sign-in", data={"api_key": key,
                                                   "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 302, answer.text


@pytest.mark.parametrize("mode", ["rq-worker", "in-process"])
def test_send_test_from_the_console_reaches_the_endpoint_signed(
        gunicorn_server, e2e_database_url, clean_redis, owner_key, receiver, request, mode):
    if mode == "rq-worker":
        server = gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis,
                                 WEBHOOKS_ALLOW_PRIVATE="1")
        request.getfixturevalue("webhooks_worker")
    else:  # no REDIS_URL: one gevent worker sends deliveries itself
        server = gunicorn_server(database_url=e2e_database_url, redis_url="", workers=1,
                                 WEBHOOKS_ALLOW_PRIVATE="1")
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        signed_in(client, owner_key)
        form = client.get("/console/webhooks/new")
        created = client.post("/console/webhooks/new", data={
            "csrf_token": csrf_of(form.text), "url": receiver.url,
            "events": ["vote.created", "poll.closed"], "poll_id": ""})
        assert created.status_code == 201, created.text
        secret = SECRET_ON_PAGE.search(created.text).group(1)
        hook_page = created.headers["Location"]
        assert secret not in client.get(hook_page).text  # shown once

        started = time.perf_counter()
        pressed = client.post(f"{hook_page}/test", data={"csrf_token": csrf_of(created.text)})
        took = time.perf_counter() - started
        assert pressed.status_code == 302 and pressed.headers["Location"] == hook_page
        # The receiver takes 2 s to answer; the button does not wait for it.
        assert took < 1.0, took

        deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        [(headers, body)] = receiver.requests
        message = verified(secret, headers, body)
        assert message["type"] == "webhook.test"
        assert message["data"]["webhook_id"] == hook_page.rsplit("/", 1)[1]

        while "Succeeded" not in (log := client.get(hook_page).text):
            assert time.monotonic() < deadline, log
            time.sleep(0.1)
        assert "webhook.test" in log and "HTTP <span class=\"pb-mono\">204</span>" in log
        assert headers["webhook-id"] in log
