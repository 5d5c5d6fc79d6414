"""Reading the audit trail straight from the store, and making the store refuse entries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select, text

from tenantops.audit.models import AuditEntry, AuditHead
from tenantops.db import Database


def entries(db: Database) -> list[AuditEntry]:
    """Every stored entry, by seq."""
    with db.read() as session:
        return list(session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars())


def count(db: Database) -> int:
    with db.read() as session:
        return session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()


def head(db: Database) -> tuple[int, str]:
    with db.read() as session:
        row = session.get(AuditHead, 1)
        assert row is not None
        return row.seq, row.hash


FAIL_MESSAGE = "audit store refuses writes (test trigger)"


@contextmanager
def failing_audit(db: Database) -> Iterator[None]:
    """Inside the block every insert into the audit log fails in the database itself."""
    if db.is_sqlite:
        create = [
            "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_log "
            f"BEGIN SELECT RAISE(ABORT, '{FAIL_MESSAGE}'); END"
        ]
        drop = ["DROP TRIGGER IF EXISTS audit_refuse"]
    else:
        create = [
            "CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{FAIL_MESSAGE}'; END $$",
            "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
        ]
        drop = [
            "DROP TRIGGER IF EXISTS audit_refuse ON audit_log",
            "DROP FUNCTION IF EXISTS audit_refuse()",
        ]
    with db.engine.begin() as conn:
        for statement in create:
            conn.execute(text(statement))
    try:
        yield
    finally:
        with db.engine.begin() as conn:
            for statement in drop:
                conn.execute(text(statement))
