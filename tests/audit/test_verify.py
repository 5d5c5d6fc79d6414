"""``tenantops audit verify`` notices every way the stored trail can be tampered with.

The trail is built through the API; each test then changes the database behind
the application's back — as someone with direct access to it would — and runs
the real CLI against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, delete, event, insert, select, update

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry, AuditHead
from tenantops.auth.principal import SYSTEM
from tenantops.db import Database
from tenantops.kit.clock import utcnow
from tests.audit.conftest import ActiveTenant
from tests.audit.helpers import entries
from tests.conftest import Actors, CliRunner

log = AuditEntry.__table__


@pytest.fixture
def trail(db: Database, client: TestClient, actors: Actors, active_tenant: ActiveTenant) -> int:
    """A trail of real entries (tokens, a tenant's onboarding, a suspension); its length."""
    tenant = active_tenant()
    r = client.post(
        f"/api/v1/tenants/{tenant['id']}/suspend",
        json={"reason": "incident", "incident_ref": "INC1"},
        headers=actors.ops,
    )
    assert r.status_code == 200, r.text
    rows = entries(db)
    assert [e.seq for e in rows] == list(range(1, len(rows) + 1))
    assert len(rows) >= 12
    return len(rows)


def broken_at(result: Any) -> int:
    assert result.code == 1, (result.out, result.err)
    match = re.search(r"BROKEN at entry (-?\d+):", result.err)
    assert match, result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    return int(match.group(1))


def test_intact_trail_verifies(trail: int, cli: CliRunner) -> None:
    result = cli("audit", "verify")
    assert result.code == 0, result.err
    assert result.out.strip() == f"audit trail intact: {trail} entries verified"


def test_empty_trail_verifies(db: Database, cli: CliRunner) -> None:
    result = cli("audit", "verify")
    assert result.code == 0, result.err
    assert "0 entries verified" in result.out


# Each tamper changes the database directly and returns the seq verify must name.
Tamper = Callable[[Connection, int], int]


def _entry(conn: Connection, seq: int) -> dict[str, Any]:
    return dict(conn.execute(select(log).where(log.c.seq == seq)).mappings().one())


def edit_actor(conn: Connection, n: int) -> int:
    conn.execute(update(log).where(log.c.seq == n - 5).values(actor="mallory"))
    return n - 5


def edit_roles(conn: Connection, n: int) -> int:
    conn.execute(update(log).where(log.c.seq == 3).values(actor_roles=["admin", "auditor"]))
    return 3


def edit_changes(conn: Connection, n: int) -> int:
    # The suspension (last entry) now claims the tenant went from active to active.
    conn.execute(
        update(log)
        .where(log.c.seq == n)
        .values(changes={"state": {"before": "active", "after": "active"}})
    )
    return n


def edit_detail(conn: Connection, n: int) -> int:
    conn.execute(update(log).where(log.c.seq == n - 1).values(detail={"note": "nothing to see"}))
    return n - 1


def edit_time(conn: Connection, n: int) -> int:
    row = _entry(conn, 6)
    conn.execute(update(log).where(log.c.seq == 6).values(at=row["at"].replace(year=2001)))
    return 6


def edit_tenant(conn: Connection, n: int) -> int:
    conn.execute(update(log).where(log.c.seq == n - 2).values(tenant_id=None))
    return n - 2


def edit_and_rehash(conn: Connection, n: int) -> int:
    """A careful forger recomputes the edited entry's own hash; the next link breaks."""
    seq = n - 4
    row = _entry(conn, seq)
    row["actor"] = "mallory"
    fields = {k: v for k, v in row.items() if k != "hash"}
    conn.execute(
        update(log).where(log.c.seq == seq).values(actor="mallory", hash=audit.entry_hash(**fields))
    )
    return seq + 1


def delete_middle(conn: Connection, n: int) -> int:
    conn.execute(delete(log).where(log.c.seq == n // 2))
    return n // 2


def delete_first(conn: Connection, n: int) -> int:
    conn.execute(delete(log).where(log.c.seq == 1))
    return 1


def delete_last(conn: Connection, n: int) -> int:
    conn.execute(delete(log).where(log.c.seq == n))
    return n


def _forged(seq: int, prev_hash: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "seq": seq,
        "id": f"00000000-0000-0000-0000-{seq + 1:012d}",
        "at": utcnow(),
        "actor": "mallory",
        "actor_roles": ["admin"],
        "action": "tenant.approved",
        "tenant_id": None,
        "request_id": None,
        "changes": {},
        "detail": {},
        "prev_hash": prev_hash,
    }
    return {**fields, "hash": audit.entry_hash(**fields)}


def insert_chained_at_end(conn: Connection, n: int) -> int:
    """Appended with a correct hash chained to the last entry; only the head knows."""
    conn.execute(insert(log).values(**_forged(n + 1, _entry(conn, n)["hash"])))
    return n + 1


def insert_garbage_at_end(conn: Connection, n: int) -> int:
    conn.execute(insert(log).values(**{**_forged(n + 1, "f" * 64), "hash": "e" * 64}))
    return n + 1


def insert_before_first(conn: Connection, n: int) -> int:
    conn.execute(insert(log).values(**_forged(0, audit.GENESIS)))
    return 0


def insert_into_gap(conn: Connection, n: int) -> int:
    """Replace a middle entry by a forged one that links to its predecessor."""
    seq = n // 2
    prev = _entry(conn, seq - 1)["hash"]
    conn.execute(delete(log).where(log.c.seq == seq))
    conn.execute(insert(log).values(**_forged(seq, prev)))
    # It links back correctly; the break shows at the next entry, which still
    # holds the hash of the entry that was removed.
    return seq + 1


def swap_two(conn: Connection, n: int) -> int:
    a, b = n // 2, n // 2 + 1
    conn.execute(update(log).where(log.c.seq == a).values(seq=-1))
    conn.execute(update(log).where(log.c.seq == b).values(seq=a))
    conn.execute(update(log).where(log.c.seq == -1).values(seq=b))
    return a


def swap_first_and_last(conn: Connection, n: int) -> int:
    conn.execute(update(log).where(log.c.seq == 1).values(seq=-1))
    conn.execute(update(log).where(log.c.seq == n).values(seq=1))
    conn.execute(update(log).where(log.c.seq == -1).values(seq=n))
    return 1


TAMPERS: list[Tamper] = [
    edit_actor,
    edit_roles,
    edit_changes,
    edit_detail,
    edit_time,
    edit_tenant,
    edit_and_rehash,
    delete_middle,
    delete_first,
    delete_last,
    insert_chained_at_end,
    insert_garbage_at_end,
    insert_before_first,
    insert_into_gap,
    swap_two,
    swap_first_and_last,
]


@pytest.mark.parametrize("tamper", TAMPERS, ids=lambda t: t.__name__)
def test_tampering_is_detected_and_the_first_bad_entry_named(
    db: Database, trail: int, cli: CliRunner, tamper: Tamper
) -> None:
    assert cli("audit", "verify").code == 0
    with db.engine.begin() as conn:
        expected = tamper(conn, trail)
    assert broken_at(cli("audit", "verify")) == expected


@pytest.mark.parametrize("tamper", [edit_and_rehash, insert_into_gap], ids=lambda t: t.__name__)
def test_a_consistent_forgery_is_reported_at_the_broken_link_naming_both_entries(
    db: Database, trail: int, cli: CliRunner, tamper: Tamper
) -> None:
    with db.engine.begin() as conn:
        bad = tamper(conn, trail)
    result = cli("audit", "verify")
    assert broken_at(result) == bad
    assert f"does not link to entry {bad - 1}" in result.err


def test_a_missing_head_row_is_reported(db: Database, trail: int, cli: CliRunner) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(AuditHead.__table__))
    result = cli("audit", "verify")
    assert result.code == 1
    assert "head" in result.err


@dataclass
class Interleave:
    """Commit one more audited change just before verify reads the head row."""

    db: Database
    fired: bool = False

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.fired or "FROM audit_head" not in statement:
            return
        self.fired = True
        with self.db.write() as session:
            audit.record(
                session, actor=SYSTEM, action="test.during_verify", tenant_id=None, changes={}
            )


@pytest.fixture
def commit_during_verify(db: Database) -> Iterator[Interleave]:
    hook = Interleave(db)
    event.listen(db.engine, "before_cursor_execute", hook)
    yield hook
    event.remove(db.engine, "before_cursor_execute", hook)


def test_writers_committing_during_verify_do_not_make_it_report_a_break(
    db: Database, trail: int, commit_during_verify: Interleave
) -> None:
    """On a live system entries keep arriving while verify walks the chain."""
    with audit.snapshot(db) as session:
        result = audit.verify(session)
    assert commit_during_verify.fired
    assert result == audit.VerifyResult(True, trail)
    with audit.snapshot(db) as session:
        assert audit.verify(session) == audit.VerifyResult(True, trail + 1)


def test_verify_does_not_depend_on_the_database_session_time_zone(db: Database, trail: int) -> None:
    """PostgreSQL returns ``timestamptz`` in the session's zone; the hash is over UTC."""
    if db.is_sqlite:
        other = Database(db.url)
    else:
        other = Database(db.url, connect_args={"options": "-c TimeZone=Asia/Kolkata"})
    try:
        with audit.snapshot(other) as session:
            at = session.execute(select(AuditEntry.at).limit(1)).scalar_one()
            if not other.is_sqlite:
                assert at.utcoffset() is not None
                assert at.utcoffset().total_seconds() == 5.5 * 3600
            assert audit.verify(session) == audit.VerifyResult(True, trail)
    finally:
        other.dispose()
