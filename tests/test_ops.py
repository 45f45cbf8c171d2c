"""Operations: liveness, readiness, the OpenAPI document and its docs page."""

from __future__ import annotations

import re

import pytest
import redis

from service import create_app
from tests.conftest import SECRET


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


@pytest.mark.parametrize("stack", ["sqlite-redis"], indirect=True)
def test_redis_client_is_created_once_per_process(app, client):
    first = app.extensions["pollbox.redis"].client
    client.get("/readyz")
    client.get("/readyz")
    assert app.extensions["pollbox.redis"].client is first
    assert isinstance(first, redis.Redis)
