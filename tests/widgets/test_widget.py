"""The widget page and its no-JS vote: form, results, tokens, languages, headers, cookie.

Every test runs on the three stacks of `tests/conftest.py`.
"""

from __future__ import annotations

from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from service.widgets import tokens
from tests.conftest import SECRET
from tests.widgets.helpers import Tags, csrf_token

HOME_IP, OTHER_IP, THIRD_IP = "203.0.113.7", "198.51.100.99", "192.0.2.44"


def widget(browser, poll: dict, ip: str = HOME_IP, **query):
    return browser.get(f"/polls/{poll['id']}/widget", query_string=query,
                       environ_overrides={"REMOTE_ADDR": ip})


def form_vote(browser, poll: dict, choices=None, *, ip: str = HOME_IP, token: str | None = None,
              query: dict | None = None, **fields):
    """Load the widget and post its form as a browser without JavaScript would."""
    if token is None:
        token = csrf_token(widget(browser, poll, ip, **(query or {})).get_data(as_text=True))
    if choices is None:
        choices = [poll["options"][0]["id"]]
    data = {"choice": [str(c) for c in choices], "csrf_token": token, **fields}
    return browser.post(f"/polls/{poll['id']}/widget", query_string=query or {}, data=data,
                        environ_overrides={"REMOTE_ADDR": ip})


def follow(browser, response, ip: str = HOME_IP):
    assert response.status_code == 303
    return browser.get(response.headers["Location"], environ_overrides={"REMOTE_ADDR": ip})


def tallies(client, poll):
    return client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()


def test_widget_offers_labelled_radio_buttons_for_a_single_choice_poll(client, make_poll):
    poll = make_poll()
    response = widget(client, poll)
    assert response.status_code == 200
    page = Tags(response.get_data(as_text=True))
    radios = [a for a in page.named("input") if a.get("type") == "radio"]
    assert [int(a["value"]) for a in radios] == [o["id"] for o in poll["options"]]
    labelled = {a["for"] for a in page.named("label")}
    assert {a["id"] for a in radios} <= labelled
    assert page.named("html")[0]["lang"] == "en"
    assert page.named("form")[0]["method"] == "post"


def test_widget_offers_checkboxes_other_and_comment_when_the_poll_allows(client, make_poll):
    poll = make_poll(kind="multiple", max_choices=2, allow_other=True, allow_comment=True)
    html = widget(client, poll).get_data(as_text=True)
    page = Tags(html)
    assert len([a for a in page.named("input") if a.get("type") == "checkbox"]) == 3
    assert page.named("textarea")[0]["name"] == "comment"
    assert any(a.get("name") == "other" for a in page.named("input"))
    assert "Choose up to 2 options." in html


def test_no_js_vote_redirects_to_the_widget_showing_the_results(client, make_poll, app):
    poll = make_poll()
    browser = app.test_client()
    response = form_vote(browser, poll, [poll["options"][1]["id"]], query={"theme": "dark"})
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == f"/polls/{poll['id']}/widget"
    assert parse_qs(location.query)["theme"] == ["dark"]
    page = follow(browser, response).get_data(as_text=True)
    assert "Thank you for voting." in page
    assert "Total votes: 1" in page
    assert 'id="pb-form"' not in page
    counted = tallies(client, poll)
    assert counted["total_votes"] == 1
    assert counted["options"][1]["votes"] == 1


def test_no_js_vote_carries_other_comment_and_context(client, make_poll, app):
    poll = make_poll(allow_other=True, allow_comment=True)
    browser = app.test_client()
    response = form_vote(browser, poll, [], other="Something else", comment="Nice",
                         query={"context": "/articles/a"})
    assert "voted" in parse_qs(urlsplit(response.headers["Location"]).query)
    counted = client.get(f"/api/v1/polls/{poll['id']}/tallies?context=/articles/a").get_json()
    assert counted["total_votes"] == 1
    assert counted["other_votes"] == 1


@pytest.mark.parametrize("token", [
    "", "garbage", "9999999999.deadbeef", "1.2.3", "\u00b2.x", "\u0663\u0663.x",
])
def test_forged_form_token_counts_nothing(client, make_poll, app, token):
    poll = make_poll()
    browser = app.test_client()
    response = form_vote(browser, poll, token=token)
    assert response.status_code == 303
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["expired_form"]
    assert "This form has expired" in follow(browser, response).get_data(as_text=True)
    assert tallies(client, poll)["total_votes"] == 0


def test_expired_form_token_counts_nothing(client, make_poll, app, clock):
    poll = make_poll()
    browser = app.test_client()
    token = csrf_token(widget(browser, poll).get_data(as_text=True))
    clock.advance(seconds=tokens.CSRF_TOKEN_SECONDS + 1)
    response = form_vote(browser, poll, token=token)
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["expired_form"]
    assert tallies(client, poll)["total_votes"] == 0


def test_form_token_of_another_poll_counts_nothing(client, make_poll, app):
    poll, other = make_poll(), make_poll(question="Another?")
    browser = app.test_client()
    token = csrf_token(widget(browser, other).get_data(as_text=True))
    response = form_vote(browser, poll, token=token)
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["expired_form"]
    assert tallies(client, poll)["total_votes"] == 0


def test_form_token_is_an_hmac_bound_to_poll_and_expiry(clock):
    now = clock()
    token = tokens.issue(secret=SECRET, purpose=tokens.CSRF_PURPOSE, poll_id="abc", now=now,
                         lifetime=60)
    assert tokens.is_valid(token, secret=SECRET, purpose=tokens.CSRF_PURPOSE, poll_id="abc",
                           now=now)
    expires, mac = token.split(".")
    later = f"{int(expires) + 3600}.{mac}"
    assert not tokens.is_valid(later, secret=SECRET, purpose=tokens.CSRF_PURPOSE,
                               poll_id="abc", now=now)
    assert not tokens.is_valid(token, secret=SECRET, purpose=tokens.VOTED_PURPOSE,
                               poll_id="abc", now=now)
    assert not tokens.is_valid(token, secret="other", purpose=tokens.CSRF_PURPOSE,
                               poll_id="abc", now=now)


def test_second_no_js_vote_shows_the_duplicate_error_in_the_visitors_language(make_poll, app):
    poll = make_poll()
    browser = app.test_client()
    form_vote(browser, poll)
    # The page was open in a second tab: its form still shows.
    token = csrf_token(widget(app.test_client(), poll, OTHER_IP).get_data(as_text=True))
    response = form_vote(browser, poll, token=token, query={"lang": "de"})
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["duplicate_vote"]
    page = follow(browser, response).get_data(as_text=True)
    assert "Sie haben in dieser Umfrage bereits abgestimmt." in page
    assert '<html lang="de"' in page


def test_empty_no_js_vote_asks_for_a_choice(client, make_poll, app):
    poll = make_poll()
    browser = app.test_client()
    response = form_vote(browser, poll, [], query={"lang": "fr"})
    assert "Veuillez choisir une option." in follow(browser, response).get_data(as_text=True)
    assert tallies(client, poll)["total_votes"] == 0


def test_too_many_choices_are_refused(client, make_poll, app):
    poll = make_poll(kind="multiple", max_choices=1)
    browser = app.test_client()
    response = form_vote(browser, poll, [o["id"] for o in poll["options"]])
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["too_many"]
    assert tallies(client, poll)["total_votes"] == 0


def test_vote_on_a_closed_poll_is_refused_with_a_message(client, make_poll, auth, app):
    poll = make_poll()
    browser = app.test_client()
    token = csrf_token(widget(browser, poll).get_data(as_text=True))
    client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"}, headers=auth)
    response = form_vote(browser, poll, token=token, query={"lang": "es"})
    assert "Esta encuesta no está abierta a votación." in follow(browser, response).get_data(
        as_text=True)


def test_without_any_cookie_the_address_still_deduplicates(client, make_poll, app):
    poll = make_poll(duplicate_check="cookie_and_ip")
    first, second = app.test_client(use_cookies=False), app.test_client(use_cookies=False)
    token = csrf_token(widget(first, poll).get_data(as_text=True))
    assert "voted" in form_vote(first, poll, token=token).headers["Location"]
    response = form_vote(second, poll, token=token)
    assert "error=duplicate_vote" in response.headers["Location"]
    assert tallies(client, poll)["total_votes"] == 1


def test_voted_redirect_shows_after_vote_results_without_a_cookie(client, make_poll, app):
    poll = make_poll(results="after_vote", duplicate_check="none")
    browser = app.test_client(use_cookies=False)
    response = form_vote(browser, poll)
    page = follow(browser, response).get_data(as_text=True)
    assert "Total votes: 1" in page
    # The signed "voted" mark is required: a made-up one shows the form again.
    forged = widget(browser, poll, voted="1795960790.00").get_data(as_text=True)
    assert 'id="pb-form"' in forged
    assert "Total votes: 1" not in forged


def _voted_mark(response) -> str:
    return parse_qs(urlsplit(response.headers["Location"]).query)["voted"][0]


@pytest.mark.parametrize("cookies", [True, False], ids=["cookie", "no-cookie"])
def test_the_voted_mark_shows_results_to_the_voter_only(client, make_poll, app, cookies):
    poll = make_poll(results="after_vote", duplicate_check="none")
    voter = app.test_client(use_cookies=cookies)
    mark = _voted_mark(form_vote(voter, poll))
    assert "Total votes: 1" in widget(voter, poll, voted=mark).get_data(as_text=True)

    # Someone else holding the 303 URL: another browser, or (for a mark given to a
    # browser without cookies) another address.
    stranger = app.test_client(use_cookies=cookies)
    ip = OTHER_IP if not cookies else HOME_IP
    page = widget(stranger, poll, ip=ip, voted=mark).get_data(as_text=True)
    assert 'id="pb-form"' in page and "Total votes: 1" not in page
    api = client.get(f"/api/v1/polls/{poll['id']}/tallies",
                     environ_overrides={"REMOTE_ADDR": ip})
    assert api.status_code == 403


def test_a_voted_mark_without_cookie_binds_the_address_not_a_later_cookie(make_poll, app):
    poll = make_poll(results="after_vote", duplicate_check="none")
    mark = _voted_mark(form_vote(app.test_client(use_cookies=False), poll))

    assert mark.startswith(tokens.BY_ADDRESS)
    forged = tokens.BY_COOKIE + mark[1:]
    page = widget(app.test_client(), poll, voted=forged).get_data(as_text=True)
    assert "Total votes: 1" not in page


@pytest.mark.parametrize("mark", ["\u00b2.x", "a\u00b2.x", "c1.2", "x", "a" + "9" * 40 + ".0"])
def test_a_malformed_voted_mark_shows_the_form(client, make_poll, mark):
    poll = make_poll(results="after_vote")

    response = widget(client, poll, voted=mark)

    assert response.status_code == 200
    assert 'id="pb-form"' in response.get_data(as_text=True)


@pytest.mark.parametrize(("count", "expected"), [
    (1, ["1 vote", "Total votes: 1"]),
    (2, ["2 votes", "Total votes: 2"]),
])
def test_totals_count_voters_with_plurals(client, make_poll, app, count, expected):
    poll = make_poll(kind="multiple", max_choices=3, duplicate_check="none")
    for _ in range(count):
        form_vote(app.test_client(), poll, [o["id"] for o in poll["options"]])
    page = widget(client, poll, view="results").get_data(as_text=True)
    for text in expected:
        assert text in page
    assert f"Total votes: {count * 3}" not in page  # voters, not option picks


@pytest.mark.parametrize(("lang", "expected"), [
    ("fr", "0 vote"), ("de", "0 Stimmen"), ("es", "0 votos"), ("en", "0 votes"),
])
def test_results_are_worded_in_the_chosen_language(client, make_poll, lang, expected):
    poll = make_poll()
    page = widget(client, poll, lang=lang, view="results").get_data(as_text=True)
    assert expected in page
    assert f'<html lang="{lang}"' in page


@pytest.mark.parametrize(("query", "locale", "expected"), [
    ({}, "de-CH", "de"),
    ({"lang": "fr"}, "de", "fr"),
    ({"lang": "xx"}, "es", "es"),
    ({}, "pt-BR", "en"),
])
def test_language_comes_from_lang_then_the_polls_locale(client, make_poll, query, locale,
                                                        expected):
    poll = make_poll(locale=locale)
    page = widget(client, poll, **query).get_data(as_text=True)
    assert f'<html lang="{expected}"' in page


def test_below_results_min_votes_the_widget_shows_the_total_only(client, make_poll, app):
    poll = make_poll(results_min_votes=5, duplicate_check="none")
    browser = app.test_client()
    page = follow(browser, form_vote(browser, poll)).get_data(as_text=True)
    assert "Total votes: 1" in page
    assert "1 vote" not in page.replace("Total votes: 1", "")
    assert "pb-bar-value" not in page.split("<main")[1]
    assert "Per-option results are shown once enough people have voted." in page


def test_after_close_results_stay_hidden_after_voting(client, make_poll, app):
    poll = make_poll(results="after_close")
    browser = app.test_client()
    page = follow(browser, form_vote(browser, poll)).get_data(as_text=True)
    assert "The results will be shown when the poll closes." in page
    assert "Total votes: 1" not in page
    assert "Show results" not in widget(app.test_client(), poll, ip=OTHER_IP).get_data(
        as_text=True)


def test_always_results_can_be_viewed_before_voting(client, make_poll):
    poll = make_poll()
    page = widget(client, poll).get_data(as_text=True)
    assert "Show results" in page
    results = widget(client, poll, view="results").get_data(as_text=True)
    assert "Total votes: 0" in results
    assert "Back to the vote" in results


def test_unknown_poll_gets_an_html_error_page(client):
    response = client.get("/polls/nope/widget?lang=de")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Diese Umfrage gibt es nicht." in response.get_data(as_text=True)


def test_widget_sends_a_strict_policy_embeddable_anywhere_by_default(client, make_poll):
    response = widget(client, make_poll())
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors *" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "default-src 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response.headers["Cache-Control"]
    assert "X-Frame-Options" not in response.headers


def test_widget_frame_ancestors_list_the_allowed_origins(client, make_poll):
    poll = make_poll(allowed_origins=["https://www.psyweb.example", "https://b.example:8443"])
    policy = widget(client, poll).headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://www.psyweb.example https://b.example:8443" in policy


def test_widget_style_is_allowed_by_nonce_only(client, make_poll):
    response = widget(client, make_poll())
    page = Tags(response.get_data(as_text=True))
    nonce = page.named("style")[0]["nonce"]
    assert f"style-src 'nonce-{nonce}'" in response.headers["Content-Security-Policy"]
    assert not any("style" in attrs for _, attrs in page.tags)
    scripts = page.named("script")
    assert {s.get("src") for s in scripts} == {"/widgets/static/widget.js", None}
    assert [s["type"] for s in scripts if s.get("src") is None] == ["application/json"]


def test_widget_script_is_served_with_nosniff(client):
    response = client.get("/widgets/static/widget.js")
    assert response.status_code == 200
    assert response.mimetype in ("text/javascript", "application/javascript")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert b"innerHTML" not in response.data


def test_parent_origin_is_passed_on_only_when_allowed(client, make_poll):
    poll = make_poll(allowed_origins=["https://www.psyweb.example"])
    allowed = widget(client, poll, origin="https://www.psyweb.example").get_data(as_text=True)
    assert '"origin": "https://www.psyweb.example"' in allowed
    other = widget(client, poll, origin="https://evil.example").get_data(as_text=True)
    assert '"origin": null' in other


@pytest.mark.parametrize("value", ["red;}body{display:none", "#12345", "url(x)"])
def test_malformed_colour_overrides_are_dropped(client, make_poll, value):
    page = widget(client, make_poll(), accent=value).get_data(as_text=True)
    assert "--pb-accent: " + value not in page


def test_colour_overrides_set_the_custom_properties(client, make_poll):
    page = widget(client, make_poll(), accent="#aa0055", theme="dark").get_data(as_text=True)
    assert "--pb-accent: #aa0055;" in page
    assert 'data-theme="dark"' in page


def test_widget_sets_the_voter_cookie_lax_on_plain_http(client, make_poll):
    response = widget(client, make_poll())
    cookie = next(h for h in response.headers.getlist("Set-Cookie")
                  if h.startswith("pollbox_voter="))
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie


def test_widget_sets_a_partitioned_third_party_cookie_on_https(client, make_poll):
    poll = make_poll()
    response = client.get(f"/polls/{poll['id']}/widget", base_url="https://localhost")
    cookie = next(h for h in response.headers.getlist("Set-Cookie")
                  if h.startswith("pollbox_voter="))
    for attribute in ("Secure", "SameSite=None", "Partitioned", "HttpOnly"):
        assert attribute in cookie


@pytest.mark.parametrize(("lang", "expected"), [
    ("en", "Your vote is being recorded. Please try again in a moment."),
    ("de", "Ihre Stimme wird gerade gezählt. Bitte versuchen Sie es gleich noch einmal."),
    ("es", "Su voto se está registrando. Vuelva a intentarlo en un momento."),
    ("fr", "Votre vote est en cours d\u2019enregistrement. Réessayez dans un instant."),
])
def test_a_vote_still_pending_asks_to_try_again_in_a_moment(client, make_poll, lang,
                                                            expected):
    poll = make_poll()

    page = widget(client, poll, error="vote_pending", lang=lang).get_data(as_text=True)

    assert expected in unescape(page)
