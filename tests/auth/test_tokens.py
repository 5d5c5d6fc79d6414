"""Service-account API tokens: minted by the CLI, shown once, stored hashed, scoped, expiring."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from tenantops.db import Database
from tests.conftest import CliResult, CliRunner, Clock, TokenFactory
from tests.factories import tenant_body
from tests.flows import problem
from tests.servers import bearer

ME = "/api/v1/me"


def create(cli: CliRunner, *args: str) -> str:
    """``tokens create`` that must succeed; returns the printed token."""
    result = cli("tokens", "create", *args)
    assert result.code == 0, result.err
    assert result.err == ""
    lines = result.out.splitlines()
    assert len(lines) == 1, result.out
    return lines[0]


def dump(db: Database) -> str:
    """Every row of every table in the database, as text."""
    parts: list[str] = []
    with db.engine.connect() as conn:
        names = inspect(conn).get_table_names()
        assert "api_tokens" in names
        for name in names:
            for row in conn.execute(text(f'SELECT * FROM "{name}"')):
                parts.append(f"{name}: {tuple(row)!r}")
    return "\n".join(parts)


def count_tokens(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM api_tokens")).scalar_one())


def assert_refused_storing_nothing(result: CliResult, db: Database) -> None:
    """A non-zero exit, nothing on stdout, one line on stderr, and no token stored."""
    assert result.code != 0
    assert result.out == ""
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert count_tokens(db) == 0


def test_create_prints_only_the_token_and_it_works(cli: CliRunner, client: TestClient) -> None:
    result = cli("tokens", "create", "--subject", "ci-bot", "--role", "ops_engineer")

    assert result.code == 0, result.err
    assert result.err == ""
    token = result.out.removesuffix("\n")
    assert result.out == token + "\n"
    assert token.startswith("tnp_")
    assert len(token) >= 40
    assert token.isprintable()
    assert " " not in token

    r = client.get(ME, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "subject": "ci-bot",
        "roles": ["ops_engineer"],
        "tenant": None,
        "via": "token",
    }


def test_repeated_roles_are_all_granted(cli: CliRunner, client: TestClient) -> None:
    token = create(cli, "--subject", "s", "--role", "qa", "--role", "finance")
    assert client.get(ME, headers=bearer(token)).json()["roles"] == ["finance", "qa"]


def test_every_token_is_different(cli: CliRunner) -> None:
    tokens = {create(cli, "--subject", "s", "--role", "qa") for _ in range(5)}
    assert len(tokens) == 5


def test_the_database_holds_only_the_hash(cli: CliRunner, db: Database) -> None:
    token = create(cli, "--subject", "ci-bot", "--role", "admin", "--ttl", "8h")
    secret_part = token.removeprefix("tnp_")[6:]

    everything = dump(db)

    assert token not in everything
    assert secret_part not in everything
    assert hashlib.sha256(token.encode()).hexdigest() in everything
    assert "token.created" in everything  # the audit trail saw the mint, not the value


def test_list_never_shows_token_values(cli: CliRunner) -> None:
    first = create(cli, "--subject", "ci-bot", "--role", "ops_engineer", "--ttl", "8h")
    second = create(cli, "--subject", "auditor-bot", "--role", "auditor")

    result = cli("tokens", "list")

    assert result.code == 0, result.err
    for token in (first, second):
        assert token not in result.out
        assert token.removeprefix("tnp_")[6:] not in result.out
        assert token[:10] in result.out  # the prefix tells them apart
    assert "ci-bot" in result.out
    assert "auditor-bot" in result.out
    assert "never" in result.out  # the second token does not expire


def test_revoked_token_is_refused(cli: CliRunner, client: TestClient, db: Database) -> None:
    token = create(cli, "--subject", "ci-bot", "--role", "ops_engineer")
    assert client.get(ME, headers=bearer(token)).status_code == 200

    result = cli("tokens", "revoke", token[:10])

    assert result.code == 0, result.err
    assert token not in result.out + result.err
    r = client.get(ME, headers=bearer(token))
    problem(r, 401)
    assert token not in dump(db)


def test_revoking_an_unknown_token_is_one_line_and_non_zero(cli: CliRunner) -> None:
    result = cli("tokens", "revoke", "tnp_nothere")
    assert result.code != 0
    assert len(result.err.strip().splitlines()) == 1, result.err


def test_expired_token_is_refused(cli: CliRunner, client: TestClient, clock: Clock) -> None:
    token = create(cli, "--subject", "ci-bot", "--role", "ops_engineer", "--ttl", "8h")

    clock.advance(timedelta(hours=8) - timedelta(seconds=1))
    assert client.get(ME, headers=bearer(token)).status_code == 200
    clock.advance(timedelta(seconds=1))
    problem(client.get(ME, headers=bearer(token)), 401)


def test_tenant_owner_token_is_bound_to_its_tenant(
    cli: CliRunner, client: TestClient, auth: TokenFactory
) -> None:
    am = auth("amy", "account_manager")
    mine = client.post("/api/v1/tenants", json=tenant_body(name="mine"), headers=am).json()
    theirs = client.post("/api/v1/tenants", json=tenant_body(name="theirs"), headers=am).json()

    owner = bearer(create(cli, "--subject", "olga", "--role", "tenant_owner", "--tenant", "mine"))

    assert client.get(ME, headers=owner).json()["tenant"] == mine["id"]
    assert [t["id"] for t in client.get("/api/v1/tenants", headers=owner).json()["items"]] == [
        mine["id"]
    ]
    problem(client.get(f"/api/v1/tenants/{theirs['id']}", headers=owner), 404)


def test_tenant_owner_without_a_tenant_is_refused(cli: CliRunner, db: Database) -> None:
    result = cli("tokens", "create", "--subject", "olga", "--role", "tenant_owner")

    assert_refused_storing_nothing(result, db)
    assert "--tenant" in result.err


def test_unknown_tenant_is_refused(cli: CliRunner, db: Database) -> None:
    result = cli(
        "tokens", "create", "--subject", "olga", "--role", "tenant_owner", "--tenant", "nope"
    )
    assert_refused_storing_nothing(result, db)


@pytest.mark.parametrize(
    "ttl", ["8x", "0h", "-1h", "", "h", "8 hours", "1.5h", "9999999d", "999999w"]
)
def test_bad_ttl_is_one_line_and_non_zero(cli: CliRunner, db: Database, ttl: str) -> None:
    result = cli("tokens", "create", "--subject", "s", "--role", "qa", "--ttl", ttl)

    assert_refused_storing_nothing(result, db)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--subject", "s", "--role", "root"], id="unknown-role"),
        pytest.param(["--subject", "s"], id="no-role"),
        pytest.param(["--role", "qa"], id="no-subject"),
        pytest.param(["--subject", "", "--role", "qa"], id="empty-subject"),
        pytest.param(["--subject", "x" * 201, "--role", "qa"], id="too-long-subject"),
    ],
)
def test_bad_arguments_are_one_line_and_non_zero(
    cli: CliRunner, db: Database, args: list[str]
) -> None:
    result = cli("tokens", "create", *args)

    assert_refused_storing_nothing(result, db)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer tnp_not-a-token"},
        {"Authorization": "Bearer tnp_"},
    ],
    ids=["none", "empty", "bearer-only", "bearer-blank", "basic", "unknown-token", "prefix-only"],
)
def test_no_valid_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    r = client.get("/api/v1/tenants", headers=headers)
    problem(r, 401)
    assert r.json()["type"].endswith("/not-authenticated")


def test_wrong_role_is_403(cli: CliRunner, client: TestClient) -> None:
    finance = bearer(create(cli, "--subject", "fin", "--role", "finance"))

    r = client.post("/api/v1/tenants", json=tenant_body(), headers=finance)

    problem(r, 403)
    assert "account_manager" in r.json()["detail"]
    assert client.get("/api/v1/audit", headers=finance).status_code == 403


def test_a_token_scoped_to_a_tenant_never_sees_another(
    cli: CliRunner, client: TestClient, auth: TokenFactory
) -> None:
    am = auth("amy", "account_manager")
    client.post("/api/v1/tenants", json=tenant_body(name="mine"), headers=am)
    theirs = client.post("/api/v1/tenants", json=tenant_body(name="theirs"), headers=am).json()

    scoped_ops = bearer(create(cli, "--subject", "o", "--role", "ops_engineer", "--tenant", "mine"))

    problem(client.get(f"/api/v1/tenants/{theirs['id']}", headers=scoped_ops), 404)
    names = [t["name"] for t in client.get("/api/v1/tenants", headers=scoped_ops).json()["items"]]
    assert names == ["mine"]
