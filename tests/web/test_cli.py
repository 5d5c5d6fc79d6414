"""``tenantops users``: local web users created from the terminal."""

from __future__ import annotations

import io
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tenantops.audit.models import AuditEntry
from tenantops.db import Database
from tenantops.kit.clock import utcnow
from tenantops.web.models import WebUser
from tests.conftest import CliRunner, TokenFactory
from tests.factories import tenant_body
from tests.web.conftest import PASSWORD, login_csrf, sign_in


def test_create_admin_reads_the_password_from_stdin_and_can_sign_in(
    cli: CliRunner, web: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    done = cli("users", "create-admin", "root", "--password-stdin")
    assert done.code == 0, done.err
    assert done.out == "created user root (admin)\n"
    assert PASSWORD not in done.out + done.err
    sign_in(web, "root")
    assert web.get("/", follow_redirects=False).status_code == 200


def test_a_tenant_owner_is_bound_to_an_existing_tenant(
    cli: CliRunner, client: TestClient, auth: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    am = auth("amy", "account_manager")
    assert client.post("/api/v1/tenants", json=tenant_body(name="blue"), headers=am).is_success
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    done = cli(
        "users", "create", "olga", "--role", "tenant_owner", "--tenant", "blue", "--password-stdin"
    )
    assert done.code == 0, done.err

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    missing = cli("users", "create", "otto", "--role", "tenant_owner", "--password-stdin")
    assert missing.code == 1
    assert "bound to a tenant" in missing.err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    nowhere = cli(
        "users", "create", "otto", "--role", "tenant_owner", "--tenant", "nope", "--password-stdin"
    )
    assert nowhere.code == 1
    assert "no tenant" in nowhere.err
    listed = cli("users", "list")
    assert [line.split("\t")[0] for line in listed.out.splitlines()] == ["olga"]


def test_a_short_password_or_an_empty_stdin_is_refused(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert "12 to 1024" in cli("users", "create-admin", "root", "--password-stdin").err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    empty = cli("users", "create-admin", "root", "--password-stdin")
    assert empty.code == 1
    assert "no password on stdin" in empty.err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))  # a pipe, no terminal
    piped = cli("users", "create-admin", "root")
    assert (piped.code, piped.err.strip()) == (
        1,
        "error: no terminal to type the password at: give it with --password-stdin",
    )
    assert cli("users", "list").out == ""


def test_disable_ends_the_users_open_sessions_and_enable_lets_them_back(
    cli: CliRunner, web: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for admin in ("root", "second"):  # the last admin bound to no tenant is never disabled
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert cli("users", "create-admin", admin, "--password-stdin").code == 0
    sign_in(web, "root")
    assert web.get("/", follow_redirects=False).status_code == 200

    done = cli("users", "disable", "root")
    assert done.code == 0, done.err
    assert done.out == "disabled user root; 1 open session(s) ended\n"
    assert web.get("/", follow_redirects=False).status_code == 303  # signed out at once
    assert "\tdisabled\tlocal" in cli("users", "list").out
    assert web.post("/login", data={"username": "root"}).status_code in (401, 403)

    assert cli("users", "enable", "root").out == "enabled user root\n"
    sign_in(web, "root")
    assert web.get("/", follow_redirects=False).status_code == 200


def test_the_last_admin_is_not_disabled_and_a_repeat_says_so(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    for admin in ("root", "second"):
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert cli("users", "create-admin", admin, "--password-stdin").code == 0
    assert cli("users", "disable", "second").code == 0
    again = cli("users", "disable", "second")
    assert again.out == "user second was disabled already\n"

    last = cli("users", "disable", "root")
    assert last.code == 1
    assert "root is the last enabled admin web user bound to no tenant" in last.err
    assert "\tenabled\tlocal" in cli("users", "list").out.splitlines()[0]


def test_disabling_an_unknown_user_is_a_one_line_error(cli: CliRunner) -> None:
    done = cli("users", "disable", "nobody")
    assert done.code == 1
    assert "no user 'nobody'" in done.err


def test_set_password_ends_the_sessions_and_only_the_new_password_signs_in(
    cli: CliRunner, web: TestClient, monkeypatch: pytest.MonkeyPatch, db: Database
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli("users", "create-admin", "root", "--password-stdin").code == 0
    sign_in(web, "root")
    new = "a-new-and-long-passphrase"

    monkeypatch.setattr("sys.stdin", io.StringIO(new + "\n"))
    done = cli("users", "set-password", "root", "--password-stdin")
    assert done.code == 0, done.err
    assert done.out == "new password set for root; 1 open session(s) ended\n"
    assert web.get("/", follow_redirects=False).status_code == 303  # signed out at once
    old = web.post(
        "/login",
        data={"username": "root", "password": PASSWORD, "csrf_token": login_csrf(web)},
        follow_redirects=False,
    )
    assert old.status_code != 303
    sign_in(web, "root", new)
    assert web.get("/", follow_redirects=False).status_code == 200
    with db.read() as session:
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "user.password_set")
        ).scalar_one()
    assert entry.detail["username"] == "root"
    assert new not in json.dumps([entry.changes, entry.detail])


def test_set_password_refuses_unknown_and_oidc_users_and_short_passwords(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, db: Database
) -> None:
    with db.write() as session:
        session.add(
            WebUser(
                id="u-oidc",
                username="ines",
                password_hash=None,
                oidc_issuer="https://idp.example",
                roles=["qa"],
                tenant_id=None,
                disabled=False,
                created_at=utcnow(),
            )
        )
    for name, password, message in (
        ("nobody", PASSWORD, "no user 'nobody'"),
        ("ines", PASSWORD, "signs in through https://idp.example"),
    ):
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        done = cli("users", "set-password", name, "--password-stdin")
        assert done.code == 1
        assert message in done.err
        assert len(done.err.strip().splitlines()) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli("users", "create-admin", "root", "--password-stdin").code == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert "12 to 1024" in cli("users", "set-password", "root", "--password-stdin").err


def test_set_password_lifts_the_lockout_of_the_old_passwords_guesses(
    cli: CliRunner, web: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli("users", "create-admin", "root", "--password-stdin").code == 0

    def attempt(password: str) -> int:
        data = {"username": "root", "password": password, "csrf_token": login_csrf(web)}
        return web.post("/login", data=data, follow_redirects=False).status_code

    for _ in range(5):
        assert attempt("wrong-guess-of-a-password") != 303
    assert attempt(PASSWORD) != 303  # locked out: even the right password waits

    new = "a-new-and-long-passphrase"
    monkeypatch.setattr("sys.stdin", io.StringIO(new + "\n"))
    assert cli("users", "set-password", "root", "--password-stdin").code == 0
    assert attempt(new) == 303


def test_list_names_each_users_tenant_and_keeps_the_id_of_one_gone(
    cli: CliRunner,
    client: TestClient,
    auth: TokenFactory,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    am = auth("amy", "account_manager")
    assert client.post("/api/v1/tenants", json=tenant_body(name="blue"), headers=am).is_success
    for name in ("olga", "otto"):
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        made = cli(
            "users", "create", name, "--role", "tenant_owner", "--tenant", "blue",
            "--password-stdin",
        )  # fmt: skip
        assert made.code == 0, made.err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli("users", "create-admin", "root", "--password-stdin").code == 0
    gone = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"  # a tenant no longer in the table
    with db.write() as session:
        session.execute(update(WebUser).where(WebUser.username == "otto").values(tenant_id=gone))

    listed = cli("users", "list")

    assert listed.code == 0, listed.err
    assert [line.split("\t")[:3] for line in listed.out.splitlines()] == [
        ["olga", "tenant_owner", "blue"],
        ["otto", "tenant_owner", gone],
        ["root", "admin", "-"],
    ]
