"""The console's feedback and webhook pages in a real browser (Debian's Chromium through
Playwright, the service under gunicorn): the one-click page-feedback poll, its snippet
pasted as is on two pages of another site, the results per page and hiding a comment,
then a webhook's pages from creation to deletion. Every page passes axe-core (serious and
critical) and the console's CSP (no console errors)."""

# Fixtures imported from tests/e2e/browser.py and test_widget_browser.py are used as
# parameters of the same name.
# ruff: noqa: F401, F811

from __future__ import annotations

import httpx
import pytest

from tests.e2e.browser import (
    AXE_JS,
    BLOCKING_IMPACTS,
    EXPECT_TIMEOUT_MS,
    SCREENSHOTS,
    browser,
    e2e_database_url,
)
from tests.e2e.test_widget_browser import collect_errors, host_site, widget_frames

pytestmark = [pytest.mark.gunicorn, pytest.mark.browser]

@pytest.fixture
def service(gunicorn_server, e2e_database_url, clean_redis):
    return gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis, workers=2,
                           WEBHOOKS_ALLOW_PRIVATE="1")


def accessible(page) -> None:
    """No serious or critical axe-core violations (the CSP allows no inline script, so
    axe's source is evaluated rather than added as a tag)."""
    if not AXE_JS.exists():
        return
    page.evaluate(AXE_JS.read_text() + "\n;undefined")
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    found = [(v["id"], [n["target"] for n in v["nodes"]]) for v in result["violations"]
             if v["impact"] in BLOCKING_IMPACTS]
    assert found == [], page.url


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"), full_page=True)


def vote_on(browser, url: str, choice: str, comment: str | None = None) -> None:
    """A visitor of the host page votes in its widget."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    [frame] = widget_frames(page, 1)
    frame.get_by_label(choice, exact=True).check()
    if comment:
        frame.get_by_label("Comment (optional)").fill(comment)
    with page.expect_response(lambda response: response.url.endswith("/votes")) as answer:
        frame.get_by_role("button", name="Vote").click()
    assert answer.value.status == 201
    context.close()


def contexts(service, key: str, poll_id: str) -> list[dict]:
    return httpx.get(f"{service.base_url}/api/v1/polls/{poll_id}/contexts", timeout=10,
                     headers={"Authorization": f"Bearer {key}"}).json()


def test_page_feedback_and_webhooks_through_the_console(browser, service, host_site,
                                                        owner_key):
    base = service.base_url
    context = browser.new_context(viewport={"width": 1100, "height": 1200})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    page.set_default_timeout(EXPECT_TIMEOUT_MS)
    errors = collect_errors(page)
    page.goto(f"{base}/console/presets/page-feedback")
    page.get_by_label("API key").fill(owner_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/console/presets/page-feedback")

    # The one-click poll, first with a mistake named on its field.
    host = f"http://localhost:{host_site.port}"
    page.get_by_label("Sites allowed to embed it").fill(f"{host}\nnot a site")
    page.get_by_role("button", name="Create the poll").click()
    assert page.locator("#allowed_origins").get_attribute("aria-invalid") == "true"
    assert page.locator("#allowed_origins-error").inner_text().startswith("Line 2: ")
    accessible(page)
    shoot(page, "page-feedback-errors")
    page.get_by_label("Sites allowed to embed it").fill(host)
    page.get_by_role("button", name="Create the poll").click()
    page.wait_for_url(f"{base}/console/polls/*")
    poll_id = page.url.rsplit("/", 1)[1]

    # The snippet, pasted unchanged on two pages of the site, sends each page's path.
    page.goto(f"{base}/console/polls/{poll_id}/feedback")
    snippet = page.locator("#snippet-every").inner_text()
    vote_on(browser, host_site.page("docs/install", snippet), "Yes", "Clear steps, thanks")
    vote_on(browser, host_site.page("docs/faq", snippet), "No")
    assert {row["context"] for row in contexts(service, owner_key, poll_id)} == {
        "/docs/install", "/docs/faq"}

    page.reload()
    rows = page.locator("#contexts tbody tr")
    assert rows.count() == 2
    assert {rows.nth(i).locator("th").inner_text(): rows.nth(i).locator("td").all_inner_texts()
            [:3] for i in range(2)} == {"/docs/install": ["1", "1 (100.00 %)", "0 (0.00 %)"],
                                        "/docs/faq": ["1", "0 (0.00 %)", "1 (100.00 %)"]}
    comment = page.locator("#comments tbody tr")
    assert comment.locator("td").all_inner_texts()[1:4] == ["/docs/install", "Yes",
                                                            "Clear steps, thanks"]
    page.locator("#snippet-script + button").click()
    assert page.evaluate("navigator.clipboard.readText()") == page.locator(
        "#snippet-script").inner_text()
    accessible(page)
    shoot(page, "feedback")
    comment.get_by_role("button", name="Hide").click()
    page.wait_for_url(f"{base}/console/polls/{poll_id}/feedback#comments")
    assert "hidden from the widget" in page.locator(".pb-flash-success").inner_text()
    assert page.locator("#comments tbody tr .pb-badge").inner_text() == "Hidden"

    # A webhook: created (secret once), test sent, logged, deleted after confirmation.
    page.get_by_role("link", name="Webhooks").click()
    accessible(page)
    page.get_by_role("link", name="New webhook").click()
    page.get_by_label("URL").fill("http://127.0.0.1:9/hook")  # nothing listens there
    page.get_by_label("poll.closed: a poll closes, by hand or at its closing time").uncheck()
    page.get_by_role("button", name="Create the webhook").click()
    secret = page.locator("#webhook-secret").inner_text()
    assert secret.startswith("whsec_")
    page.get_by_role("button", name="Copy the secret").click()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    accessible(page)
    shoot(page, "webhook-created")
    page.get_by_role("link", name="Go to its deliveries").click()
    page.get_by_role("button", name="Send test").click()
    assert "is queued" in page.locator(".pb-flash-success").inner_text()
    assert page.locator("#deliveries tbody tr td").nth(0).inner_text() == "webhook.test"
    assert secret not in page.content()
    accessible(page)
    shoot(page, "webhook-deliveries")
    page.get_by_role("link", name="Delete…").click()
    accessible(page)
    page.get_by_role("button", name="Delete the webhook").click()
    page.wait_for_url(f"{base}/console/webhooks")
    assert "Deleted the webhook" in page.locator(".pb-flash-success").inner_text()
    assert page.locator(".pb-empty").count() == 1

    # The only error: the browser's note of the form's 422 answer (no CSP violation).
    assert [e for e in errors if "status of 422" not in e] == []
    context.close()
