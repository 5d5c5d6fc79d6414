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


def test_a_body_that_is_not_json_says_why_and_where(client: TestClient, auth: TokenFactory) -> None:
    amy = auth("amy", "account_manager")
    broken = client.post(
        "/api/v1/tenants", content=b"{not json", headers={**amy, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    body = broken.json()
    assert body["detail"].startswith("body: not valid JSON (Expecting property name")
    assert body["instance"] == "/api/v1/tenants"

    plain = client.post(
        "/api/v1/tenants", content=b"name=acme", headers={**amy, "Content-Type": "text/plain"}
    )
    assert plain.status_code == 415
    assert plain.headers["content-type"] == "application/problem+json"
    assert plain.json()["detail"] == "send the body as application/json, not text/plain"


def test_an_unknown_path_names_itself(client: TestClient, auth: TokenFactory) -> None:
    r = client.get("/api/v1/nosuch", headers=auth("amy", "account_manager"))
    assert r.status_code == 404
    body = r.json()
    assert body["detail"] == "nothing at GET /api/v1/nosuch; see /docs for the API"
    assert body["instance"] == "/api/v1/nosuch"
