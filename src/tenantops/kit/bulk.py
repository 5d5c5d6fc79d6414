"""Update many rows of one table by key, each with its own values, in one statement.

On PostgreSQL an ``executemany`` of an ``UPDATE`` is one statement per row:
the driver binds, sends and reads each, and the server plans and runs each.
``UpdateMany`` sends one instead, whatever the number of rows — the rows'
keys and values travel as one array per column, and the update joins them::

    UPDATE run_steps SET output = v.output, …
    FROM unnest(:id::VARCHAR[], :output::JSON[]) AS v(id, output)
    WHERE run_steps.id = v.id AND …

Elsewhere (SQLite, where an ``executemany`` is a loop inside the driver and
costs little) it is that ``executemany``. Both forms are built once, when the
``UpdateMany`` is made; a caller keeps it at module level. Generic SQL
plumbing: it knows no domain (decision 0048).
"""

from __future__ import annotations

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
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
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
