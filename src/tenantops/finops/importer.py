"""Import a FOCUS file: validate, allocate, append every line to the ledger, all or nothing.

``import_file`` runs inside the caller's write transaction. It streams the
file once: each batch is validated and, while no error has been seen, its
lines are allocated and appended (PostgreSQL ``COPY``, SQLite
``executemany``). After the first error it only validates, to report every
bad line; then ``ImportRejected`` rolls the whole transaction back, so a file
with any error imports nothing.

Idempotence: a file whose SHA-256 was imported before returns that import
(no new rows). A different file for the same (billing account, billing
period) supersedes the current one: the old import gets ``superseded_by``;
its ledger lines and daily aggregates stay, and queries skip them.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.errors import Conflict, Unprocessable
from tenantops.finops import tenants
from tenantops.finops.allocation import Allocator
from tenantops.finops.arrow import pa, pacsv, pc
from tenantops.finops.focus import (
    FIRST_LINE,
    FOCUS_VERSION,
    Format,
    MissingColumns,
    RowError,
    UnreadableFile,
    Validator,
    detect_format,
    read_batches,
)
from tenantops.finops.models import CostImport
from tenantops.finops.settings import FinOpsSettings
from tenantops.finops.store import SCHEMA, serialise
from tenantops.kit.clock import utcnow
from tenantops.kit.ids import new_id

MONTHLY_COLUMNS = (
    "import_id",
    "tenant_id",
    "month",
    "currency",
    "billed_cost",
    "effective_cost",
    "lines",
)
SQLITE_IMPORT_CACHE_KIB = 256 * 1024
LEDGER_COLUMNS = (
    "tenant_id",
    "kind",
    "at",
    "charge_day",
    "service_name",
    "resource_id",
    "billed_cost",
    "effective_cost",
    "currency",
    "import_id",
    "source_line",
    "actor",
)
DAILY_COLUMNS = (
    "import_id",
    "tenant_id",
    "day",
    "service_name",
    "currency",
    "billed_cost",
    "effective_cost",
    "lines",
)


class ImportRejected(Unprocessable):
    """The file has invalid lines; nothing was imported."""

    slug = "focus-invalid-rows"
    title = "The cost file has invalid rows; nothing was imported"


class InvalidCostFile(Unprocessable):
    """The file cannot be imported at all (missing columns, not CSV/Parquet, empty)."""

    slug = "focus-invalid-file"
    title = "Not an importable FOCUS cost file"


@dataclass(frozen=True)
class ImportResult:
    """The import (new or earlier) and whether this call found it already imported."""

    record: CostImport
    duplicate: bool


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _resolver(session: Session) -> Callable[[set[str]], dict[str, str]]:
    """Tenant names or ids -> ids, one query per batch of new references."""

    def resolve(refs: set[str]) -> dict[str, str]:
        return tenants.ids_by_ref(session, sorted(r for r in refs if len(r) <= 63))

    return resolve


def _bulk_insert(session: Session, table: str, columns: Sequence[str], data: pa.Table) -> None:
    """Append ``data`` (columns in ``columns`` order) with the store's fastest path.

    PostgreSQL: ``COPY … FROM STDIN`` fed by Arrow's CSV writer (no Python
    object per value). SQLite: one ``executemany`` of plain text and numbers,
    the form SQLAlchemy itself stores (decimals as text become NUMERIC).
    """
    if not data.num_rows:
        return
    conn = session.connection()
    raw: Any = conn.connection.driver_connection
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        buffer = io.BytesIO()
        pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False))
        with raw.cursor() as cursor:
            sql = f"COPY {SCHEMA}.{table} ({names}) FROM STDIN (FORMAT csv)"
            with cursor.copy(sql) as copy:
                copy.write(buffer.getbuffer())
        return
    lists = []
    for column in data.columns:
        if pa.types.is_decimal(column.type) or pa.types.is_date(column.type):
            column = pc.cast(column, pa.string())
        lists.append(column.to_pylist())
    marks = ", ".join("?" for _ in columns)
    cursor = raw.cursor()
    try:
        # Table and column names are this module's constants, never input.
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
        cursor.executemany(sql, zip(*lists, strict=True))
    finally:
        cursor.close()


def _large_cache(session: Session) -> Callable[[], None]:
    """On SQLite, a page cache big enough for the ledger index while it grows; undone after.

    With SQLite's default 2 MB cache, inserting lines of a thousand tenants
    into ``(tenant_id, seq)`` evicts and rereads index pages on almost every row.
    """
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        return lambda: None
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size={-SQLITE_IMPORT_CACHE_KIB}")

    def restore() -> None:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(before or -2000)}")

    return restore


def _stamp(session: Session, at: datetime) -> str:
    """``at`` as the store keeps a timestamp: SQLite wants SQLAlchemy's UTC wall time."""
    if session.get_bind().dialect.name == "sqlite":
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return at.astimezone(UTC).isoformat()


def import_file(
    session: Session,
    *,
    path: Path,
    principal: Principal,
    settings: FinOpsSettings,
    filename: str | None = None,
    fmt: Format | None = None,
    sha256: str | None = None,
) -> ImportResult:
    """Import one FOCUS file in the caller's transaction (see the module docstring)."""
    digest = sha256 or file_sha256(path)
    earlier = session.execute(
        select(CostImport).where(CostImport.sha256 == digest)
    ).scalar_one_or_none()
    if earlier is not None:
        return ImportResult(earlier, duplicate=True)
    fmt = fmt or detect_format(path)
    import_id, now = new_id(), utcnow()
    stamp = _stamp(session, now)
    validator = Validator(max_errors=settings.max_reported_errors)
    allocator = Allocator(settings.allocation, _resolver(session))
    by_rule: dict[str, int] = {r.label: 0 for r in settings.allocation}
    partials: list[pa.Table] = []
    rows = 0
    restore = _large_cache(session)
    try:
        for batch in read_batches(path, fmt):
            checked = validator.check(batch, FIRST_LINE + rows)
            rows += batch.num_rows
            if checked is None or validator.error_count:
                continue
            cols = checked.columns
            allocation = allocator.allocate(cols["Tags"], cols["ResourceId"])
            for label, count in allocation.by_rule.items():
                by_rule[label] = by_rule.get(label, 0) + count
            n = len(checked)
            day = pc.cast(cols["ChargePeriodStart"], pa.date32())
            ledger = pa.table(
                [
                    allocation.tenant_ids,
                    pa.repeat(pa.scalar("cost"), n),
                    pa.repeat(pa.scalar(stamp), n),
                    day,
                    cols["ServiceName"],
                    cols["ResourceId"],
                    cols["BilledCost"],
                    cols["EffectiveCost"],
                    cols["BillingCurrency"],
                    pa.repeat(pa.scalar(import_id), n),
                    checked.lines,
                    pa.repeat(pa.scalar(principal.subject), n),
                ],
                names=list(LEDGER_COLUMNS),
            )
            _bulk_insert(session, "tenant_ledger", LEDGER_COLUMNS, ledger)
            partials.append(_daily(ledger))
    except MissingColumns as exc:
        raise InvalidCostFile(str(exc), missing_columns=exc.missing) from exc
    except UnreadableFile as exc:
        raise InvalidCostFile(str(exc)) from exc
    finally:
        restore()
    if validator.error_count:
        first = "; ".join(
            f"line {e.line}{' ' + e.column if e.column else ''}: {e.message}"
            for e in validator.errors[:3]
        )
        raise ImportRejected(
            f"{validator.error_count} invalid value(s), nothing was imported; first: {first}",
            error_count=validator.error_count,
            errors=[_error(e) for e in validator.errors],
        )
    scope = validator.scope
    if scope is None:
        raise InvalidCostFile("the file has a header but no cost lines")
    daily = _daily(pa.concat_tables(partials), final=True)
    _bulk_insert(
        session,
        "cost_daily",
        DAILY_COLUMNS,
        pa.table(
            [pa.repeat(pa.scalar(import_id), daily.num_rows), *daily.columns],
            names=list(DAILY_COLUMNS),
        ),
    )
    _bulk_insert(session, "cost_monthly", MONTHLY_COLUMNS, _monthly(daily, import_id))
    return _finish(
        session,
        import_id=import_id,
        now=now,
        digest=digest,
        filename=filename or path.name,
        fmt=fmt,
        scope_values=(scope.account, scope.period_start, scope.period_end, scope.currency),
        rows=rows,
        daily=daily,
        by_rule=by_rule,
        unknown=allocator.unknown.most_common(20),
        principal=principal,
        settings=settings,
    )


def _error(error: RowError) -> dict[str, Any]:
    return {"line": error.line, "column": error.column, "message": error.message}


def _monthly(daily: pa.Table, import_id: str) -> pa.Table:
    """The daily sums summed again per calendar month of the charge day."""
    as_time = pc.cast(daily.column("day"), pa.timestamp("s"))
    month = pc.cast(
        pc.strptime(pc.strftime(as_time, format="%Y-%m-01"), "%Y-%m-%d", "s"), pa.date32()
    )
    table = pa.table(
        [
            daily.column("tenant_id"),
            month,
            daily.column("currency"),
            daily.column("billed_cost"),
            daily.column("effective_cost"),
            daily.column("lines"),
        ],
        names=["tenant_id", "month", "currency", "billed_cost", "effective_cost", "lines"],
    )
    keys = ["tenant_id", "month", "currency"]
    grouped = table.group_by(keys, use_threads=False).aggregate(
        [("billed_cost", "sum"), ("effective_cost", "sum"), ("lines", "sum")]
    )
    return pa.table(
        [
            pa.repeat(pa.scalar(import_id), grouped.num_rows),
            grouped.column("tenant_id"),
            grouped.column("month"),
            grouped.column("currency"),
            grouped.column("billed_cost_sum"),
            grouped.column("effective_cost_sum"),
            grouped.column("lines_sum"),
        ],
        names=list(MONTHLY_COLUMNS),
    )


def _daily(table: pa.Table, *, final: bool = False) -> pa.Table:
    """Cost per (tenant, day, service, currency); ``final`` re-sums the per-batch sums."""
    day = "day" if final else "charge_day"
    keys = ["tenant_id", day, "service_name", "currency"]
    count = ("lines", "sum") if final else ("billed_cost", "count")
    grouped = table.group_by(keys, use_threads=False).aggregate(
        [("billed_cost", "sum"), ("effective_cost", "sum"), count]
    )
    return pa.table(
        [grouped.column(k) for k in keys]
        + [
            grouped.column("billed_cost_sum"),
            grouped.column("effective_cost_sum"),
            grouped.column("_".join(count)),
        ],
        names=[
            "tenant_id",
            "day",
            "service_name",
            "currency",
            "billed_cost",
            "effective_cost",
            "lines",
        ],
    )


def _finish(
    session: Session,
    *,
    import_id: str,
    now: datetime,
    digest: str,
    filename: str,
    fmt: Format,
    scope_values: tuple[str, datetime, datetime, str],
    rows: int,
    daily: pa.Table,
    by_rule: dict[str, int],
    unknown: list[tuple[str, int]],
    principal: Principal,
    settings: FinOpsSettings,
) -> ImportResult:
    account, period_start, period_end, currency = scope_values
    unallocated = daily.filter(pc.is_null(daily.column("tenant_id")))
    cost_key = "effective_cost" if settings.cost_column == "EffectiveCost" else "billed_cost"

    def total(table: pa.Table, column: str) -> Decimal:
        value = pc.sum(table.column(column)).as_py()
        return Decimal(value) if value is not None else Decimal(0)

    unallocated_rows = int(pc.sum(unallocated.column("lines")).as_py() or 0)
    tenant_count = len(pc.unique(daily.column("tenant_id").drop_null()))
    # Two imports of one (account, period) at once: the second waits for the first to
    # commit, then supersedes it.
    serialise(session, f"finops-import:{account}:{period_start.isoformat()}")
    current = (
        session.execute(
            select(CostImport)
            .where(
                CostImport.billing_account_id == account,
                CostImport.billing_period_start == period_start,
                CostImport.superseded_by.is_(None),
            )
            .with_for_update()
        )
        .scalars()
        .all()
    )
    record = CostImport(
        id=import_id,
        sha256=digest,
        filename=filename[:500],
        format=fmt,
        billing_account_id=account,
        billing_period_start=period_start,
        billing_period_end=period_end,
        currency=currency,
        rows=rows,
        allocated_rows=rows - unallocated_rows,
        unallocated_rows=unallocated_rows,
        billed_cost=total(daily, "billed_cost"),
        effective_cost=total(daily, "effective_cost"),
        unallocated_cost=total(unallocated, cost_key),
        summary={
            "focus_version": FOCUS_VERSION,
            "cost_column": settings.cost_column,
            "tenants": tenant_count,
            "by_rule": by_rule,
            "unknown_tenants": [{"ref": ref, "values": n} for ref, n in unknown],
            "supersedes": [c.id for c in current],
        },
        imported_by=principal.subject,
        imported_at=now,
    )
    session.add(record)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("this file is being imported by another request right now") from exc
    for old in current:
        old.superseded_by = import_id
    audit.record(
        session,
        actor=principal,
        action="finops.import.completed",
        tenant_id=None,
        changes={},
        detail={
            "import_id": import_id,
            "sha256": digest,
            "filename": record.filename,
            "billing_account_id": account,
            "billing_period_start": period_start.isoformat(),
            "rows": rows,
            "unallocated_rows": unallocated_rows,
            "billed_cost": str(record.billed_cost),
            "effective_cost": str(record.effective_cost),
            "supersedes": [c.id for c in current],
        },
    )
    return ImportResult(record, duplicate=False)
