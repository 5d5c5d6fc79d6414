"""Update or insert many rows of one table, each with its own values, in one statement.

On PostgreSQL an ``executemany`` of an ``UPDATE`` is one statement per row:
the driver binds, sends and reads each, and the server plans and runs each.
``UpdateMany`` sends one instead, whatever the number of rows — the rows'
keys and values travel as one array per column, and the update joins them::

    UPDATE run_steps SET output = v.output, …
    FROM unnest(:id::VARCHAR[], :output::JSON[]) AS v(id, output)
    WHERE run_steps.id = v.id AND …

Elsewhere (SQLite, where an ``executemany`` is a loop inside the driver and
costs little) it is that ``executemany``. Both forms are built once, when the
``UpdateMany`` is made; a caller keeps it at module level.

``insert_many`` is the same idea for ``INSERT``: on PostgreSQL the rows go in
with one ``COPY … FROM STDIN`` (no statement per row for the server to plan
and run), elsewhere with an ``executemany``. Generic SQL plumbing: it knows no
domain (decisions 0048, 0049).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    VARCHAR,
    ColumnElement,
    String,
    Table,
    Update,
    bindparam,
    column,
    func,
    insert,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import Function
from sqlalchemy.types import TypeEngine


class UpdateMany:
    """``UPDATE table`` of the rows matching each row's ``keys``: set its ``fields``
    from the row, ``values`` (the same for every row) and only where ``where`` holds.

    ``values`` and ``where`` may use bound parameters (``bindparam("now")``);
    pass them to the call as ``params``. The keys of one call must be unique: on
    PostgreSQL a row matched twice takes one of its two values, not the last.
    """

    def __init__(
        self,
        table: Table,
        *,
        keys: Sequence[str],
        fields: Sequence[str],
        values: Mapping[str, Any] | None = None,
        where: Sequence[ColumnElement[bool]] = (),
    ) -> None:
        self.keys, self.fields = tuple(keys), tuple(fields)
        source = _unnest(table, self.keys + self.fields)
        self._joined: Update = (
            update(table)
            .where(*(table.c[k] == source.c[k] for k in self.keys), *where)
            .values({**{f: source.c[f] for f in self.fields}, **(values or {})})
        )
        # Bound names differ from the columns': a bind may not share its column's name in SET.
        self._each: Update = (
            update(table)
            .where(*(table.c[k] == bindparam(f"r_{k}") for k in self.keys), *where)
            .values(
                {
                    **{f: bindparam(f"r_{f}", type_=table.c[f].type) for f in self.fields},
                    **(values or {}),
                }
            )
        )

    def __call__(
        self,
        session: Session,
        rows: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """Apply the update to ``rows`` (each a mapping of every key and field)."""
        if not rows:
            return
        if _one_statement(session):
            session.execute(
                self._joined, {**_arrays(self.keys + self.fields, rows), **(params or {})}
            )
            return
        shared = params or {}
        names = self.keys + self.fields
        session.execute(self._each, [{**{f"r_{n}": r[n] for n in names}, **shared} for r in rows])


def _one_statement(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _unnest(table: Table, names: Sequence[str]) -> Any:
    """``unnest(:a_x::T[], …) AS v(x, …)``: one array per column, zipped into rows."""
    types = [_unbounded(table.c[n].type) for n in names]
    rows: Function[Any] = func.unnest(
        *(
            bindparam(f"a_{n}", type_=ARRAY(t, dimensions=1))
            for n, t in zip(names, types, strict=True)
        )
    )
    columns = (column(n, t) for n, t in zip(names, types, strict=True))
    return rows.table_valued(*columns, name="v").render_derived()


def _unbounded(kind: TypeEngine[Any]) -> TypeEngine[Any]:
    """A string type without its length: the cast to ``VARCHAR(n)[]`` would cut a longer
    value short (a key matching a row it should not), where the column refuses it."""
    if isinstance(kind, String) and type(kind) in (String, VARCHAR) and kind.length is not None:
        return type(kind)()  # String or VARCHAR only: an Enum is a String too
    return kind


def _arrays(names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {f"a_{n}": [r[n] for r in rows] for n in names}


def insert_many(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``INSERT`` ``rows`` (mappings of the same columns) into ``table``, in the caller's
    transaction: one ``COPY … FROM STDIN`` on PostgreSQL, an ``executemany`` elsewhere.

    Each value goes through its column type's bind processing (a JSON column's
    serializer) as the ``INSERT`` would, and a refused row raises the
    ``DBAPIError`` (``IntegrityError``, …) the ``INSERT`` would. The server fills
    the columns left out from their server defaults; a column's Python-side
    default is not applied, so give every such value. The ``COPY`` bypasses
    SQLAlchemy's statement events (``before_cursor_execute``). An error raised
    while the rows are written (a value the serializer refuses) ends the
    transaction as a refused row does: the caller rolls back.
    """
    if not rows:
        return
    if not _one_statement(session):
        session.execute(insert(table), rows)
        return
    connection = session.connection()
    dialect = connection.dialect
    names = tuple(rows[0])
    processors = _processors(table, names, dialect)
    statement = _copy_sql(table, names, dialect)
    raw: Any = connection.connection.driver_connection  # psycopg.Connection
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([_bound(row[n], p) for n, p in zip(names, processors, strict=True)])
    except dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy raises it for a statement it sent itself (IntegrityError and so
        # on), so callers handle a refused COPY as they would a refused INSERT; without
        # the server's context line, which quotes the refused row's value, nor the
        # original in the chain, so a caller that logs the error logs no value.
        raise DBAPIError.instance(
            statement, None, _quiet(exc), dialect.loaded_dbapi.Error, dialect=dialect
        ) from None


def _quiet(error: Exception) -> Exception:
    """``error`` with its first line only: PostgreSQL's message, not the ``CONTEXT:``
    (``COPY t, line 1, column c: "<value>"``) an ``INSERT``'s error does not carry."""
    first = str(error).split("\n", 1)[0]
    try:
        return type(error)(first)
    except TypeError:  # an error class that wants other arguments: keep the class's name
        return Exception(f"{type(error).__name__}: {first}")


def _bound(value: Any, processor: Any) -> Any:
    # None too: a JSON column binds it as JSON null (its none_as_null is off), not NULL.
    return value if processor is None else processor(value)


@functools.lru_cache(maxsize=256)
def _copy_sql(table: Table, names: tuple[str, ...], dialect: Dialect) -> str:
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(n) for n in names)
    return f"COPY {dialect.identifier_preparer.format_table(table)} ({columns}) FROM STDIN"


@functools.lru_cache(maxsize=256)  # per engine: its dialect holds the JSON serializer
def _processors(table: Table, names: tuple[str, ...], dialect: Dialect) -> list[Any]:
    """Each column's bind processing as the dialect does it (its own type for the column's:
    SQLite's datetime, PostgreSQL's JSON), what an ``INSERT`` would apply."""
    return [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
