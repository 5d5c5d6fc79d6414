"""Monthly cost reports assembled from the database: ``build_report`` and ``write_report``.

The renderer (``report_render``) is pure; this module fills its ``CostReport``
from the cost stores with a fixed handful of set queries (tenants, budgets,
month totals, daily totals, services, previous months, ledger actions) so a
10,000-tenant report costs the same seven round trips as a one-tenant report.

Rules the figures follow (the same as ``budgets.budget_status``):

- cost is the month's cost in the tenant's budget currency (cost billed in
  another currency is not converted and does not appear);
- the forecast is ``costs.forecast`` at ``now``; thresholds are crossed by the
  month-to-date cost;
- a budget of 0 is shown as "no budget".

An all-tenant report is in one currency (``currency``, default: the currency
most tenants budget in). Tenants budgeting in another currency, and tenants
with neither cost nor a budget that month, are left out of it; their
single-tenant report still exists.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.errors import NotFound, Unprocessable
from tenantops.finops import service as finops_service
from tenantops.finops.costs import (
    Month,
    cents,
    crossed,
    current,
    forecast,
    measure,
    monthly_measure,
)
from tenantops.finops.ledger import LedgerKind
from tenantops.finops.models import Budget, CostDaily, CostImport, CostMonthly, LedgerEntry
from tenantops.finops.report_render import (
    PREVIOUS_MONTHS,
    TOP_SERVICES,
    Action,
    CostReport,
    Scope,
    TenantCost,
    render_csv,
    render_html,
)
from tenantops.finops.settings import FinOpsSettings
from tenantops.kit.clock import utcnow
from tenantops.kit.documents import RenderedReport
from tenantops.kit.files import write_files
from tenantops.tenants import repository as tenant_repository
from tenantops.tenants.models import Tenant

if TYPE_CHECKING:
    from tenantops.config import Settings

FORMATS = ("html", "csv", "pdf")
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "pdf": "application/pdf",
}
DEFAULT_THRESHOLDS = [50, 80, 100, 120]
_ACTION_KINDS = [k.value for k in LedgerKind if k is not LedgerKind.COST]


@dataclass(frozen=True)
class WrittenReport:
    """Files written for one report: path and SHA-256 per format, plus the figures."""

    month: str
    scope: str
    paths: dict[str, Path]
    sha256: dict[str, str]
    report: CostReport = field(repr=False)

    @property
    def total(self) -> Decimal:
        return self.report.total_cost

    @property
    def currency(self) -> str:
        return self.report.currency


def report_month(text: str) -> Month:
    """``YYYY-MM`` from 1000-01 to 9998-12: a year of four digits, and a month after it."""
    year = text[:4]
    if not (year.isdigit() and 1000 <= int(year) <= 9998):
        raise Unprocessable(
            f"month must be a month from 1000-01 to 9998-12, not {text!r}", param="month"
        )
    return Month.parse(text)


def previous_month(now: datetime | None = None) -> Month:
    """The month before the one ``now`` falls in: what a monthly report covers by default."""
    today = (now or utcnow()).astimezone(UTC).date()
    last = date.fromordinal(today.replace(day=1).toordinal() - 1)
    return Month.parse(last.strftime("%Y-%m"))


def _months_before(month: Month, n: int) -> list[date]:
    firsts: list[date] = []
    year, mon = month.first.year, month.first.month
    for _ in range(n):
        year, mon = (year - 1, 12) if mon == 1 else (year, mon - 1)
        firsts.append(date(year, mon, 1))
    return sorted(firsts)


def _dec(value: object) -> Decimal:
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _summary(kind: str, actor: str, ref: str | None, data: dict[str, Any] | None) -> str:
    """One line for an action: what the ledger row says, and who did it."""
    data = data or {}
    if kind == LedgerKind.BUDGET.value:
        after = data.get("after") or {}
        before = data.get("before") or {}
        return (
            f"budget set to {after.get('amount')} {after.get('currency')}"
            f" (was {before.get('amount')} {before.get('currency')}) by {actor}"
        )
    text = data.get("summary") or data.get("message") or data.get("decision")
    parts = [str(text)] if text else []
    if ref:
        parts.append(f"ref {ref}")
    parts.append(f"by {actor}")
    return "; ".join(parts)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def build_report(
    session: Session,
    *,
    month: Month,
    tenant_id: str | None,
    now: datetime | None = None,
    cost_column: str = "EffectiveCost",
    default_thresholds: list[int] | None = None,
    currency: str | None = None,
) -> CostReport:
    """The cost report of ``month`` for one tenant (id or name) or, with None, all tenants."""
    now = (now or utcnow()).astimezone(UTC)
    thresholds_default = list(default_thresholds or DEFAULT_THRESHOLDS)
    if tenant_id is not None:
        tenant = tenant_repository.get(session, tenant_id)
        if tenant is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        registry: list[tuple[str, str, Decimal, str]] = [
            (tenant.id, tenant.name, Decimal(tenant.monthly_budget), tenant.currency)
        ]
        ids: list[str] | None = [tenant.id]
    else:
        registry = [
            (str(i), str(n), _dec(b), str(c))
            for i, n, b, c in session.execute(
                select(Tenant.id, Tenant.name, Tenant.monthly_budget, Tenant.currency)
            )
        ]
        ids = None

    def only(query: Any, column: Any) -> Any:
        return query if ids is None else query.where(column.in_(ids))

    budget_rows = {
        str(t): (_dec(a), str(c), list(th))
        for t, a, c, th in session.execute(
            only(
                select(Budget.tenant_id, Budget.amount, Budget.currency, Budget.thresholds),
                Budget.tenant_id,
            )
        )
    }
    # tenant -> (amount, currency, thresholds): the finops budget or the registry's.
    budget_of: dict[str, tuple[Decimal, str, list[int]]] = {
        tid: budget_rows.get(tid, (amount, cur, thresholds_default))
        for tid, _, amount, cur in registry
    }

    totals: dict[tuple[str, str], Decimal] = {}
    totals_q = (
        select(CostMonthly.tenant_id, CostMonthly.currency, func.sum(monthly_measure(cost_column)))
        .join(CostImport, CostImport.id == CostMonthly.import_id)
        .where(CostImport.superseded_by.is_(None), CostMonthly.month == month.first)
        .where(CostMonthly.tenant_id.is_not(None))
        .group_by(CostMonthly.tenant_id, CostMonthly.currency)
    )
    for tid, cur, amount in session.execute(only(totals_q, CostMonthly.tenant_id)):
        totals[(str(tid), str(cur))] = _dec(amount)

    if currency is None:
        counts = Counter(cur for _, cur, _ in budget_of.values())
        currency = min(counts, key=lambda c: (-counts[c], c)) if counts else "EUR"
    if tenant_id is not None:
        currency = budget_of[registry[0][0]][1]

    def included(tid: str) -> bool:
        amount, cur, _ = budget_of[tid]
        if tenant_id is not None:
            return True
        return cur == currency and (amount > 0 or (tid, cur) in totals)

    chosen = {tid for tid, *_ in registry if included(tid)}

    cost = measure(cost_column)
    daily: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
    daily_q = (
        current(select(CostDaily.tenant_id, CostDaily.day, func.sum(cost)), month)
        .where(CostDaily.currency == currency, CostDaily.tenant_id.is_not(None))
        .group_by(CostDaily.tenant_id, CostDaily.day)
    )
    for tid, day, amount in session.execute(only(daily_q, CostDaily.tenant_id)):
        if str(tid) in chosen:
            daily[str(tid)].append((day, _dec(amount)))

    services: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
    services_q = (
        current(select(CostDaily.tenant_id, CostDaily.service_name, func.sum(cost)), month)
        .where(CostDaily.currency == currency, CostDaily.tenant_id.is_not(None))
        .group_by(CostDaily.tenant_id, CostDaily.service_name)
    )
    for tid, service, amount in session.execute(only(services_q, CostDaily.tenant_id)):
        if str(tid) in chosen:
            services[str(tid)].append((str(service), _dec(amount)))

    earlier: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
    firsts = _months_before(month, PREVIOUS_MONTHS)
    earlier_q = (
        select(CostMonthly.tenant_id, CostMonthly.month, func.sum(monthly_measure(cost_column)))
        .join(CostImport, CostImport.id == CostMonthly.import_id)
        .where(
            CostImport.superseded_by.is_(None),
            CostMonthly.month.in_(firsts),
            CostMonthly.currency == currency,
            CostMonthly.tenant_id.is_not(None),
        )
        .group_by(CostMonthly.tenant_id, CostMonthly.month)
    )
    labels = {first: first.strftime("%Y-%m") for first in firsts}
    for tid, first, amount in session.execute(only(earlier_q, CostMonthly.tenant_id)):
        if tid in chosen:
            earlier[tid].append((labels[first], _dec(amount)))

    actions: dict[str, list[Action]] = defaultdict(list)
    start = datetime.combine(month.first, time(), tzinfo=UTC)
    end = datetime.combine(month.after, time(), tzinfo=UTC)
    ledger_q = (
        select(
            LedgerEntry.tenant_id,
            LedgerEntry.kind,
            LedgerEntry.at,
            LedgerEntry.actor,
            LedgerEntry.ref,
            LedgerEntry.data,
        )
        .where(
            LedgerEntry.kind.in_(_ACTION_KINDS),
            LedgerEntry.at >= start,
            LedgerEntry.at < end,
        )
        .order_by(LedgerEntry.seq)
    )
    for tid, kind, at, actor, ref, data in session.execute(only(ledger_q, LedgerEntry.tenant_id)):
        if tid in chosen:
            summary = _summary(kind, actor, ref, data)
            actions[str(tid)].append(Action(at=_aware(at), kind=kind, summary=summary))

    rows: list[TenantCost] = []
    for tid, name, _, _ in registry:
        if tid not in chosen:
            continue
        amount, cur, levels = budget_of[tid]
        spent = totals.get((tid, cur), Decimal(0))
        top = sorted(services.get(tid, []), key=lambda s: (-s[1], s[0]))[:TOP_SERVICES]
        rows.append(
            TenantCost(
                tenant_id=tid,
                name=name,
                cost_mtd=cents(spent),
                forecast=forecast(spent, month, now),
                budget=amount if amount > 0 else None,
                thresholds_crossed=crossed(spent, amount, levels),
                daily=daily.get(tid, []),
                previous_months=earlier.get(tid, []),
                top_services=top,
                actions=actions.get(tid, []),
            )
        )
    return CostReport(
        month=month.label,
        generated_at=now,
        currency=currency,
        scope=Scope.ALL if tenant_id is None else Scope.TENANT,
        tenants=rows,
    )


def render(report: CostReport, fmt: str) -> bytes:
    """One format of a report as bytes (what the API returns and the files hold)."""
    if fmt == "html":
        return render_html(report).encode()
    if fmt == "csv":
        return render_csv(report).encode()
    if fmt == "pdf":
        # Imported here: fpdf takes a third of a second to load, and every CLI
        # command would pay it through the actions that import this module.
        from tenantops.finops.report_pdf import render_pdf

        return render_pdf(report)
    raise Unprocessable(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}", param="format")


def report_dir(settings: Settings, month: Month) -> Path:
    return settings.data_dir / "reports" / month.label


def write_report(
    settings: Settings,
    session: Session,
    month: Month | str,
    tenant_id: str | None = None,
    formats: tuple[str, ...] | list[str] = FORMATS,
    *,
    now: datetime | None = None,
) -> WrittenReport:
    """Write a month's report under ``<data_dir>/reports/<YYYY-MM>/``, each file atomically.

    ``now`` is the report's ``generated_at`` (pass a run's start for reruns that
    must reproduce the same bytes). Every format is rendered before any is
    written, so bad data leaves no file behind.
    """
    period = month if isinstance(month, Month) else report_month(month)
    wanted = list(dict.fromkeys(formats))
    for fmt in wanted:
        if fmt not in FORMATS:
            raise Unprocessable(
                f"format must be one of {', '.join(FORMATS)}, not {fmt!r}", param="formats"
            )
    report = build_report(
        session,
        month=period,
        tenant_id=tenant_id,
        now=now,
        cost_column=settings.finops.cost_column,
        default_thresholds=settings.finops.default_thresholds,
    )
    bodies = {fmt: render(report, fmt) for fmt in wanted}
    written = write_files(report_dir(settings, period), report.file_stem, bodies)
    return WrittenReport(
        month=period.label,
        scope=report.scope.value,
        paths={fmt: path for fmt, (path, _) in written.items()},
        sha256={fmt: digest for fmt, (_, digest) in written.items()},
        report=report,
    )


def report_for(
    session: Session,
    *,
    principal: Principal,
    month: str | None,
    tenant: str | None,
    fmt: str,
    settings: FinOpsSettings,
    now: datetime | None = None,
) -> RenderedReport:
    """The report a caller may read: a tenant owner only their own tenant's (404 otherwise).

    ``month`` defaults to the previous month: the last one whose report is final.
    """
    if fmt not in FORMATS:
        raise Unprocessable(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    period = report_month(month) if month else previous_month(now)
    if tenant is None and principal.tenant_scoped:
        if principal.tenant is None:
            raise NotFound("no tenant visible to this token")
        tenant = principal.tenant
    tenant_id = None
    if tenant is not None:
        tenant_id = finops_service.visible_tenant(session, principal, tenant).id
    report = build_report(
        session,
        month=period,
        tenant_id=tenant_id,
        now=now,
        cost_column=settings.cost_column,
        default_thresholds=settings.default_thresholds,
    )
    return RenderedReport(
        body=render(report, fmt),
        content_type=CONTENT_TYPES[fmt],
        filename=f"{report.file_stem}.{fmt}",
    )
