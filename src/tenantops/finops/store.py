"""Where the finops tables live: schema ``finops`` on PostgreSQL, the main file on SQLite.

The tables are declared with ``schema="finops"``. SQLite has no schemas (an
attached database would split one transaction over two files, losing atomic
commits in WAL mode), so ``tenantops.db.make_engine`` maps the schema away on
every SQLite engine (``SQLITE_SCHEMAS``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData

# Moved to kit (the runbook chains lock with it too); importers here keep working.
from tenantops.kit.locks import serialise as serialise

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
