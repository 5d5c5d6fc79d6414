"""Portable SQL time arithmetic: timestamps as exact integers on either store.

``epoch_micros`` turns a timestamp column into whole microseconds since 1970
(UTC), so the database can subtract two of them and the difference, through
``seconds``, equals ``timedelta.total_seconds()`` on SQLite and PostgreSQL
alike. It is the one dialect difference of the KPI queries
(``tenantops.kpis``), kept as a SQLAlchemy construct so the queries stay
one code path (decisions 0001, 0025). Generic SQL plumbing: it knows no domain.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

MICROS = 1_000_000


class epoch_micros(FunctionElement[int]):  # noqa: N801 - used like a SQL function
    """A timestamp as whole microseconds since 1970 (UTC), on either store.

    Exact, so differences of two, divided by 10**6 in Python, equal
    ``timedelta.total_seconds()``: PostgreSQL's ``EXTRACT(EPOCH FROM ...)`` is a
    numeric; SQLite's ``julianday`` keeps milliseconds only, so its whole seconds
    (``strftime('%s')``) and the microseconds of the stored text are taken
    apart. The one dialect difference of the KPI queries lives here, as a
    SQLAlchemy construct: the queries themselves are one code path (decisions
    0001, 0025).
    """

    type = BigInteger()
    name = "epoch_micros"
    inherit_cache = True


@compiles(epoch_micros)
def _epoch_postgresql(element: epoch_micros, compiler: SQLCompiler, **kw: Any) -> str:
    (at,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(EXTRACT(EPOCH FROM {at}) * {MICROS} AS BIGINT)"


@compiles(epoch_micros, "sqlite")
def _epoch_sqlite(element: epoch_micros, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, see tenantops.db); characters
    # 21-26 are the microseconds, empty (0) when a writer left them out. The whole
    # seconds from the first 19 only: strftime rounds a fraction of .9995 or more up
    # to the next second.
    (at,) = (compiler.process(c, **kw) for c in element.clauses)
    whole = f"CAST(strftime('%s', substr({at}, 1, 19)) AS INTEGER)"
    return f"({whole} * {MICROS} + CAST(substr({at}, 21, 6) AS INTEGER))"


def seconds(micros: int | None) -> float | None:
    """Microseconds (an ``epoch_micros`` difference) as seconds; ``None`` stays.

    Integer true division is correctly rounded: the same float as
    ``timedelta.total_seconds()``.
    """
    return None if micros is None else micros / MICROS
