"""Local login, sessions, CSRF and the login throttle, through the pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import SYSTEM, Role
from tenantops.db import Database
from tenantops.errors import Conflict, Unprocessable
from tenantops.web import service
from tenantops.web.login import FAILED_LOGIN
from tenantops.web.models import WebSession
from tenantops.web.pagekit import safe_next
from tests.conftest import Actors, Clock
from tests.factories import tenant_body
from tests.flows import S, tenant_in
from tests.web.conftest import PASSWORD, UserFactory, login_csrf, sign_in


def actions(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.execute(select(AuditEntry.action).order_by(AuditEntry.seq)).scalars())


def test_a_page_without_a_session_sends_to_login_and_back(
    web: TestClient, user: UserFactory
) -> None:
    user("ann", "admin")
    r = web.get("/?tier=gold", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2F%3Ftier%3Dgold"

    r = web.post(
        "/login",
        data={
            "username": "ann",
            "password": PASSWORD,
            "csrf_token": login_csrf(web),
            "next": "/?tier=gold",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/?tier=gold"
    page = web.get("/?tier=gold")
    assert page.status_code == 200
    assert "Tenant KPIs" in page.text


def test_the_session_cookie_is_httponly_lax_and_not_secure_on_local_http(
    web: TestClient, user: UserFactory, db: Database
) -> None:
    user("ann", "admin")
    r = web.post(
        "/login",
        data={"username": "ann", "password": PASSWORD, "csrf_token": login_csrf(web)},
        follow_redirects=False,
    )
    cookie = next(
        v for k, v in r.headers.multi_items() if k == "set-cookie" and "tenantops_session" in v
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie
    value = web.cookies["tenantops_session"]
    with db.read() as session:
        stored = session.execute(select(WebSession.id_hash)).scalars().all()
    # Only the SHA-256 of the cookie value is stored.
    assert stored == [service.hash_session(value)]
    assert value not in stored


def test_the_cookie_is_secure_anywhere_but_local_http(db: Database, settings: object) -> None:
    from tenantops.app import create_app

    with TestClient(create_app(settings, db=db), base_url="https://tenantops.example") as c:  # type: ignore[arg-type]
        with db.write() as session:
            service.create_user(
                session,
                actor=SYSTEM,
                username="ann",
                password=PASSWORD,
                roles=[Role.ADMIN],
                tenant_id=None,
            )
        page = c.get("/login")
        assert "secure" in page.headers["set-cookie"].lower()
        r = c.post(
            "/login",
            data={
                "username": "ann",
                "password": PASSWORD,
                "csrf_token": c.cookies["tenantops_login_csrf"],
            },
            follow_redirects=False,
        )
        assert r.status_code == 303
        session_cookie = next(
            v for k, v in r.headers.multi_items() if k == "set-cookie" and "tenantops_session" in v
        )
        assert "Secure" in session_cookie


def test_a_login_without_the_forms_csrf_token_is_refused(
    web: TestClient, user: UserFactory
) -> None:
    user("ann", "admin")
    login_csrf(web)
    for token in (None, "forged"):
        data = {"username": "ann", "password": PASSWORD}
        if token:
            data["csrf_token"] = token
        r = web.post("/login", data=data, follow_redirects=False)
        assert r.status_code == 403
        assert "tenantops_session" not in web.cookies


def test_wrong_password_and_unknown_user_look_the_same(
    web: TestClient, user: UserFactory, db: Database
) -> None:
    user("ann", "admin")
    answers = []
    for name, password in (("ann", "wrong password!"), ("nobody", PASSWORD)):
        r = web.post(
            "/login",
            data={"username": name, "password": password, "csrf_token": login_csrf(web)},
        )
        assert r.status_code == 401
        answers.append(r.text.replace(web.cookies["tenantops_login_csrf"], "TOKEN"))
    assert FAILED_LOGIN in answers[0]
    assert answers[0] == answers[1]
    assert actions(db).count("user.login_failed") == 2


def test_logout_needs_the_csrf_token_and_ends_the_session(
    web: TestClient, user: UserFactory, db: Database
) -> None:
    user("ann", "admin")
    csrf = sign_in(web, "ann")

    assert web.post("/logout", follow_redirects=False).status_code == 403
    assert web.post("/logout", data={"csrf_token": "x"}, follow_redirects=False).status_code == 403
    # A token with non-ASCII characters is refused like any wrong one (not a 500).
    assert web.post("/logout", data={"csrf_token": "é"}, follow_redirects=False).status_code == 403
    assert web.get("/", follow_redirects=False).status_code == 200

    r = web.post("/logout", headers={"X-CSRF-Token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
    with db.read() as session:
        assert session.execute(select(WebSession)).first() is None
    assert actions(db)[-2:] == ["user.login", "user.logout"]


def test_a_stolen_cookie_value_is_useless_after_logout(web: TestClient, user: UserFactory) -> None:
    user("ann", "admin")
    csrf = sign_in(web, "ann")
    value = web.cookies["tenantops_session"]
    web.post("/logout", data={"csrf_token": csrf})

    web.cookies.set("tenantops_session", value)
    assert web.get("/", follow_redirects=False).status_code == 303


def test_signing_in_again_ends_the_session_the_browser_held(
    web: TestClient, user: UserFactory, db: Database
) -> None:
    user("ann", "admin")
    user("bob", "auditor")
    sign_in(web, "ann")
    earlier = web.cookies["tenantops_session"]
    token = "t" * 43  # the login form's double-submit token: cookie and field agree
    web.cookies.set("tenantops_login_csrf", token)
    again = web.post(
        "/login",
        data={"username": "bob", "password": PASSWORD, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert again.status_code == 303
    assert web.cookies["tenantops_session"] != earlier
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(WebSession)) == 1
    web.cookies.clear()
    web.cookies.set("tenantops_session", earlier)
    assert web.get("/", follow_redirects=False).status_code == 303


def test_a_session_idle_for_eight_hours_is_over(
    web: TestClient, user: UserFactory, clock: Clock
) -> None:
    user("ann", "admin")
    sign_in(web, "ann")
    clock.advance(hours=7, minutes=59)
    assert web.get("/", follow_redirects=False).status_code == 200  # slides the timeout
    clock.advance(hours=7, minutes=59)
    assert web.get("/", follow_redirects=False).status_code == 200
    clock.advance(hours=8, seconds=1)
    assert web.get("/", follow_redirects=False).status_code == 303


def test_failed_logins_back_off_per_username(
    web: TestClient, user: UserFactory, db: Database, clock: Clock
) -> None:
    user("ann", "admin")
    user("bob", "admin")
    for _ in range(service.FREE_FAILURES):
        with db.write() as session:
            assert service.login(session, username="ann", password="wrong-password") is None
    # Now blocked for a moment: even the right password is refused, with the same answer.
    with db.write() as session:
        assert service.login(session, username="ann", password=PASSWORD) is None
    with db.write() as session:
        assert service.login(session, username="bob", password=PASSWORD) is not None
    clock.advance(service.backoff(service.FREE_FAILURES))
    with db.write() as session:
        assert service.login(session, username="ann", password=PASSWORD) is not None
    failed = [a for a in actions(db) if a == "user.login_failed"]
    assert len(failed) == service.FREE_FAILURES + 1


def test_the_backoff_grows_and_is_capped() -> None:
    waits = [service.backoff(n) for n in range(0, 20)]
    assert waits[: service.FREE_FAILURES] == [timedelta(0)] * service.FREE_FAILURES
    assert waits[service.FREE_FAILURES] == timedelta(seconds=1)
    assert waits == sorted(waits)
    assert max(waits) == service.MAX_BACKOFF


def test_a_disabled_user_cannot_sign_in(web: TestClient, user: UserFactory, db: Database) -> None:
    user("ann", "admin")
    from tenantops.web.models import WebUser

    with db.write() as session:
        session.execute(select(WebUser)).scalars().one().disabled = True
    with db.write() as session:
        assert service.login(session, username="ann", password=PASSWORD) is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/", "/"),
        ("/?tier=gold", "/?tier=gold"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_next_is_only_ever_a_path_here(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_users_are_unique_need_roles_and_a_long_password(db: Database) -> None:
    def make(name: str, password: str = PASSWORD, roles: list[Role] | None = None) -> None:
        with db.write() as session:
            service.create_user(
                session,
                actor=SYSTEM,
                username=name,
                password=password,
                roles=[Role.ADMIN] if roles is None else roles,
                tenant_id=None,
            )

    make("ann")
    with pytest.raises(Conflict):
        make("ann")
    with pytest.raises(Unprocessable):
        make("bob", password="short")
    with pytest.raises(Unprocessable):
        make("bob", roles=[])
    with pytest.raises(Unprocessable):
        make("bob", roles=[Role.TENANT_OWNER])
    with pytest.raises(Unprocessable):
        make("has space")


def test_a_quiet_hour_forgets_failures_and_old_rows_are_pruned(
    db: Database, user: UserFactory, clock: Clock
) -> None:
    from tenantops.web.models import LoginThrottle

    user("ann", "admin")
    for name in ("ann", "random-1", "random-2"):
        with db.write() as session:
            assert service.login(session, username=name, password="wrong-password") is None
    clock.advance(hours=2)
    with db.write() as session:
        assert service.login(session, username="random-3", password="wrong-password") is None
    with db.read() as session:
        left = session.execute(select(LoginThrottle.username)).scalars().all()
    assert left == ["random-3"]


def test_concurrent_failures_of_a_new_username_are_all_counted(db: Database) -> None:
    import threading

    from tenantops.web.models import LoginThrottle

    # As many as are free, so none of them meets a backoff another one started.
    barrier = threading.Barrier(service.FREE_FAILURES)
    errors: list[BaseException] = []

    def fail() -> None:
        try:
            barrier.wait()
            with db.write() as session:
                service.login(session, username="mallory", password="wrong-password")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fail) for _ in range(service.FREE_FAILURES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    with db.read() as session:
        row = session.get(LoginThrottle, "mallory")
        assert row is not None
        assert row.failures == service.FREE_FAILURES


def test_a_username_with_a_nul_is_a_refused_login_not_a_500(
    web: TestClient, user: UserFactory
) -> None:
    user("ann", "admin")
    r = web.post(
        "/login",
        data={"username": "an\x00n", "password": "wrong", "csrf_token": login_csrf(web)},
        follow_redirects=False,
    )
    assert r.status_code < 500, r.text
    assert "tenantops_session" not in web.cookies


def test_the_session_reads_the_json_api_but_never_writes_through_it(
    web: TestClient, user: UserFactory, client: TestClient, actors: Actors
) -> None:
    mine = tenant_in(client, actors, S.ACTIVE, name="blue")
    tenant_in(client, actors, S.ACTIVE, name="green")
    user("amy", "account_manager")
    user("olga", "tenant_owner", tenant=mine["id"])
    assert web.get("/api/v1/tenants").status_code == 401  # no session, no token
    sign_in(web, "amy")
    listed = web.get("/api/v1/tenants")
    assert listed.status_code == 200
    assert {t["name"] for t in listed.json()["items"]} == {"blue", "green"}
    # A write with the cookie alone is refused: another site could make the browser send it.
    refused = web.post("/api/v1/tenants", json=tenant_body(name="red"))
    assert refused.status_code == 401
    assert web.get("/api/v1/tenants/red").status_code == 404

    web.cookies.clear()
    sign_in(web, "olga")
    assert [t["name"] for t in web.get("/api/v1/tenants").json()["items"]] == ["blue"]
    assert web.get("/api/v1/tenants/green").status_code == 404
    assert web.get("/api/v1/audit").status_code == 403  # the role table still applies
