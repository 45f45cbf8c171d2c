"""The owner console in a real browser: Debian's Chromium driven by Playwright (never a
downloaded browser) against the service under gunicorn (production config).

One owner's day: sign in with the API key, create the seed's poll through the form, copy
the iframe snippet, vote in the live preview and watch the results change without a
reload, close the poll, download the CSV and read it back with the csv module.
"""

# The fixtures imported from tests/e2e/browser.py are used as parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

import csv

import pytest

from tests.conftest import SEED_POLL
from tests.e2e.browser import (
    AXE_JS,
    BLOCKING_IMPACTS,
    EXPECT_TIMEOUT_MS,
    SCREENSHOTS,
    browser,  # noqa: F401 (a fixture)
    e2e_database_url,  # noqa: F401 (a fixture)
)

pytestmark = [pytest.mark.gunicorn, pytest.mark.browser]



def expect(locator):
    """Playwright's web-first assertions (they poll without `eval`, which the console's
    CSP forbids, unlike `page.wait_for_function`)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def service(gunicorn_server, e2e_database_url, clean_redis):
    return gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis, workers=2)


def collect_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(
        f"{message.text} ({message.location.get('url')})"))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def axe_violations(page) -> list[dict]:
    """Serious and critical accessibility violations (axe-core), when axe is installed."""
    if not AXE_JS.exists():
        return []
    # The console's CSP allows no inline script: evaluate axe's source instead.
    page.evaluate(AXE_JS.read_text() + "\n;undefined")
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"] if v["impact"] in BLOCKING_IMPACTS
    ]


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"), full_page=True)


def test_owner_signs_in_creates_the_seed_poll_embeds_votes_closes_and_downloads_csv(
    browser, service, owner_key
):
    context = browser.new_context(viewport={"width": 1100, "height": 1400},
                                  accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service.base_url)
    page = context.new_page()
    page.set_default_timeout(EXPECT_TIMEOUT_MS)
    errors = collect_errors(page)

    # Signing in: the console sends a visitor to the sign-in page first.
    page.goto(f"{service.base_url}/console/")
    assert page.url.startswith(f"{service.base_url}/console/sign-in")
    page.get_by_label("API key").fill("pbk_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    assert "not valid" in page.locator("#api_key-error").inner_text()
    page.get_by_label("API key").fill(owner_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{service.base_url}/console/polls")
    assert "Signed in as PsyWeb." in page.locator(".pb-flash-success").inner_text()
    cookie = {cookie["name"]: cookie for cookie in context.cookies()}["pollbox_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    assert axe_violations(page) == []

    # Creating the seed's poll through the form (first with a mistake to correct).
    page.get_by_role("link", name="New poll").click()
    page.get_by_label("Question").fill(SEED_POLL["question"])
    page.get_by_label("Options", exact=True).fill("Only one option")
    page.get_by_role("button", name="Create poll").click()
    assert page.locator("#options").get_attribute("aria-invalid") == "true"
    assert "2 to 50 options" in page.locator("#options-error").inner_text()
    assert page.get_by_label("Question").input_value() == SEED_POLL["question"]
    assert axe_violations(page) == []
    shoot(page, "form-errors")
    page.get_by_label("Options", exact=True).fill("\n".join(SEED_POLL["options"]))
    page.get_by_role("button", name="Create poll").click()
    page.wait_for_url(f"{service.base_url}/console/polls/*")
    poll_id = page.url.rsplit("/", 1)[1]
    assert page.locator("#poll-question").inner_text() == SEED_POLL["question"]
    assert page.locator("#poll-status").inner_text() == "Open"
    assert page.locator("#total-votes").inner_text() == "0"

    # Copying the iframe snippet puts exactly the shown snippet on the clipboard.
    page.locator("#copy-iframe").click()
    expect(page.locator("#copy-iframe-status")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.locator("#snippet-iframe").inner_text()
    assert copied.startswith("<iframe ")
    assert f'src="{service.base_url}/polls/{poll_id}/widget"' in copied

    # Voting in the preview changes the results on the page live (no reload: the marker
    # set on this window survives; the stream delivered the new count).
    expect(page.locator("#live-results")).to_have_attribute("data-live", "true")
    page.evaluate("window.__sameDocument = true")
    preview = page.frame_locator("#widget-preview")
    preview.get_by_label("Yes, in the past").click()
    preview.get_by_role("button", name="Vote").click()
    expect(page.locator("#total-votes")).to_have_text("1")
    assert page.evaluate("window.__sameDocument") is True
    row = page.locator('[data-option-id] >> text="Yes, in the past"').locator("xpath=../..")
    assert row.locator(".pb-votes").inner_text() == "1"
    assert row.locator(".pb-percent").inner_text() == "100.00"
    assert axe_violations(page) == []
    shoot(page, "poll")

    # Closing the poll.
    page.get_by_role("button", name="Close poll").click()
    page.wait_for_selector("#reopen-poll")
    assert page.locator("#poll-status").inner_text() == "Closed"
    assert "Poll closed" in page.locator(".pb-flash-success").inner_text()

    # Downloading the CSV and reading it back.
    with page.expect_download() as download_info:
        page.locator("#export-tallies-csv").click()
    download = download_info.value
    assert download.suggested_filename == f"{poll_id}-tallies.csv"
    with open(download.path(), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["option_label"] for row in rows] == SEED_POLL["options"]
    assert {row["option_label"]: int(row["votes"]) for row in rows} == {
        "Yes, currently": 0, "Yes, in the past": 1, "No, never": 0}
    assert {row["poll_id"] for row in rows} == {poll_id}
    assert {row["question"] for row in rows} == {SEED_POLL["question"]}

    # The list shows the poll closed, with its vote.
    page.get_by_role("link", name="Polls", exact=True).first.click()
    row = page.locator(f'tr[data-poll-id="{poll_id}"]')
    expect(row.locator(".pb-badge")).to_have_text("Closed")
    expect(row.locator(".pb-num")).to_have_text("1")
    shoot(page, "list")

    # Only the two answers that were meant to be errors: the wrong key, the form's mistake.
    assert errors == [
        f"Failed to load resource: the server responded with a status of 401 (UNAUTHORIZED) "
        f"({service.base_url}/console/sign-in)",
        f"Failed to load resource: the server responded with a status of 422 (UNPROCESSABLE "
        f"ENTITY) ({service.base_url}/console/polls/new)",
    ]
    context.close()
