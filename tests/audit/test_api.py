"""``GET /api/v1/audit``: filters, paging, who may read it, and what it never contains."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient

from tenantops.auth.principal import Role
from tenantops.auth.tokens import TOKEN_PREFIX
from tenantops.db import Database
from tenantops.logs import configure_logging
from tests.audit.helpers import entries
from tests.conftest import Actors, CliRunner, Headers, TokenFactory
from tests.flows import approve, request_tenant

Freeze = Callable[[datetime], None]
T1 = datetime(2031, 5, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2031, 5, 2, 9, 0, tzinfo=UTC)
T3 = datetime(2031, 5, 3, 9, 0, tzinfo=UTC)


def read(client: TestClient, headers: Headers, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/audit", params=params, headers=headers)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    assert page["next_after"] is None, "use read_all for more than one page"
    items: list[dict[str, Any]] = page["items"]
    return items


def read_all(client: TestClient, headers: Headers, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = None
    while True:
        query = {**params, **({"after": after} if after is not None else {})}
        r = client.get("/api/v1/audit", params=query, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= params.get("limit", 100)
        items += page["items"]
        if page["next_after"] is None:
            return items
        assert page["next_after"] == page["items"][-1]["seq"]
        after = page["next_after"]


@pytest.fixture
def two_tenants(client: TestClient, actors: Actors, fake_clock: Freeze) -> tuple[str, str]:
    """Tenant A requested and approved by governance on day 1; tenant B on day 2."""
    fake_clock(T1)
    a = request_tenant(client, actors.am)["id"]
    approve(client, a, "governance", actors.gov)
    fake_clock(T2)
    b = request_tenant(client, actors.admin)["id"]
    approve(client, b, "security", actors.sec)
    fake_clock(T3)
    return a, b


def test_filters(
    db: Database, client: TestClient, actors: Actors, two_tenants: tuple[str, str]
) -> None:
    a, b = two_tenants
    everything = read(client, actors.auditor)
    assert [e["seq"] for e in everything] == [e.seq for e in entries(db)]

    def pick(**params: Any) -> list[tuple[str, str | None]]:
        return [(e["action"], e["tenant_id"]) for e in read(client, actors.auditor, **params)]

    assert pick(tenant_id=a) == [("tenant.requested", a), ("tenant.approval.recorded", a)]
    assert pick(tenant_id=b) == [("tenant.requested", b), ("tenant.approval.recorded", b)]
    assert pick(actor="root") == [("tenant.requested", b)]
    assert pick(actor="gus", tenant_id=a) == [("tenant.approval.recorded", a)]
    assert pick(actor="gus", tenant_id=b) == []
    assert pick(action="tenant.requested") == [("tenant.requested", a), ("tenant.requested", b)]
    assert [e["actor"] for e in read(client, actors.auditor, action="token.created")] == [
        "system:tenantops"
    ] * 7
    assert pick(tenant_id="no-such-tenant") == []

    # Time windows: since is inclusive, until exclusive.
    assert pick(since=T1.isoformat(), until=T2.isoformat()) == [
        ("tenant.requested", a),
        ("tenant.approval.recorded", a),
    ]
    assert pick(since=T2.isoformat()) == [
        ("tenant.requested", b),
        ("tenant.approval.recorded", b),
    ]
    assert pick(since=T3.isoformat()) == []
    assert len(pick(until=T1.isoformat())) == 7  # the tokens, on the wall clock


def test_time_filters_mean_the_same_instant_in_any_offset(
    client: TestClient, actors: Actors, two_tenants: tuple[str, str]
) -> None:
    a, b = two_tenants
    cest = timezone(timedelta(hours=2))
    # 2031-05-02 11:00+02:00 is T2; a naive time is UTC.
    for since in (T2.astimezone(cest).isoformat(), T2.replace(tzinfo=None).isoformat()):
        items = read(client, actors.auditor, since=since)
        assert [e["tenant_id"] for e in items] == [b, b], since
    until = (T2 - timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=-7)))
    items = read(client, actors.auditor, since=T1.isoformat(), until=until.isoformat())
    assert [e["tenant_id"] for e in items] == [a, a]


def test_entries_show_their_chain_and_time_in_utc(
    client: TestClient, actors: Actors, two_tenants: tuple[str, str]
) -> None:
    a, _ = two_tenants
    first, second = read(client, actors.auditor, tenant_id=a)
    assert datetime.fromisoformat(first["at"]) == T1
    assert second["prev_hash"] == first["hash"]
    assert second["seq"] == first["seq"] + 1
    assert first["actor_roles"] == ["account_manager"]
    assert first["request_id"]


def test_paging_with_after_and_next_after(
    db: Database, client: TestClient, actors: Actors, two_tenants: tuple[str, str]
) -> None:
    a, _ = two_tenants
    all_seqs = [e.seq for e in entries(db)]
    assert len(all_seqs) == 11

    for limit in (1, 2, 3, 5, 11, 500):
        got = [e["seq"] for e in read_all(client, actors.auditor, limit=limit)]
        assert got == all_seqs, limit

    # The first page of 4, then everything after its last entry.
    r = client.get("/api/v1/audit", params={"limit": 4}, headers=actors.auditor).json()
    assert [e["seq"] for e in r["items"]] == all_seqs[:4]
    assert r["next_after"] == all_seqs[3]
    rest = read(client, actors.auditor, after=r["next_after"])
    assert [e["seq"] for e in rest] == all_seqs[4:]

    # Paging combines with filters.
    got = read_all(client, actors.auditor, limit=1, action="token.created")
    assert [e["seq"] for e in got] == all_seqs[:7]
    got = read_all(client, actors.auditor, limit=1, tenant_id=a)
    assert [e["tenant_id"] for e in got] == [a, a]

    assert read(client, actors.auditor, after=all_seqs[-1]) == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"after": -1},
        {"since": "yesterday"},
        {"until": "2031-13-01"},
        {"tenant_id": "x" * 37},
    ],
)
def test_bad_query_is_a_422_problem(
    client: TestClient, actors: Actors, params: dict[str, Any]
) -> None:
    r = client.get("/api/v1/audit", params=params, headers=actors.auditor)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 422


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_only_auditors_and_admins_read_the_trail(
    client: TestClient, auth: TokenFactory, role: Role
) -> None:
    tenant = "some-tenant" if role is Role.TENANT_OWNER else None
    headers = auth(f"who-{role.value}", role.value, tenant=tenant)
    r = client.get("/api/v1/audit", headers=headers)
    if role in (Role.AUDITOR, Role.ADMIN):
        assert r.status_code == 200, r.text
        assert r.json()["items"]
    else:
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "auditor" in r.json()["detail"]
        assert "items" not in r.json()


def test_reading_needs_a_valid_token(client: TestClient) -> None:
    for headers in ({}, {"Authorization": f"Bearer {TOKEN_PREFIX}{secrets.token_urlsafe(32)}"}):
        r = client.get("/api/v1/audit", headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["content-type"].startswith("application/problem+json")


def test_token_values_never_reach_the_trail_or_the_logs(
    db: Database,
    client: TestClient,
    auth: TokenFactory,
    cli: CliRunner,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    configure_logging("DEBUG", json=True)  # the server's logging, writing to captured stderr
    try:
        cli_tokens = []
        for argv in (
            ("--subject", "robot", "--role", "admin", "--ttl", "8h"),
            ("--subject", "watcher", "--role", "auditor"),
            ("--subject", "ci", "--role", "account_manager"),
        ):
            result = cli("tokens", "create", *argv)
            assert result.code == 0, result.err
            value = result.out.strip().splitlines()[-1]
            assert value.startswith(TOKEN_PREFIX)
            cli_tokens.append(value)
            assert value not in result.err
        admin, auditor, ci = ({"Authorization": f"Bearer {v}"} for v in cli_tokens)
        fixture_headers = auth("amy", "account_manager")
        fixture_token = fixture_headers["Authorization"].removeprefix("Bearer ")

        tid = request_tenant(client, ci)["id"]
        request_tenant(client, fixture_headers)
        assert client.get("/api/v1/me", headers=admin).status_code == 200
        assert client.get("/api/v1/audit", headers=ci).status_code == 403
        owner = cli("tokens", "create", "--subject", "o", "--role", "tenant_owner", "--tenant", tid)
        assert owner.code == 0, owner.err
        cli_tokens.append(owner.out.strip().splitlines()[-1])

        # A revoked token, and a made-up one, are refused without echoing them.
        revoked = cli("tokens", "revoke", cli_tokens[2][: len(TOKEN_PREFIX) + 6])
        assert revoked.code == 0, revoked.err
        made_up = TOKEN_PREFIX + secrets.token_urlsafe(32)
        for value in (cli_tokens[2], made_up):
            r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {value}"})
            assert r.status_code == 401
            assert value not in r.text
        listed = cli("tokens", "list")
        assert listed.code == 0, listed.err

        trail_json = client.get("/api/v1/audit", params={"limit": 500}, headers=auditor).text
        server_log = capsys.readouterr().err
    finally:
        structlog.reset_defaults()

    stored = repr([e.__dict__ for e in entries(db)])
    assert "token.created" in trail_json
    assert "token.revoked" in trail_json
    assert '"event": "request"' in server_log  # the server's request log was captured
    cli_output = listed.out + listed.err + revoked.out + revoked.err + owner.err
    for value in [*cli_tokens, fixture_token, made_up]:
        # The whole value, and the part never shown (after the listed prefix).
        secret_part = value[len(TOKEN_PREFIX) + 6 :]
        for text in (trail_json, stored, server_log, caplog.text, cli_output):
            assert value not in text
            assert secret_part not in text
