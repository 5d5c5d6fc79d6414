"""Fixtures of the web UI tests: a client on 127.0.0.1 and local users."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from tenantops.app import create_app
from tenantops.auth.principal import SYSTEM, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.web import service

PASSWORD = "correct horse battery staple"

UserFactory = Callable[..., str]


@pytest.fixture
def web(db: Database, settings: Settings) -> Iterator[TestClient]:
    """A browser-like client on http://127.0.0.1, where the session cookie is not Secure."""
    app = create_app(settings, db=db)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def user(db: Database) -> UserFactory:
    """``user("ann", "admin", tenant=None)`` creates a local user with PASSWORD."""

    def make(username: str, *roles: str, tenant: str | None = None) -> str:
        with db.write() as session:
            service.create_user(
                session,
                actor=SYSTEM,
                username=username,
                password=PASSWORD,
                roles=[Role(r) for r in roles],
                tenant_id=tenant,
            )
        return username

    return make


def login_csrf(client: TestClient) -> str:
    """Open the login page; the CSRF token its form carries."""
    page = client.get("/login")
    assert page.status_code == 200, page.text
    token = client.cookies.get("tenantops_login_csrf")
    assert token
    assert f'value="{token}"' in page.text
    return token


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the form; the CSRF token of the new session."""
    r = client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": login_csrf(client),
            "next": "/",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    value = client.cookies.get("tenantops_session")
    assert value
    return service.csrf_for(value)
