"""OIDC bearer tokens, verified against a real JWKS served on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from tenantops.app import create_app
from tenantops.auth.oidc import JWKS_MAX_AGE, UNKNOWN_KID_COOLDOWN
from tenantops.config import OIDCSettings, Settings
from tenantops.db import Database
from tests.auth.conftest import AUDIENCE, Issuer, OidcClientFactory, new_rsa_key
from tests.conftest import Clock, TokenFactory
from tests.factories import tenant_body
from tests.flows import problem
from tests.servers import bearer

ME = "/api/v1/me"


def assert_unauthenticated(response: Response) -> None:
    body = problem(response, 401)
    assert body["type"].endswith("/not-authenticated")
    assert body["detail"]


def b64url(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_valid_token_gives_the_caller_and_the_roles_of_the_claim(
    oidc_client: OidcClientFactory, issuer: Issuer
) -> None:
    client = oidc_client()
    token = issuer.sign(issuer.claims(sub="alice", roles=["security", "governance"]))

    r = client.get(ME, headers=bearer(token))

    assert r.status_code == 200, r.text
    assert r.json() == {
        "subject": "alice",
        "roles": ["governance", "security"],
        "tenant": None,
        "via": "oidc",
    }


def test_roles_from_a_dotted_claim_as_keycloak_sends_them(
    oidc_client: OidcClientFactory, issuer: Issuer
) -> None:
    client = oidc_client(roles_claim="realm_access.roles")
    claims = issuer.claims(roles=None, realm_access={"roles": ["auditor", "offline_access"]})

    r = client.get(ME, headers=bearer(issuer.sign(claims)))

    assert r.status_code == 200, r.text
    assert r.json()["roles"] == ["auditor"]


def test_roles_as_a_space_separated_string(oidc_client: OidcClientFactory, issuer: Issuer) -> None:
    client = oidc_client()
    r = client.get(ME, headers=bearer(issuer.sign(issuer.claims(roles="qa finance"))))
    assert r.json()["roles"] == ["finance", "qa"]


def test_unknown_role_names_are_ignored(oidc_client: OidcClientFactory, issuer: Issuer) -> None:
    client = oidc_client()
    claims = issuer.claims(roles=["governance", "root", "Admin", "superuser", 7, None])

    r = client.get(ME, headers=bearer(issuer.sign(claims)))

    assert r.status_code == 200, r.text
    assert r.json()["roles"] == ["governance"]


@pytest.mark.parametrize(
    "roles",
    [["root", "Admin"], [], 42, {"admin": True}],
    ids=["only-unknown", "empty", "a-number", "an-object"],
)
def test_a_token_without_a_known_role_is_forbidden_everywhere(
    oidc_client: OidcClientFactory, issuer: Issuer, roles: object
) -> None:
    client = oidc_client()
    r = client.get(ME, headers=bearer(issuer.sign(issuer.claims(roles=roles))))
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_tenant_claim_scopes_a_tenant_owner(
    oidc_client: OidcClientFactory, issuer: Issuer, auth: TokenFactory
) -> None:
    client = oidc_client()
    am = auth("amy", "account_manager")
    mine = client.post("/api/v1/tenants", json=tenant_body(name="mine"), headers=am).json()
    theirs = client.post("/api/v1/tenants", json=tenant_body(name="theirs"), headers=am).json()
    owner = bearer(issuer.sign(issuer.claims(sub="olga", roles=["tenant_owner"], tenant="mine")))

    assert client.get(ME, headers=owner).json()["tenant"] == "mine"
    listed = client.get("/api/v1/tenants", headers=owner).json()["items"]
    assert [t["name"] for t in listed] == ["mine"]
    assert client.get(f"/api/v1/tenants/{mine['id']}", headers=owner).status_code == 200
    for ref in (theirs["id"], "theirs"):
        r = client.get(f"/api/v1/tenants/{ref}", headers=owner)
        assert r.status_code == 404, r.text
        assert theirs["display_name"] not in r.text


def test_a_tenant_owner_role_without_a_tenant_claim_grants_nothing(
    oidc_client: OidcClientFactory, issuer: Issuer, auth: TokenFactory
) -> None:
    client = oidc_client()
    am = auth("amy", "account_manager")
    tenant = client.post("/api/v1/tenants", json=tenant_body(), headers=am).json()
    reactivate = f"/api/v1/tenants/{tenant['id']}/reactivation-requests"

    only_owner = bearer(issuer.sign(issuer.claims(roles=["tenant_owner"])))
    assert client.get(ME, headers=only_owner).status_code == 403

    # A role beside it keeps its own rights; the owner's rights, unbound to a tenant,
    # must not apply to every tenant.
    owner_and_qa = bearer(issuer.sign(issuer.claims(roles=["tenant_owner", "qa"])))
    assert client.get(ME, headers=owner_and_qa).json()["roles"] == ["qa"]
    r = client.post(reactivate, json={"reason": "please"}, headers=owner_and_qa)
    assert r.status_code == 403, r.text


INVALID: dict[str, Callable[[Issuer], str]] = {
    "wrong-issuer": lambda i: i.sign(i.claims(iss="https://evil.example/realms/ops")),
    "wrong-audience": lambda i: i.sign(i.claims(aud="another-app")),
    "no-audience": lambda i: i.sign(i.claims(aud=None)),
    "expired": lambda i: i.sign(i.claims(exp=int(time.time()) - 3600)),
    "not-yet-valid": lambda i: i.sign(i.claims(nbf=int(time.time()) + 3600)),
    "missing-exp": lambda i: i.sign(i.claims(exp=None)),
    "missing-sub": lambda i: i.sign(i.claims(sub=None)),
    "unknown-kid": lambda i: i.sign(kid="k-unknown", key=new_rsa_key()),
    "no-kid": lambda i: jwt.encode(i.claims(), i.keys["k1"], algorithm="RS256"),
    "bad-signature": lambda i: i.sign(kid="k1", key=new_rsa_key()),
    "tampered-payload": lambda i: ".".join(
        [
            i.sign().split(".")[0],
            b64url(i.claims(roles=["admin"])),
            i.sign().split(".")[2],
        ]
    ),
    "alg-none": lambda i: jwt.encode(i.claims(), None, algorithm="none", headers={"kid": "k1"}),
    "alg-none-no-kid": lambda i: jwt.encode(i.claims(), None, algorithm="none"),
    "alg-hs256-with-public-key": lambda i: ".".join(
        [
            b64url({"alg": "HS256", "typ": "JWT", "kid": "k1"}),
            b64url(i.claims()),
            b64url(b"forged"),
        ]
    ),
    "alg-es256-on-an-rsa-key": lambda i: ".".join(
        [
            b64url({"alg": "ES256", "typ": "JWT", "kid": "k1"}),
            b64url(i.claims()),
            b64url(b"\x00" * 64),
        ]
    ),
    "not-a-jwt": lambda i: "not-a-jwt",
    "three-garbage-parts": lambda i: "eyJhbGciOi.eyJzdWIi.c2ln",
}


@pytest.mark.parametrize("make_token", INVALID.values(), ids=INVALID.keys())
def test_invalid_tokens_are_refused_with_401(
    oidc_client: OidcClientFactory, issuer: Issuer, make_token: Callable[[Issuer], str]
) -> None:
    client = oidc_client()
    token = make_token(issuer)

    r = client.get(ME, headers=bearer(token))

    assert_unauthenticated(r)
    assert token not in r.text


def test_new_key_is_picked_up_without_a_restart(
    oidc_client: OidcClientFactory, issuer: Issuer, clock: Clock
) -> None:
    client = oidc_client()
    assert client.get(ME, headers=bearer(issuer.sign(kid="k1"))).status_code == 200

    issuer.add_key("k2")
    clock.advance(UNKNOWN_KID_COOLDOWN)
    r = client.get(ME, headers=bearer(issuer.sign(kid="k2")))

    assert r.status_code == 200, r.text
    assert client.get(ME, headers=bearer(issuer.sign(kid="k1"))).status_code == 200


def test_a_key_the_issuer_withdrew_stops_working(
    oidc_client: OidcClientFactory, issuer: Issuer, clock: Clock
) -> None:
    client = oidc_client()
    issuer.add_key("k2")
    assert client.get(ME, headers=bearer(issuer.sign(kid="k1"))).status_code == 200

    issuer.unpublish("k1")
    clock.advance(JWKS_MAX_AGE)

    assert_unauthenticated(client.get(ME, headers=bearer(issuer.sign(kid="k1"))))
    assert client.get(ME, headers=bearer(issuer.sign(kid="k2"))).status_code == 200


def test_unknown_kids_do_not_hammer_the_issuer(
    oidc_client: OidcClientFactory, issuer: Issuer, clock: Clock
) -> None:
    client = oidc_client()
    assert client.get(ME, headers=bearer(issuer.sign())).status_code == 200
    fetched = issuer.jwks_fetches()

    attacker = new_rsa_key()
    for n in range(20):
        forged = issuer.sign(kid=f"random-{n}", key=attacker)
        assert_unauthenticated(client.get(ME, headers=bearer(forged)))

    assert issuer.jwks_fetches() == fetched
    clock.advance(UNKNOWN_KID_COOLDOWN)
    forged = issuer.sign(kid="random-x", key=attacker)
    assert_unauthenticated(client.get(ME, headers=bearer(forged)))
    assert issuer.jwks_fetches() == fetched + 1


def test_an_unreachable_issuer_means_401_not_500(
    db: Database, issuer: Issuer, tmp_path: Any
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        log_json=False,
        oidc=OIDCSettings(issuer="http://127.0.0.1:9/realms/gone", audience=AUDIENCE),
    )
    with TestClient(create_app(settings, db=db), raise_server_exceptions=False) as client:
        token = issuer.sign(issuer.claims(iss="http://127.0.0.1:9/realms/gone"))
        assert_unauthenticated(client.get(ME, headers=bearer(token)))


def test_jwks_changes_are_not_needed_for_each_request(
    oidc_client: OidcClientFactory, issuer: Issuer
) -> None:
    client = oidc_client()
    for _ in range(5):
        assert client.get(ME, headers=bearer(issuer.sign())).status_code == 200
    assert issuer.jwks_fetches() == 1


def test_without_an_issuer_only_api_tokens_are_accepted(client: TestClient, issuer: Issuer) -> None:
    assert_unauthenticated(client.get(ME, headers=bearer(issuer.sign())))


def test_an_issuer_without_an_audience_is_refused_at_start(
    db: Database, issuer: Issuer, tmp_path: Any
) -> None:
    settings = Settings(data_dir=tmp_path, oidc=OIDCSettings(issuer=issuer.url))
    with pytest.raises(ValueError, match="audience"):
        create_app(settings, db=db)


def test_a_configured_subject_claim_must_be_present(
    oidc_client: OidcClientFactory, issuer: Issuer
) -> None:
    client = oidc_client(subject_claim="preferred_username")

    named = issuer.sign(issuer.claims(preferred_username="alice.smith"))
    assert client.get(ME, headers=bearer(named)).json()["subject"] == "alice.smith"
    assert_unauthenticated(client.get(ME, headers=bearer(issuer.sign())))


def test_jwks_url_can_be_configured_instead_of_discovery(
    oidc_client: OidcClientFactory, issuer: Issuer
) -> None:
    client = oidc_client(jwks_url=issuer.base + "/realms/ops/protocol/openid-connect/certs")
    assert client.get(ME, headers=bearer(issuer.sign())).status_code == 200
    assert all("openid-configuration" not in path for path in issuer.requests)


def test_expiry_leeway_is_bounded(oidc_client: OidcClientFactory, issuer: Issuer) -> None:
    client = oidc_client(leeway_seconds=0)
    expired_a_minute_ago = issuer.claims(exp=int(time.time()) - 60)
    assert_unauthenticated(client.get(ME, headers=bearer(issuer.sign(expired_a_minute_ago))))
