"""Named transaction locks that hold across replicas (PostgreSQL advisory locks)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def serialise(session: Session, scope: str) -> None:
    """Hold ``scope`` until this transaction ends, across replicas (PostgreSQL advisory
    lock); on SQLite the write transaction already serialises every writer."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:scope, 0))"), {"scope": scope}
        )
