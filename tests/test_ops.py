"""Operations: liveness, readiness, the OpenAPI document and its docs page."""

from __future__ import annotations

import base64
import hashlib
import re
import threading

import pytest
import redis
from werkzeug.serving import make_server

from service import create_app
from tests.conftest import SECRET
from tests.e2e.browser import EXPECT_TIMEOUT_MS
from tests.e2e.browser import browser as browser  # a fixture, used as a parameter

# Recorded in the page before its own scripts run: every violation of its policy.
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def test_healthz_answers_while_the_process_runs(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_ok_with_database_and_redis(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_readyz_is_503_when_the_database_is_down(tmp_path):
    # A PostgreSQL port nothing listens on: the database cannot be reached.
    app = create_app({
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://postgres@127.0.0.1:1/test"
                                   "?connect_timeout=1",
    })
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "down"


def test_readyz_names_redis_degraded_but_stays_ready(tmp_path):
    app = create_app({
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    })
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "degraded", "database": "ok", "redis": "degraded"}


def test_openapi_document_describes_the_api(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["info"]["title"] == "Pollbox"
    assert {"/api/v1/polls", "/api/v1/polls/{poll_id}", "/api/v1/polls/{poll_id}/votes",
            "/api/v1/polls/{poll_id}/tallies"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    error = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]
    assert "application/problem+json" in error


def test_docs_page_loads_its_assets_from_this_service_not_a_cdn(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources, "the docs page references its scripts and styles"
    for source in sources:
        assert source.startswith("/api/v1/docs/assets/"), source
        assert client.get(source).status_code == 200


def test_docs_page_runs_only_its_own_scripts_and_refuses_framing(client):
    page = client.get("/api/v1/docs")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    policy = dict(directive.split(" ", 1)
                  for directive in page.headers["Content-Security-Policy"].split("; "))
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    [inline] = re.findall(r"<script>(.*?)</script>", page.get_data(as_text=True), re.S)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    # The one inline script (flask-smorest's Swagger UI start-up) by its hash, no other.
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert "unsafe" not in page.headers["Content-Security-Policy"]


@pytest.fixture
def docs_server(tmp_path):
    """The app served over HTTP on a free loopback port, for the browser."""
    app = create_app({"SECRET_KEY": SECRET,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.browser
def test_docs_page_renders_in_a_browser_within_its_policy(browser, docs_server):
    context = browser.new_context()
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{docs_server}/api/v1/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=EXPECT_TIMEOUT_MS)
    assert page.inner_text(".swagger-ui .info .title").startswith("Pollbox")
    page.locator(".opblock-summary").first.click()  # an operation opens, styled
    page.get_by_role("button", name="Try it out").first.wait_for(timeout=EXPECT_TIMEOUT_MS)
    assert page.evaluate("window.cspViolations") == []
    assert errors == []
    context.close()


@pytest.mark.parametrize("stack", ["sqlite-redis"], indirect=True)
def test_redis_client_is_created_once_per_process(app, client):
    first = app.extensions["pollbox.redis"].client
    client.get("/readyz")
    client.get("/readyz")
    assert app.extensions["pollbox.redis"].client is first
    assert isinstance(first, redis.Redis)
