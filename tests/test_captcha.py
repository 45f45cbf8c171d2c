"""The optional third-party captcha (CAPTCHA_PROVIDER): checked server-side with the
provider's siteverify call, here a fake provider on loopback (no internet). A vote is
never let through unchecked, and the proof of work stays accepted when the provider is
away."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from service.infra.config import ConfigError, from_environ
from tests.test_challenge import solved
from tests.test_integrity import report
from tests.test_votes import assert_problem

SITE_KEY, SECRET_KEY = "site-key-of-the-health-site", "secret-key-of-the-health-site"
VOTER_IP = "203.0.113.50"
TIMEOUT_SECONDS = 1


class FakeProvider:
    """A siteverify endpoint as Turnstile and hCaptcha answer it: each token it issued
    passes once, for our secret and site key."""

    def __init__(self) -> None:
        self.issued: set[str] = set()
        self.asked: list[dict[str, str]] = []
        self.delay = 0.0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                provider.asked.append(form)
                time.sleep(provider.delay)
                passed = (form.get("secret") == SECRET_KEY
                          and form.get("sitekey") == SITE_KEY
                          and form.get("response") in provider.issued)
                provider.issued.discard(form.get("response"))
                body = (b'{"success": true}' if passed
                        else b'{"success": false, "error-codes": ["invalid-input-response"]}')
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/siteverify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def issue(self, token: str) -> str:
        self.issued.add(token)
        return token

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider():
    found = FakeProvider()
    yield found
    found.close()


@pytest.fixture
def captcha_app(make_app, provider):
    return make_app(CAPTCHA_PROVIDER="turnstile", CAPTCHA_SITE_KEY=SITE_KEY,
                    CAPTCHA_SECRET_KEY=SECRET_KEY, CAPTCHA_VERIFY_URL=provider.url,
                    CAPTCHA_TIMEOUT_SECONDS=TIMEOUT_SECONDS)


def cast(app, poll: dict, **fields):
    return app.test_client().post(f"/api/v1/polls/{poll['id']}/votes",
                                  json={"choices": [poll["options"][0]["id"]], **fields},
                                  environ_overrides={"REMOTE_ADDR": VOTER_IP})


def total(app, poll: dict) -> int:
    return app.test_client().get(f"/api/v1/polls/{poll['id']}/tallies").get_json()[
        "total_votes"]


def test_a_captcha_the_provider_passes_stands_for_the_proof_of_work(captcha_app, provider,
                                                                    make_poll):
    poll = make_poll(challenge="pow")

    response = cast(captcha_app, poll, captcha=provider.issue("token-1"))

    assert response.status_code == 201, response.get_json()
    assert total(captcha_app, poll) == 1
    [asked] = provider.asked
    assert asked == {"secret": SECRET_KEY, "sitekey": SITE_KEY, "response": "token-1",
                     "remoteip": VOTER_IP}


@pytest.mark.parametrize("token", ["never-issued", "reused"])
def test_a_captcha_the_provider_refuses_counts_nothing_and_shows_as_failed(
    captcha_app, provider, make_poll, auth, client, token
):
    poll = make_poll(challenge="pow", duplicate_check="none")
    if token == "reused":
        assert cast(captcha_app, poll, captcha=provider.issue(token)).status_code == 201

    body = assert_problem(cast(captcha_app, poll, captcha=token), 403, "challenge_required")

    assert "not accepted by its provider" in body["detail"]
    assert total(captcha_app, poll) == (1 if token == "reused" else 0)
    assert report(client, poll, auth)["totals"]["rejected"]["challenge_failed"] == 1


@pytest.mark.parametrize("outage", ["down", "slow"])
def test_while_the_provider_cannot_be_reached_votes_are_refused_and_pow_still_counts(
    captcha_app, provider, make_poll, outage
):
    poll = make_poll(challenge="pow", duplicate_check="none")
    if outage == "down":
        provider.close()
    else:
        provider.delay = TIMEOUT_SECONDS + 1
    started = time.monotonic()

    body = assert_problem(cast(captcha_app, poll, captcha=provider.issue("token-2")), 403,
                          "challenge_required")

    assert time.monotonic() - started < TIMEOUT_SECONDS + 1  # the timeout holds
    assert "could not be reached" in body["detail"] and "altcha" in body["detail"]
    assert total(captcha_app, poll) == 0
    with_work = cast(captcha_app, poll, altcha=solved(captcha_app.test_client(), poll))
    assert with_work.status_code == 201, with_work.get_json()


def test_without_a_provider_a_captcha_token_is_no_proof(app, make_poll, vote, provider):
    poll = make_poll(challenge="pow")

    assert_problem(vote(poll, captcha=provider.issue("token-3")), 403, "challenge_required")

    assert provider.asked == []


def test_a_poll_without_a_challenge_never_asks_the_provider(captcha_app, provider, make_poll):
    poll = make_poll()

    assert cast(captcha_app, poll, captcha="anything").status_code == 201
    assert provider.asked == []


@pytest.mark.parametrize(("environ", "message"), [
    ({"CAPTCHA_PROVIDER": "turnstile"}, "needs CAPTCHA_SITE_KEY and CAPTCHA_SECRET_KEY"),
    ({"CAPTCHA_PROVIDER": "recaptcha"}, "CAPTCHA_PROVIDER must be one of"),
    ({"CAPTCHA_PROVIDER": "hcaptcha", "CAPTCHA_SITE_KEY": "s", "CAPTCHA_SECRET_KEY": "k",
      "CAPTCHA_TIMEOUT_SECONDS": "0"}, "CAPTCHA_TIMEOUT_SECONDS must be at least 1"),
])
def test_a_captcha_setting_that_cannot_work_stops_the_start(environ, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        from_environ(environ, str(tmp_path))
