"""The OpenAPI spec documents the trust endpoints, and their answers match its schemas."""

from __future__ import annotations

import pytest
from openapi_schema_validator import OAS30Validator

from tests.test_votes import sign


def openapi_validator(client, component: str) -> OAS30Validator:
    spec = client.get("/api/v1/openapi.json").get_json()
    return OAS30Validator({"$ref": f"#/components/schemas/{component}",
                           "components": spec["components"]})


@pytest.fixture
def answers(app, client, auth, make_poll):
    """One real answer of each new endpoint, by the component that should describe it."""
    poll = make_poll(duplicate_check="user", allow_other=True)
    cast = app.test_client().post(
        f"/api/v1/polls/{poll['id']}/votes",
        json={"choices": [], "other": "Maybe", "voter": sign(poll, "user-1")},
        headers={"Idempotency-Key": "spec-key"},
    ).get_json()
    receipt = cast["vote"]["receipt"]
    return {
        "VoteResult": cast,
        "ReceiptVote": client.get(f"/api/v1/receipts/{receipt}").get_json(),
        "Integrity": client.get(f"/api/v1/polls/{poll['id']}/integrity",
                                headers=auth).get_json(),
        "SigningSecret": client.post(f"/api/v1/polls/{poll['id']}/signing-secret",
                                     headers=auth).get_json(),
    }


@pytest.mark.parametrize("component",
                         ["VoteResult", "ReceiptVote", "Integrity", "SigningSecret"])
def test_trust_answers_validate_against_the_openapi_spec(client, answers, component):
    assert answers[component]
    openapi_validator(client, component).validate(answers[component])


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/v1/polls/{poll_id}/votes", "post", {"201", "403", "404", "409", "422", "429"}),
        ("/api/v1/receipts/{receipt}", "get", {"200", "404"}),
        ("/api/v1/receipts/{receipt}", "delete", {"204", "404"}),
        ("/api/v1/polls/{poll_id}/integrity", "get", {"200", "401", "403", "404"}),
        ("/api/v1/polls/{poll_id}/signing-secret", "post", {"200", "401", "403", "404"}),
    ],
)
def test_openapi_spec_documents_the_trust_endpoints(client, path, method, statuses):
    operation = client.get("/api/v1/openapi.json").get_json()["paths"][path][method]

    assert statuses <= set(operation["responses"])
    assert operation.get("summary") or operation.get("description")


def test_openapi_spec_documents_the_idempotency_key_header(client):
    operation = client.get("/api/v1/openapi.json").get_json()[
        "paths"]["/api/v1/polls/{poll_id}/votes"]["post"]

    [parameter] = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert parameter["in"] == "header"
    assert (parameter["schema"]["minLength"], parameter["schema"]["maxLength"]) == (1, 255)
    assert "Idempotent-Replayed" in operation["responses"]["201"]["headers"]
