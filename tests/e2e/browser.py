"""What the browser tests share: Debian's Chromium driven by Playwright (never a
downloaded browser), axe-core from npm, and one backend (SQLite) for the service.

Test modules import the fixtures `browser` and `e2e_database_url` (the latter overrides
the e2e conftest's, which runs every backend) and use them as parameters.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVICES

CHROMIUM = Path(os.environ.get("POLLBOX_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
]
AXE_JS = Path(os.environ.get(
    "POLLBOX_AXE_JS",
    Path.home() / ".cache/pollbox/npm/node_modules/axe-core/axe.min.js",
))
SCREENSHOTS = Path(os.environ.get("POLLBOX_SCREENSHOTS", "/tmp/pollbox-screenshots"))
BLOCKING_IMPACTS = ("serious", "critical")
EXPECT_TIMEOUT_MS = 10_000


def missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is missing (POLLBOX_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(f"{what} is missing")


@pytest.fixture
def e2e_database_url(request, tmp_path) -> str:
    """These tests are about the browser: one backend (SQLite) is enough."""
    path = tmp_path / "pollbox.db"
    shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        missing(f"Chromium ({CHROMIUM}; apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
