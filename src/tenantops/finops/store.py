"""Where the finops tables live: schema ``finops`` on PostgreSQL, the main file on SQLite.

The tables are declared with ``schema="finops"``. SQLite has no schemas (an
attached database would split one transaction over two files, losing atomic
commits in WAL mode), so ``tenantops.db.make_engine`` maps the schema away on
every SQLite engine (``SQLITE_SCHEMAS``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, text
from sqlalchemy.orm import Session

SCHEMA = "finops"


def comparable_metadata(metadata: MetaData, dialect_name: str) -> MetaData:
    """``metadata`` as a store sees it: on SQLite the finops tables without their schema.

    For ``alembic.autogenerate.compare_metadata`` (which knows no schema
    translation): on PostgreSQL pass ``opts={"include_schemas": True}``.
    """
    if dialect_name != "sqlite":
        return metadata
    copy = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        kwargs: dict[str, Any] = {}
        if table.schema == SCHEMA:
            kwargs["schema"] = None
        table.to_metadata(copy, referred_schema_fn=_unschema, **kwargs)
    return copy


def _unschema(table: Any, to_schema: Any, constraint: Any, referred_schema: Any) -> Any:
    return None if referred_schema == SCHEMA else referred_schema


def serialise(session: Session, scope: str) -> None:
    """Hold ``scope`` until this transaction ends, across replicas (PostgreSQL advisory
    lock); on SQLite the write transaction already serialises every writer."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:scope, 0))"), {"scope": scope}
        )
