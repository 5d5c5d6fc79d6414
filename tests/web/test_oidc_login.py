"""Sign-in through a real OIDC provider (node-oidc-provider on 127.0.0.1), code + PKCE.

The provider checks PKCE, the code's single use and the client itself; these
tests change what the browser carries (state, the authorize URL's challenge or
nonce, a replayed callback) and assert that no session opens and the login page
says why.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from tenantops.app import create_app
from tenantops.audit.models import AuditEntry
from tenantops.config import OIDCSettings, Settings
from tenantops.db import Database
from tenantops.web import service
from tenantops.web.models import WebSession, WebUser
from tests.conftest import Actors
from tests.flows import request_tenant
from tests.oidc_provider import Provider, run_provider
from tests.servers import free_port
from tests.web.conftest import PASSWORD, UserFactory, sign_in

APP = "http://127.0.0.1"
CALLBACK = f"{APP}/login/oidc/callback"
SESSION = "tenantops_session"
FLOW = "tenantops_oidc"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    with run_provider([CALLBACK], tmp_path_factory.mktemp("oidc") / "provider.log") as p:
        yield p


def sso_settings(settings: Settings, issuer: str, **web: object) -> Settings:
    return settings.model_copy(
        update={
            "oidc": OIDCSettings(issuer=issuer, audience="tenantops-api"),
            "web": settings.web.model_copy(
                update={
                    "oidc_client_id": "tenantops-web",
                    "oidc_client_secret": SecretStr("test-client-secret"),
                    "oidc_scopes": "openid profile tenantops",
                    "oidc_display_name": "Test IdP",
                    **web,
                }
            ),
        }
    )


@pytest.fixture
def sso(db: Database, settings: Settings, provider: Provider) -> Iterator[TestClient]:
    """The ``web`` client of an app whose login page offers the provider."""
    app = create_app(sso_settings(settings, provider.url), db=db)
    with TestClient(app, base_url=APP, raise_server_exceptions=False) as c:
        yield c


def start(client: TestClient, next: str = "/") -> str:
    """Press 'Sign in with …': the provider's authorize URL the browser is sent to."""
    r = client.get("/login/oidc", params={"next": next}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert client.cookies.get(FLOW)
    return r.headers["location"]


def back(client: TestClient, callback_url: str) -> httpx.Response:
    assert callback_url.startswith(CALLBACK), callback_url
    return client.get(callback_url[len(APP) :], follow_redirects=False)


def with_param(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def sessions(db: Database) -> int:
    with db.read() as s:
        return int(s.execute(select(func.count()).select_from(WebSession)).scalar_one())


def audit_actions(db: Database) -> list[tuple[str, dict[str, object]]]:
    with db.read() as s:
        rows = s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars().all()
        return [(r.action, dict(r.detail)) for r in rows]


def refused(r: httpx.Response, status: int, message: str, client: TestClient) -> None:
    """The login page with ``message``, and no session cookie."""
    assert r.status_code == status, r.text
    assert message in r.text
    assert 'action="/login"' in r.text, "the login page is shown"
    assert not client.cookies.get(SESSION)


# --- the whole flow ------------------------------------------------------------------


def test_the_login_page_offers_the_provider_only_when_configured(
    sso: TestClient, web: TestClient
) -> None:
    page = sso.get("/login", params={"next": "/runs?state=a&b"}).text
    assert 'href="/login/oidc?next=/runs%3Fstate%3Da%26b"' in page
    assert "Sign in with Test IdP" in page
    assert 'name="password"' in page, "the local form stays"
    assert "Sign in with" not in web.get("/login").text


def test_sign_in_opens_a_session_with_the_roles_of_the_claims(
    sso: TestClient, provider: Provider, db: Database
) -> None:
    provider.account("gwen", roles=["governance", "auditor", "no-such-role"], name="Gwen")
    r = back(sso, provider.sign_in(start(sso, next="/runs?state=running"), "gwen"))
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/runs?state=running"
    value = sso.cookies.get(SESSION)
    assert value
    assert not sso.cookies.get(FLOW), "the flow cookie is spent"
    with db.write() as s:
        principal = service.resume(s, value)
        user = s.execute(select(WebUser).where(WebUser.username == "gwen")).scalar_one()
        assert user.password_hash is None
        assert user.oidc_issuer == provider.url
    assert principal is not None
    assert principal.subject == "gwen"
    assert principal.role_names() == ["auditor", "governance"]
    assert principal.tenant is None
    assert "gwen (auditor, governance)" in sso.get("/").text
    login = [d for a, d in audit_actions(db) if a == "user.login"]
    assert login == [
        {"username": "gwen", "issuer": provider.url, "roles": ["auditor", "governance"]}
    ]


def test_roles_follow_the_provider_at_every_sign_in(
    sso: TestClient, provider: Provider, db: Database
) -> None:
    provider.account("rita", roles=["admin"])
    assert back(sso, provider.sign_in(start(sso), "rita")).status_code == 303
    provider.account("rita", roles=["qa"])
    sso.cookies.clear()
    assert back(sso, provider.sign_in(start(sso), "rita")).status_code == 303
    with db.read() as s:
        user = s.execute(select(WebUser).where(WebUser.username == "rita")).scalar_one()
        assert user.roles == ["qa"]
    assert "rita (qa)" in sso.get("/").text


def test_a_tenant_owner_is_scoped_to_the_tenant_of_the_claim(
    sso: TestClient, provider: Provider, actors: Actors, db: Database
) -> None:
    mine = request_tenant(sso, actors.am, name="alpha")
    request_tenant(sso, actors.am, name="beta")
    provider.account("olga", roles=["tenant_owner"], tenant=mine["id"])
    assert back(sso, provider.sign_in(start(sso), "olga")).status_code == 303
    page = sso.get("/").text
    assert re.findall(r'<tr data-tenant="([^"]+)">', page) == ["alpha"]
    assert "beta" not in page
    with db.write() as s:
        principal = service.resume(s, sso.cookies[SESSION])
    assert principal is not None
    assert principal.tenant == mine["id"]


def test_a_tenant_claim_may_name_the_tenant_and_the_user_keeps_its_id(
    sso: TestClient, provider: Provider, actors: Actors, db: Database
) -> None:
    long_name = "a-tenant-whose-name-is-longer-than-an-id-x"  # 42 characters > String(36)
    mine = request_tenant(sso, actors.am, name=long_name)
    provider.account("olga", roles=["tenant_owner"], tenant=long_name)
    assert back(sso, provider.sign_in(start(sso), "olga")).status_code == 303
    with db.write() as s:
        principal = service.resume(s, sso.cookies[SESSION])
    assert principal is not None
    assert principal.tenant == mine["id"]

    sso.cookies.clear()
    provider.account("otto", roles=["tenant_owner"], tenant="no-such-tenant")
    refused(back(sso, provider.sign_in(start(sso), "otto")), 403, "does not know", sso)
    failed = [d for a, d in audit_actions(db) if a == "user.login_failed"]
    assert failed[-1]["reason"] == "unknown tenant"


def test_a_tenant_owner_without_a_tenant_claim_gets_no_session(
    sso: TestClient, provider: Provider, db: Database
) -> None:
    provider.account("tom", roles=["tenant_owner"])
    r = back(sso, provider.sign_in(start(sso), "tom"))
    refused(r, 403, "grants no tenantops role", sso)
    assert sessions(db) == 0
    failed = [d for a, d in audit_actions(db) if a == "user.login_failed"]
    assert failed == [{"username": "tom", "issuer": provider.url, "reason": "no tenantops role"}]


def test_the_name_of_a_local_user_is_not_taken_over(
    sso: TestClient, provider: Provider, db: Database, user: UserFactory
) -> None:
    user("root", "admin")
    provider.account("root", roles=["admin"])
    refused(back(sso, provider.sign_in(start(sso), "root")), 403, "signs in another way", sso)
    assert sessions(db) == 0
    # ... and the local one still signs in with the password.
    sign_in(sso, "root", PASSWORD)


def test_an_oidc_user_has_no_password_to_sign_in_with(
    sso: TestClient, provider: Provider, db: Database
) -> None:
    provider.account("pia", roles=["ops_engineer"])
    assert back(sso, provider.sign_in(start(sso), "pia")).status_code == 303
    sso.cookies.clear()
    page = sso.get("/login")
    r = sso.post(
        "/login",
        data={"username": "pia", "password": "", "csrf_token": sso.cookies["tenantops_login_csrf"]},
        follow_redirects=False,
    )
    assert r.status_code == 401, page.text
    assert not sso.cookies.get(SESSION)


# --- refusals ---------------------------------------------------------------------------


def test_a_wrong_state_is_refused(sso: TestClient, provider: Provider, db: Database) -> None:
    provider.account("sam", roles=["admin"])
    callback = provider.sign_in(start(sso), "sam")
    forged = with_param(callback, state="someone-elses-state")
    refused(back(sso, forged), 400, "expired or was started in another browser", sso)
    assert sessions(db) == 0


def test_a_callback_in_a_browser_that_did_not_start_it_is_refused(
    sso: TestClient, provider: Provider, db: Database
) -> None:
    provider.account("sam", roles=["admin"])
    callback = provider.sign_in(start(sso), "sam")
    sso.cookies.delete(FLOW, path="/login/oidc")
    sso.cookies.clear()
    refused(back(sso, callback), 400, "expired or was started in another browser", sso)
    assert sessions(db) == 0


def test_a_wrong_code_verifier_is_refused_by_the_provider(
    sso: TestClient, provider: Provider, db: Database
) -> None:
    provider.account("vic", roles=["admin"])
    # The code is bound to another challenge: the verifier tenantops sends does not match.
    authorize = with_param(start(sso), code_challenge="A" * 43)
    r = back(sso, provider.sign_in(authorize, "vic"))
    refused(r, 401, "was not accepted: the code was not accepted (invalid_grant)", sso)
    assert sessions(db) == 0


def test_a_verifier_changed_in_the_browser_is_refused_by_the_provider(
    sso: TestClient, provider: Provider, db: Database
) -> None:
    provider.account("val", roles=["admin"])
    authorize = start(sso)
    raw = sso.cookies[FLOW]
    flow = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    flow["verifier"] = "x" * 86
    forged = base64.urlsafe_b64encode(json.dumps(flow).encode()).rstrip(b"=").decode()
    sso.cookies.set(FLOW, forged, domain="127.0.0.1", path="/login/oidc")
    r = back(sso, provider.sign_in(authorize, "val"))
    refused(r, 401, "the code was not accepted (invalid_grant)", sso)
    assert sessions(db) == 0


def test_a_nonce_mismatch_is_refused(sso: TestClient, provider: Provider, db: Database) -> None:
    provider.account("nia", roles=["admin"])
    authorize = with_param(start(sso), nonce="a-nonce-of-another-sign-in")
    r = back(sso, provider.sign_in(authorize, "nia"))
    refused(r, 401, "issued for another sign-in (nonce)", sso)
    assert sessions(db) == 0


def test_a_replayed_callback_is_refused(sso: TestClient, provider: Provider, db: Database) -> None:
    provider.account("rex", roles=["admin"])
    # One sign-in, completed.
    authorize = start(sso)
    flow_cookie = sso.cookies[FLOW]
    callback = provider.sign_in(authorize, "rex")
    assert back(sso, callback).status_code == 303
    assert sessions(db) == 1
    # The same answer again, in the same browser: the flow is spent.
    sso.cookies.clear()
    refused(back(sso, callback), 400, "expired or was started in another browser", sso)
    # ... and with the flow cookie copied back: the provider refuses the used code.
    sso.cookies.set(FLOW, flow_cookie, domain="127.0.0.1", path="/login/oidc")
    refused(back(sso, callback), 401, "invalid_grant", sso)
    assert sessions(db) == 1


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_next_never_leaves_the_site(sso: TestClient, provider: Provider, target: str) -> None:
    provider.account("ned", roles=["qa"])
    r = back(sso, provider.sign_in(start(sso, next=target), "ned"))
    assert r.status_code == 303
    assert r.headers["location"] == "/"


def test_consent_denied_at_the_provider(sso: TestClient, provider: Provider, db: Database) -> None:
    provider.account("dee", roles=["admin"])
    callback = provider.sign_in(start(sso), "dee", consent=False)
    assert "error=access_denied" in callback
    refused(back(sso, callback), 401, "The sign-in was cancelled at Test IdP.", sso)
    assert sessions(db) == 0


def test_an_unreachable_issuer_shows_the_login_page(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    app = create_app(sso_settings(settings, down), db=db)
    with TestClient(app, base_url=APP, raise_server_exceptions=False) as client:
        r = client.get("/login/oidc", params={"next": "/runs"}, follow_redirects=False)
        refused(r, 503, "Test IdP cannot be reached just now", client)
        assert not client.cookies.get(FLOW)
        assert 'value="/runs"' in r.text, "next is kept for the local form"
        # A callback arriving while the issuer is down opens nothing either.
        r = client.get("/login/oidc/callback", params={"state": "x", "code": "y"})
        refused(r, 400, "expired", client)
    assert sessions(db) == 0


def test_not_configured_is_a_404_page(web: TestClient) -> None:
    r = web.get("/login/oidc", follow_redirects=False)
    assert r.status_code == 404
    assert "not set up" in r.text
    assert web.get("/login/oidc/callback?state=x&code=y").status_code == 404
