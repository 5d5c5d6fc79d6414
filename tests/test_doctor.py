"""``tenantops doctor``: a table of what is configured and reachable; non-zero when one fails."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.migrations import upgrade
from tenantops.runbooks import spec, windows
from tests.conftest import invoke
from tests.servers import HOST, free_port


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean TENANTOPS_* environment with its data dir in ``tmp_path``."""
    import os

    for key in list(os.environ):
        if key.startswith("TENANTOPS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TENANTOPS_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


def findings(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, list[dict[str, str]]]]:
    result = invoke(capsys, "doctor", "--json")
    by_check: dict[str, list[dict[str, str]]] = {}
    for f in json.loads(result.out):
        by_check.setdefault(f["check"], []).append(f)
    return result.code, by_check


def test_the_embedded_default_passes_and_changes_nothing(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, found = findings(capsys)
    assert code == 0
    assert {f["status"] for fs in found.values() for f in fs} <= {"ok", "skip"}
    assert "made by the first `tenantops serve`" in found["database"][0]["detail"]
    assert not (tmp_path / "data").exists()  # a probe never creates anything

    table = invoke(capsys, "doctor")
    assert table.code == 0
    assert "all checks pass" in table.out


def test_each_failure_is_named_with_its_fix_and_no_secret(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = free_port()
    env.setenv("TENANTOPS_SMTP__HOST", "127.0.0.1")
    env.setenv("TENANTOPS_SMTP__PORT", str(closed))
    env.setenv("TENANTOPS_SMTP__PASSWORD", "smtp-hunter2")
    env.setenv("TENANTOPS_SMTP__USERNAME", "mailer")
    env.setenv("TENANTOPS_EVENTS__BROKER", "nats")
    env.setenv("TENANTOPS_EVENTS__NATS_URL", f"nats://127.0.0.1:{closed}")
    env.setenv("TENANTOPS_EVENTS__PUBLISH_TIMEOUT_SECONDS", "1")
    env.setenv("TENANTOPS_NOTIFY__SECURITY", '["security@corp.example", "slack:secops"]')
    env.setenv("TENANTOPS_ACCESS__ADAPTER", "redis")
    env.setenv("TENANTOPS_ACCESS__REDIS__URL", f"redis://ops:redis-hunter2@127.0.0.1:{closed}/0")
    env.setenv("TENANTOPS_IDENTITY__ADAPTER", "keycloak")
    env.setenv("TENANTOPS_IDENTITY__KEYCLOAK__SERVER_URL", f"http://127.0.0.1:{closed}")
    env.setenv("TENANTOPS_IDENTITY__KEYCLOAK__REALM", "platform")
    env.setenv("TENANTOPS_IDENTITY__KEYCLOAK__CLIENT_ID", "tenantops")
    env.setenv("TENANTOPS_IDENTITY__KEYCLOAK__CLIENT_SECRET", "kc-hunter2")
    env.setenv("TENANTOPS_SECRETS__ADAPTER", "vault")
    env.setenv("TENANTOPS_SECRETS__VAULT__URL", f"http://127.0.0.1:{closed}")
    env.setenv("TENANTOPS_SECRETS__VAULT__TOKEN", "hvs.vault-hunter2")

    result = invoke(capsys, "doctor", "--json")
    assert result.code == 1
    failed = {f["check"]: f for f in json.loads(result.out) if f["status"] == "fail"}
    assert set(failed) >= {"notify: smtp", "events: nats", "notify: recipients"}
    assert any(check.startswith("access: redis") for check in failed)
    assert any(check.startswith("secrets: ") for check in failed)
    assert any(check.startswith("identity: ") for check in failed)
    assert "TENANTOPS_SMTP__HOST" in failed["notify: smtp"]["fix"]
    assert "slack:secops is not configured" in failed["notify: recipients"]["detail"]
    assert all(f["fix"] for f in failed.values())
    assert "hunter2" not in result.out + result.err

    table = invoke(capsys, "doctor")
    assert table.code == 1
    assert f"{len(failed)} of" in table.out
    assert "hunter2" not in table.out + table.err


def test_the_real_redis_and_nats_pass(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("TENANTOPS_ACCESS__ADAPTER", "redis")
    env.setenv("TENANTOPS_EVENTS__BROKER", "nats")
    env.setenv("TENANTOPS_EVENTS__NATS_STREAM", "DOCTOR_TEST")
    env.setenv("TENANTOPS_EVENTS__NATS_SUBJECT_PREFIX", "doctortest.")
    try:
        code, found = findings(capsys)
    finally:
        asyncio.run(_delete_stream("DOCTOR_TEST"))
    assert code == 0, found
    assert found["events: nats"][0]["status"] == "ok"
    assert all(f["status"] == "ok" for k, fs in found.items() if k.startswith("access") for f in fs)


async def _delete_stream(name: str) -> None:
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


def test_an_outdated_database_says_to_upgrade(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    (tmp_path / "data").mkdir()
    sqlite3.connect(tmp_path / "data" / "tenantops.db").executescript(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL);"
        "INSERT INTO alembic_version VALUES ('0001');"
    )
    code, found = findings(capsys)
    assert code == 1
    [db] = found["database"]
    assert db["status"] == "fail"
    assert "schema at 0001" in db["detail"]
    assert db["fix"] == "run: tenantops db upgrade"


def test_terraform_is_checked_only_when_chosen(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, found = findings(capsys)
    assert [f["status"] for f in found["terraform"]] == ["skip"]
    assert "runbooks use the GitOps path" in found["terraform"][0]["detail"]

    env.setenv("TENANTOPS_TERRAFORM__BINARY", str(tmp_path / "no-such-terraform"))
    code, found = findings(capsys)
    assert code == 1
    failed = [f for k, fs in found.items() if k.startswith("terraform") for f in fs]
    assert failed
    assert failed[0]["status"] == "fail"
    assert "GitOps" in failed[0]["fix"] or "install" in failed[0]["fix"].lower()


def test_a_window_the_library_names_must_be_defined(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = spec.load_library()
    windowed = spec.parse(
        "id: doctor-windowed\nversion: '1.0'\ntitle: W\ntenant: false\nsteps:\n"
        "  - {name: change, action: noop, window: night}\n"
    )
    env.setattr(spec, "load_library", lambda: {**shipped, "doctor-windowed": windowed})

    code, found = findings(capsys)  # no database yet: nothing is defined, and none is made
    assert code == 1
    (row,) = found["maintenance windows"]
    assert (row["status"], row["detail"]) == ("fail", "night: not defined")
    assert "tenantops windows set NAME" in row["fix"]
    assert not (tmp_path / "data").exists()

    db = Database(f"sqlite:///{tmp_path / 'data' / 'tenantops.db'}")
    (tmp_path / "data").mkdir()
    upgrade(db.engine)
    with db.write() as session:
        windows.put_window(
            session,
            principal=Principal("oli", frozenset({Role.OPS_ENGINEER})),
            name="night",
            days=["sat"],
            start="02:00",
            end="06:00",
            timezone="UTC",
        )
    db.dispose()
    _, found = findings(capsys)
    (row,) = found["maintenance windows"]
    assert (row["status"], row["detail"]) == ("ok", "defined: night")


class NoSuchTenant(BaseHTTPRequestHandler):
    """A tenants' health endpoint that knows no tenant: every GET is a 404, and noted."""

    asked: list[str] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        self.send_error(404)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    NoSuchTenant.asked = []
    httpd = ThreadingHTTPServer((HOST, 0), NoSuchTenant)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_built_in_health_probe_is_not_checked(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, found = findings(capsys)
    [row] = found["health"]
    assert row["status"] == "skip"
    assert "built-in probe" in row["detail"]


def test_a_health_url_that_answers_at_all_is_reachable(
    env: pytest.MonkeyPatch, endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("TENANTOPS_HEALTH__BASE_URL", endpoint + "/{tenant}/healthz")

    code, found = findings(capsys)

    assert code == 0, found
    [row] = found["health"]
    assert row["status"] == "ok"
    assert f"{endpoint}/doctor-probe/healthz answers 404" in row["detail"]
    assert NoSuchTenant.asked == ["/doctor-probe/healthz"]  # one real GET, nothing else


def test_a_health_url_nothing_answers_fails_with_its_fix(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("TENANTOPS_HEALTH__BASE_URL", f"http://ops:hunter2@{HOST}:{free_port()}/{{tenant}}")

    code, found = findings(capsys)

    assert code == 1
    [row] = found["health"]
    assert row["status"] == "fail"
    assert "ConnectError" in row["detail"]
    assert "\n" not in row["detail"]
    assert "hunter2" not in row["detail"]
    assert "TENANTOPS_HEALTH__BASE_URL" in row["fix"]


def test_a_health_url_that_never_answers_fails_within_the_health_timeout(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = socket.socket()
    silent.bind((HOST, 0))
    silent.listen()  # connections are accepted by the kernel, and never answered
    try:
        env.setenv(
            "TENANTOPS_HEALTH__BASE_URL", f"http://{HOST}:{silent.getsockname()[1]}/{{tenant}}"
        )
        env.setenv("TENANTOPS_HEALTH__TIMEOUT_SECONDS", "0.2")
        code, found = findings(capsys)
    finally:
        silent.close()

    assert code == 1
    [row] = found["health"]
    assert row["status"] == "fail"
    assert "ReadTimeout" in row["detail"]
    assert "TENANTOPS_HEALTH__BASE_URL" in row["fix"]


def test_a_health_url_without_a_placeholder_fails(
    env: pytest.MonkeyPatch, endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("TENANTOPS_HEALTH__BASE_URL", endpoint + "/healthz")

    code, found = findings(capsys)

    assert code == 1
    [row] = found["health"]
    assert row["status"] == "fail"
    assert "{tenant} placeholder" in row["detail"]
    assert "{tenant}" in row["fix"]
    assert NoSuchTenant.asked == []
