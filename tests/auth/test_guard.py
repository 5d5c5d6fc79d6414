"""Who may call is decided before the request body is looked at."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import TokenFactory


def test_no_token_and_broken_json_is_401_not_422(client: TestClient) -> None:
    r = client.post(
        "/api/v1/tenants", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_wrong_role_and_invalid_body_is_403_not_422(client: TestClient, auth: TokenFactory) -> None:
    r = client.post("/api/v1/tenants", json={"name": "NOT A LABEL"}, headers=auth("q", "qa"))
    assert r.status_code == 403
    assert "account_manager" in r.json()["detail"]


def test_allowed_role_with_invalid_body_gets_the_validation_problem(
    client: TestClient, auth: TokenFactory
) -> None:
    r = client.post(
        "/api/v1/tenants", json={"name": "NOT A LABEL"}, headers=auth("amy", "account_manager")
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
