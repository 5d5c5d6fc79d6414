"""The first web admin: made and printed once when ``serve`` first starts without users."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.auth.principal import SYSTEM
from tenantops.config import OIDCSettings, Settings
from tenantops.db import Database
from tenantops.web import bootstrap
from tenantops.web.models import WebUser
from tests.conftest import CliRunner
from tests.servers import serve_process, tenantops_env
from tests.web.conftest import PASSWORD, UserFactory, sign_in

BLOCK = re.compile(r"username:\s+admin\n\s+password:\s+(\S+)\n\s+sign in:\s+(\S+)\n")


def announce(db: Database, settings: Settings, capsys: pytest.CaptureFixture[str]) -> str:
    """``serve``'s first-start step; what it printed to stdout (stderr must stay empty)."""
    bootstrap.announce_first_admin(db, settings, actor=SYSTEM)
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_the_first_start_prints_an_admin_whose_password_signs_in(
    db: Database, settings: Settings, web: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    wildcard = settings.model_copy(update={"host": "0.0.0.0", "port": 8123})  # noqa: S104
    out = announce(db, wildcard, capsys)
    found = BLOCK.search(out)
    assert found, out
    password, url = found.groups()
    assert url == "http://127.0.0.1:8123/login"
    assert "shown once" in out
    assert "tenantops users create-admin" in out
    assert out.count(password) == 1
    with db.read() as s:
        admin = s.execute(select(WebUser)).scalar_one()
        assert admin.username == "admin"
        assert admin.roles == ["admin"]
        assert admin.password_hash is not None
        assert admin.password_hash.startswith("scrypt$")
        assert password not in admin.password_hash
    sign_in(web, "admin", password)
    assert "admin (admin)" in web.get("/").text


def test_the_second_start_prints_nothing(
    db: Database, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert BLOCK.search(announce(db, settings, capsys))
    assert announce(db, settings, capsys) == ""
    with db.write() as s:
        # Even with every user gone, the first start is over.
        s.query(WebUser).delete()
    assert announce(db, settings, capsys) == ""


def test_a_database_with_users_gets_no_first_admin_now_or_later(
    db: Database, settings: Settings, user: UserFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    user("root", "admin")
    assert announce(db, settings, capsys) == ""
    with db.write() as s:
        s.query(WebUser).delete()
    assert announce(db, settings, capsys) == ""


def test_none_when_turned_off_or_when_the_web_signs_in_through_oidc(
    db: Database, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert announce(db, settings.model_copy(update={"bootstrap_admin": False}), capsys) == ""
    sso = settings.model_copy(
        update={
            "oidc": OIDCSettings(issuer="https://idp.example/realms/x", audience="api"),
            "web": settings.web.model_copy(update={"oidc_client_id": "tenantops-web"}),
        }
    )
    assert announce(db, sso, capsys) == ""
    with db.read() as s:
        assert s.execute(select(WebUser)).first() is None
    # Neither counted as the first start: without them the admin is made.
    assert BLOCK.search(announce(db, settings, capsys))


def test_create_admin_keeps_working_after_the_first_start(
    db: Database,
    settings: Settings,
    cli: CliRunner,
    web: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert BLOCK.search(announce(db, settings, capsys))
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    done = cli("users", "create-admin", "root", "--password-stdin")
    assert done.code == 0, done.err
    sign_in(web, "root")


@pytest.mark.slow
def test_serve_prints_the_block_once_and_never_logs_the_password(
    db: Database, tmp_path: Path
) -> None:
    env = tenantops_env(
        database_url=db.url,
        data_dir=str(tmp_path / "data"),
        worker__in_process="false",
        events__relay="false",
        log_json="true",
    )
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    with serve_process(env, first) as url:
        found = BLOCK.search(first.read_text())
        assert found, first.read_text()
        password = found.group(1)
        with httpx.Client(base_url=url, follow_redirects=True) as browser:
            page = browser.get("/login")
            token = browser.cookies["tenantops_login_csrf"]
            r = browser.post(
                "/login",
                data={"username": "admin", "password": password, "csrf_token": token, "next": "/"},
            )
            assert page.status_code == 200
            assert r.status_code == 200, r.text
            assert "admin (admin)" in r.text
    text = first.read_text()
    assert text.count(password) == 1, "printed once, in the block; never in a log line"
    assert text.count("first web admin") == 1
    with serve_process(env, second):
        pass
    assert "first web admin" not in second.read_text()
