"""How a column's values travel in a backup: as JSON, losslessly, the same from either store.

Each column has a *kind*, recorded in the manifest beside its name, that says
how its values are written and read back: timestamps as ISO 8601 in UTC,
decimals as strings (their scale kept), bytes as base64. A JSON column's value
is wrapped in a one-element list, so SQL ``NULL`` (written ``null``) and a
stored JSON ``null`` (written ``[null]``) stay apart.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    String,
)
from sqlalchemy.types import TypeEngine

from tenantops.backup.errors import BackupError

KINDS = ("int", "float", "bool", "str", "decimal", "datetime", "date", "json", "bytes")


def kind_of(column: Column[Any]) -> str:
    """The kind of ``column``'s values; a type the backup cannot carry is refused."""
    t = column.type
    # Float is a Numeric and DateTime a Date in some dialects: the specific first.
    checks: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
        (JSON, "json"),
        (DateTime, "datetime"),
        (Date, "date"),
        (Float, "float"),
        (Numeric, "decimal"),
        (Boolean, "bool"),
        (Integer, "int"),
        (String, "str"),
        (LargeBinary, "bytes"),
    )
    for cls, kind in checks:
        if isinstance(t, cls):
            return kind
    raise BackupError(
        f"column {column.table.name}.{column.name} has type {t!r}, which a backup cannot carry"
    )


def _datetime(value: datetime) -> str:
    # SQLite hands back naive values that are UTC (see tenantops.db).
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


_ENCODE: dict[str, Callable[[Any], Any]] = {
    "decimal": str,
    "datetime": _datetime,
    "date": lambda v: v.isoformat(),
    "json": lambda v: [v],
    "bytes": lambda v: base64.b64encode(v).decode("ascii"),
}


def encoder(kind: str) -> Callable[[Any], Any]:
    """The function that writes a non-null value of ``kind``."""
    return _ENCODE.get(kind, _same)


def _same(value: Any) -> Any:
    return value


def _json(value: Any) -> Any:
    if not (isinstance(value, list) and len(value) == 1):
        raise ValueError("a JSON value must be wrapped in a one-element list")
    return JSON.NULL if value[0] is None else value[0]


def _typed(kind: str, types: tuple[type, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        # bool is an int in Python: an int column must not take true/false, nor the reverse.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"expected {kind}, got {type(value).__name__}")
        return value

    return check


_DECODE: dict[str, Callable[[Any], Any]] = {
    "int": _typed("int", (int,)),
    "float": _typed("float", (int, float)),
    "bool": _typed("bool", (bool,)),
    "str": _typed("str", (str,)),
    "decimal": lambda v: Decimal(_typed("decimal", (str,))(v)),
    "datetime": lambda v: datetime.fromisoformat(_typed("datetime", (str,))(v)),
    "date": lambda v: date.fromisoformat(_typed("date", (str,))(v)),
    "json": _json,
    "bytes": lambda v: base64.b64decode(_typed("bytes", (str,))(v), validate=True),
}


def decoder(kind: str) -> Callable[[Any], Any]:
    """The function that reads back a non-null value of ``kind``; ``ValueError`` if malformed."""
    decode = _DECODE[kind]

    def read(value: Any) -> Any:
        try:
            return decode(value)
        except (InvalidOperation, TypeError) as exc:
            raise ValueError(f"not a {kind}: {value!r}") from exc

    return read


def bind_type(column: Column[Any], kind: str) -> TypeEngine[Any]:
    """The type to insert ``column``'s values with: JSON keeps SQL NULL and JSON null apart."""
    if kind != "json":
        return column.type
    if not isinstance(column.type, JSON):
        raise BackupError(
            f"column {column.table.name}.{column.name} holds JSON in the backup "
            f"but is {column.type} in this database"
        )
    loaded = copy.copy(column.type)
    loaded.none_as_null = True
    return loaded
