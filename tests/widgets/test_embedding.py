"""Embedding: oEmbed, the share page, the results SVG, embed.js, and poll text that tries
to become markup on any of them.

Every test runs on the three stacks of `tests/conftest.py`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest

from tests.widgets.helpers import XSS_CORPUS, Tags, csrf_token

SVG = "{http://www.w3.org/2000/svg}"
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def oembed(client, url: str, **params):
    return client.get("/oembed", query_string={"url": url, **params})


def share_url(poll: dict) -> str:
    return f"http://localhost/p/{poll['id']}"


# -- oEmbed ---------------------------------------------------------------------------


def test_oembed_answers_a_rich_embed_for_the_share_url(client, make_poll):
    poll = make_poll()
    response = oembed(client, share_url(poll), format="json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["version"] == "1.0" and body["type"] == "rich"
    assert body["title"] == poll["question"]
    assert body["provider_name"] == "Pollbox"
    assert (body["width"], body["height"]) == (480, 400)
    frame = Tags(body["html"]).named("iframe")[0]
    assert frame["src"] == f"http://localhost/polls/{poll['id']}/widget"
    assert frame["title"] == f"Poll: {poll['question']}"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_oembed_accepts_the_widget_url_and_the_polls_own_oembed_link(client, make_poll):
    poll = make_poll()
    assert oembed(client, f"http://localhost/polls/{poll['id']}/widget").status_code == 200
    link = poll["embed"]["oembed_url"].removeprefix("http://localhost")
    assert client.get(link).get_json()["type"] == "rich"


def test_oembed_respects_maxwidth_and_maxheight(client, make_poll):
    poll = make_poll()
    body = oembed(client, share_url(poll), maxwidth=300, maxheight=200).get_json()
    assert (body["width"], body["height"]) == (300, 200)
    frame = Tags(body["html"]).named("iframe")[0]
    assert (frame["width"], frame["height"]) == ("300", "200")
    larger = oembed(client, share_url(poll), maxwidth=5000).get_json()
    assert larger["width"] == 480


@pytest.mark.parametrize("url", [
    "http://localhost/p/unknownpoll1",
    "http://elsewhere.example/p/{id}",
    "http://localhost/polls/{id}/results.svg",
    "ftp://localhost/p/{id}",
    "",
])
def test_oembed_answers_404_for_urls_that_are_not_our_polls(client, make_poll, url):
    poll = make_poll()
    response = oembed(client, url.format(id=poll["id"]))
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_oembed_answers_501_for_xml(client, make_poll):
    response = oembed(client, share_url(make_poll()), format="xml")
    assert response.status_code == 501


@pytest.mark.parametrize("value", ["0", "-5", "wide"])
def test_oembed_rejects_a_malformed_maxwidth(client, make_poll, value):
    response = oembed(client, share_url(make_poll()), maxwidth=value)
    assert response.status_code == 422
    assert "maxwidth" in response.get_json()["errors"]


# -- share page -------------------------------------------------------------------------


def test_share_page_has_open_graph_tags_and_oembed_discovery(client, make_poll):
    poll = make_poll()
    response = client.get(f"/p/{poll['id']}")
    assert response.status_code == 200
    page = Tags(response.get_data(as_text=True))
    meta = {m.get("property") or m.get("name"): m["content"] for m in page.named("meta")
            if "content" in m}
    assert meta["og:title"] == poll["question"]
    assert meta["og:url"] == share_url(poll)
    assert meta["og:type"] == "website"
    assert meta["og:description"] == "0 votes so far. Cast yours."
    discovery = [link for link in page.named("link") if link.get("type") ==
                 "application/json+oembed"]
    assert discovery[0]["href"] == (
        f"http://localhost/oembed?url={quote(share_url(poll), safe='')}&format=json"
    )
    assert page.named("script")[0]["data-poll"] == poll["id"]
    assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]


def test_share_page_of_an_unknown_poll_is_a_404_page(client):
    response = client.get("/p/unknownpoll1")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


# -- results SVG ------------------------------------------------------------------------


def test_results_svg_parses_as_xml_with_a_bar_per_option(client, make_poll, vote):
    poll = make_poll()
    vote(poll, [poll["options"][0]["id"]])
    response = client.get(f"/polls/{poll['id']}/results.svg")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    root = ET.fromstring(response.data)
    assert root.tag == f"{SVG}svg"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert poll["question"][:40] in texts[0]
    assert "Yes, currently" in texts
    assert "100% (1 vote)" in texts
    assert "Total votes: 1" in texts
    assert root.find(f"{SVG}title").text == poll["question"]


def test_results_svg_sends_its_policy_and_cache_headers(client, make_poll):
    poll = make_poll()
    response = client.get(f"/polls/{poll['id']}/results.svg")
    assert response.headers["Content-Security-Policy"] == (
        "default-src 'none'; style-src 'unsafe-inline'"
    )
    assert "max-age" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    again = client.get(f"/polls/{poll['id']}/results.svg",
                       headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_results_svg_keeps_hidden_results_hidden(client, make_poll, vote):
    poll = make_poll(results="after_vote")
    vote(poll)
    root = ET.fromstring(client.get(f"/polls/{poll['id']}/results.svg").data)
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "not shown yet" in texts
    assert "Yes, currently" not in texts


def test_results_svg_below_min_votes_shows_the_total_only(client, make_poll, vote):
    poll = make_poll(results_min_votes=3)
    vote(poll)
    root = ET.fromstring(client.get(f"/polls/{poll['id']}/results.svg").data)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "Total votes: 1" in texts
    assert not any("%" in (t or "") for t in texts)


def test_results_svg_speaks_the_requested_language(client, make_poll):
    poll = make_poll()
    root = ET.fromstring(client.get(f"/polls/{poll['id']}/results.svg?lang=de").data)
    assert "Stimmen insgesamt: 0" in [t.text for t in root.iter(f"{SVG}text")]


# -- embed.js ---------------------------------------------------------------------------


def test_embed_js_is_served_as_cacheable_javascript(client):
    response = client.get("/embed.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=300" in response.headers["Cache-Control"]
    source = response.get_data(as_text=True)
    assert "event.origin !== entry.origin" in source  # messages checked on the host side
    assert 'loading = "lazy"' in source


# -- XSS corpus -------------------------------------------------------------------------


@pytest.fixture(params=range(len(XSS_CORPUS)), ids=lambda i: f"payload{i}")
def hostile_poll(request, make_poll, app, vote):
    """A poll whose question, options, other answer and comment carry one payload."""
    payload = XSS_CORPUS[request.param]
    poll = make_poll(question=f"Q {payload}", options=[f"A {payload}", f"B {payload}"],
                     allow_other=True, allow_comment=True, kind="multiple",
                     duplicate_check="none")
    assert vote(poll, [poll["options"][0]["id"]], other=f"O {payload}",
                comment=f"C {payload}").status_code == 201
    browser = app.test_client()
    token = csrf_token(browser.get(f"/polls/{poll['id']}/widget").get_data(as_text=True))
    browser.post(f"/polls/{poll['id']}/widget", data={
        "choice": [str(poll["options"][1]["id"])], "other": f"O {payload}",
        "comment": f"C {payload}", "csrf_token": token})
    return poll


def assert_inert_html(html: str, *, scripts: set[str | None]) -> Tags:
    page = Tags(html)
    assert page.event_handlers() == []
    assert {tag for tag, _ in page.tags} <= {
        "html", "head", "meta", "title", "style", "script", "body", "main", "h1", "h2",
        "form", "fieldset", "p", "div", "input", "label", "textarea", "button", "a",
        "section", "ul", "li", "span", "link", "noscript", "iframe",
    }
    assert {s.get("src") for s in page.named("script")} <= scripts
    for text in page.script_texts:
        assert "</" not in text and "<script" not in text.lower()
    return page


def test_hostile_text_stays_text_in_the_widget(client, hostile_poll):
    poll = hostile_poll
    for query in ("", "?view=results"):
        html = client.get(f"/polls/{poll['id']}/widget{query}").get_data(as_text=True)
        page = assert_inert_html(html, scripts={"/widgets/static/widget.js", None})
        assert page.named("iframe") == [] and page.named("link") == []
        for raw in ("<script>alert", "<img", "<svg", "</title><"):
            assert raw not in html


def test_hostile_text_stays_text_on_the_share_page(client, hostile_poll):
    poll = hostile_poll
    html = client.get(f"/p/{poll['id']}").get_data(as_text=True)
    page = assert_inert_html(html, scripts={"http://localhost/embed.js"})
    titles = [m["content"] for m in page.named("meta") if m.get("property") == "og:title"]
    assert titles == [poll["question"]]
    assert "<script>alert" not in html


def test_hostile_text_stays_text_in_the_svg(client, hostile_poll):
    poll = hostile_poll
    data = client.get(f"/polls/{poll['id']}/results.svg").data
    root = ET.fromstring(data)  # parses: escaped, and no character XML forbids
    tags = {element.tag for element in root.iter()}
    assert tags <= {f"{SVG}{name}" for name in ("svg", "title", "desc", "style", "rect",
                                                "text", "g")}
    assert not [name for element in root.iter() for name in element.attrib
                if name.lower().startswith("on")]
    assert root.find(f"{SVG}title").text == NOT_XML.sub("", poll["question"])


def test_hostile_text_stays_text_in_oembed(client, hostile_poll):
    poll = hostile_poll
    body = oembed(client, share_url(poll)).get_json()
    page = Tags(body["html"])
    assert [tag for tag, _ in page.tags] == ["iframe"]
    assert page.event_handlers() == []
    assert page.named("iframe")[0]["title"] == f"Poll: {body['title']}"


# -- the Host header ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/p/{id}", "/oembed?url=http://evil.example/p/{id}",
                                  "/api/v1/polls/{id}"])
def test_absolute_urls_are_never_built_from_an_untrusted_host(client, make_poll, auth, path):
    poll = make_poll()

    response = client.get(path.format(id=poll["id"]), headers={"Host": "evil.example",
                                                                 **auth})

    assert response.status_code == 400
    if response.is_json:
        assert response.get_json()["code"] == "untrusted_host"
    assert b"evil.example" not in response.get_data()


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000"])
def test_the_quick_start_hosts_are_trusted_without_configuration(client, make_poll, host):
    poll = make_poll()

    response = client.get(f"/p/{poll['id']}", headers={"Host": host})

    assert response.status_code == 200
    assert f"http://{host}/embed.js" in response.get_data(as_text=True)


def test_public_base_url_is_used_whatever_the_host(make_app, make_poll):
    poll = make_poll()
    client = make_app(PUBLIC_BASE_URL="https://polls.example.org").test_client()

    response = client.get(f"/p/{poll['id']}", headers={"Host": "evil.example"})

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "https://polls.example.org/embed.js" in page and "evil.example" not in page


def test_trusted_hosts_admit_their_names_and_refuse_others(make_app, make_poll):
    poll = make_poll()
    client = make_app(TRUSTED_HOSTS=["polls.example.org"]).test_client()

    trusted = client.get(f"/p/{poll['id']}", headers={"Host": "polls.example.org"})
    untrusted = client.get(f"/p/{poll['id']}", headers={"Host": "evil.example"})

    assert trusted.status_code == 200
    assert "http://polls.example.org/embed.js" in trusted.get_data(as_text=True)
    assert untrusted.status_code == 400
    assert untrusted.get_json()["code"] == "untrusted_host"
    assert b"evil.example" not in untrusted.get_data()
