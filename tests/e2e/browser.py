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

from tests.conftest import missing

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


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE_JS.exists():
        missing(f"axe-core ({AXE_JS}; tests/run.sh installs it from npm)")
    return AXE_JS.read_text()


def run_axe(frame, axe_source: str) -> list[dict]:
    """axe-core's serious and critical violations in a page or frame."""
    if not frame.evaluate("typeof window.axe !== 'undefined'"):
        frame.add_script_tag(content=axe_source)
    result = frame.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"] if v["impact"] in BLOCKING_IMPACTS
    ]


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
