"""Service-account API tokens: minted by the CLI, shown once, stored hashed, scoped, expiring."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import secrets
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from tenantops.auth import tokens
from tenantops.auth.tokens import TOKEN_PREFIX
from tenantops.db import Database
from tests.conftest import CliResult, CliRunner, Clock, TokenFactory
from tests.factories import tenant_body
from tests.flows import problem
from tests.servers import bearer, mint_token

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


def revoke_and_capture(
    cli: CliRunner, caplog: pytest.LogCaptureFixture, ref: str
) -> tuple[CliResult, str]:
    """``tokens revoke REF``, and everything it printed or logged (SQL and its parameters too)."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
        result = cli("tokens", "revoke", ref)
    return result, result.out + result.err + caplog.text


def test_revoke_by_the_whole_token_never_shows_or_stores_it(
    cli: CliRunner, client: TestClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    token = create(cli, "--subject", "ci-bot", "--role", "ops_engineer")
    other = create(cli, "--subject", "other-bot", "--role", "ops_engineer")

    result, seen = revoke_and_capture(cli, caplog, token)

    assert result.code == 0, result.err
    assert result.out == f"revoked {token[:10]} (ci-bot)\n"
    # The statements were logged with their parameters: the lookup sent only the hash.
    assert hashlib.sha256(token.encode()).hexdigest() in caplog.text
    for where in (seen, dump(db)):
        assert token not in where
        assert token[10:] not in where
    problem(client.get(ME, headers=bearer(token)), 401)
    assert client.get(ME, headers=bearer(other)).status_code == 200


@pytest.mark.parametrize("extra", [2, 20], ids=["12-characters", "46-characters"])
def test_revoke_by_a_longer_start_of_the_token(
    cli: CliRunner, client: TestClient, extra: int
) -> None:
    token = create(cli, "--subject", "ci-bot", "--role", "ops_engineer")
    other = create(cli, "--subject", "other-bot", "--role", "ops_engineer")

    result = cli("tokens", "revoke", token[: 10 + extra])

    assert result.code == 0, result.err
    assert result.out == f"revoked {token[:10]} (ci-bot)\n"
    assert token[10 : 10 + extra] not in result.out + result.err
    problem(client.get(ME, headers=bearer(token)), 401)
    assert client.get(ME, headers=bearer(other)).status_code == 200


def test_revoke_reads_the_whole_token_from_stdin_when_told_dash(
    cli: CliRunner, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = create(cli, "--subject", "ci-bot", "--role", "ops_engineer")
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    result = cli("tokens", "revoke", "-")
    assert result.code == 0, result.err
    assert result.out == f"revoked {token[:10]} (ci-bot)\n"
    problem(client.get(ME, headers=bearer(token)), 401)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    empty = cli("tokens", "revoke", "-")
    assert (empty.code, empty.err.strip()) == (1, "error: no token on stdin")


def test_revoke_by_id(cli: CliRunner, client: TestClient, db: Database) -> None:
    token = create(cli, "--subject", "ci-bot", "--role", "ops_engineer")
    with db.read() as session:
        [row] = tokens.list_tokens(session)

    result = cli("tokens", "revoke", row.id)

    assert result.code == 0, result.err
    assert result.out == f"revoked {row.prefix} (ci-bot)\n"
    problem(client.get(ME, headers=bearer(token)), 401)


MADE_UP = TOKEN_PREFIX + secrets.token_urlsafe(32)


@pytest.mark.parametrize(
    ("ref", "shown"),
    [
        pytest.param("tnp_nother", "'tnp_nother'", id="unknown-prefix"),
        pytest.param("tnp_nothere-at-all", "'tnp_nother…'", id="unknown-longer-prefix"),
        pytest.param(MADE_UP, repr(MADE_UP[:10] + "…"), id="made-up-whole-token"),
        pytest.param(MADE_UP[4:], repr(MADE_UP[4:14] + "…"), id="token-without-marker"),
        pytest.param(
            "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "'0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'",
            id="unknown-id",
        ),
        pytest.param("tnp_", "'tnp_'", id="marker-only"),
    ],
)
def test_a_miss_says_what_names_a_token_without_echoing_it(
    cli: CliRunner, client: TestClient, caplog: pytest.LogCaptureFixture, ref: str, shown: str
) -> None:
    kept = create(cli, "--subject", "ci-bot", "--role", "ops_engineer")

    result, seen = revoke_and_capture(cli, caplog, ref)

    assert result.code == 1
    assert result.out == ""
    [line] = result.err.splitlines()
    assert line == (
        f"error: no token {shown}: give the token's id, its prefix as `tokens list` shows it,"
        " or the whole token"
    )
    if len(ref) > 36:  # (most of) a token's value: never repeated, logged or sent to the database
        assert ref[10:] not in seen
    assert client.get(ME, headers=bearer(kept)).status_code == 200


def test_a_whole_token_that_is_no_token_does_not_fall_back_to_its_prefix(
    cli: CliRunner, client: TestClient
) -> None:
    token = create(cli, "--subject", "ci-bot", "--role", "ops_engineer")
    typo = token[:-1] + ("A" if token[-1] != "A" else "B")

    result = cli("tokens", "revoke", typo)

    assert result.code == 1
    assert "no token 'tnp_" in result.err
    assert client.get(ME, headers=bearer(token)).status_code == 200


def test_a_prefix_two_tokens_share_revokes_neither(
    cli: CliRunner, client: TestClient, db: Database
) -> None:
    first = create(cli, "--subject", "one", "--role", "qa")
    second = create(cli, "--subject", "two", "--role", "qa")
    with db.engine.begin() as conn:  # 36 random bits rarely collide; make them
        conn.execute(text("UPDATE api_tokens SET prefix = :p"), {"p": first[:10]})

    for ref in (first[:10], first[:12]):
        result = cli("tokens", "revoke", ref)
        assert result.code == 1
        [line] = result.err.splitlines()
        assert "2 tokens start with" in line
        assert "id" in line
    for token in (first, second):
        assert client.get(ME, headers=bearer(token)).status_code == 200
    # The whole token, found by its hash, is never ambiguous.
    assert cli("tokens", "revoke", second).out == f"revoked {first[:10]} (two)\n"
    problem(client.get(ME, headers=bearer(second)), 401)
    assert client.get(ME, headers=bearer(first)).status_code == 200


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


GONE_TENANT = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def listed_rows(cli: CliRunner) -> dict[str, dict[str, str]]:
    """``tokens list`` as {subject: {column: cell}}."""
    result = cli("tokens", "list")
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if "│" in line or "┃" in line]
    header, *rows = [[cell.strip() for cell in re.split("[│┃]", line)[1:-1]] for line in lines]
    return {row[header.index("subject")]: dict(zip(header, row, strict=True)) for row in rows}


def test_list_shows_whether_each_token_works_and_its_tenant_by_name(
    cli: CliRunner, client: TestClient, auth: TokenFactory, db: Database, clock: Clock
) -> None:
    am = auth("amy", "account_manager")
    assert client.post("/api/v1/tenants", json=tenant_body(name="blue"), headers=am).is_success
    create(cli, "--subject", "blue-bot", "--role", "ops_engineer", "--tenant", "blue")
    create(cli, "--subject", "short-bot", "--role", "qa", "--ttl", "1h")
    revoked = create(cli, "--subject", "revoked-bot", "--role", "qa", "--ttl", "1h")
    assert cli("tokens", "revoke", revoked).code == 0
    mint_token(db, "orphan-bot", "ops_engineer", tenant=GONE_TENANT)

    before = listed_rows(cli)
    clock.advance(timedelta(hours=1))
    after = listed_rows(cli)

    assert {s: r["status"] for s, r in before.items()} == {
        "amy": "active",
        "blue-bot": "active",
        "short-bot": "active",
        "revoked-bot": "revoked",
        "orphan-bot": "active",
    }
    assert {s: r["status"] for s, r in after.items()} == {
        "amy": "active",
        "blue-bot": "active",
        "short-bot": "expired",
        "revoked-bot": "revoked",  # revoked before it expired: revoked says more
        "orphan-bot": "active",
    }
    # By name, as --tenant takes it; by id when no tenant has that id any more.
    assert {s: r["tenant"] for s, r in after.items()} == {
        "amy": "-",
        "blue-bot": "blue",
        "short-bot": "-",
        "revoked-bot": "-",
        "orphan-bot": GONE_TENANT,
    }
