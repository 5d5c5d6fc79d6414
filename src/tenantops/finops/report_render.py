"""Monthly cost report: the figures a report shows, rendered as HTML, CSV and PDF.

Rendering is pure: a ``CostReport`` of frozen dataclasses (money as ``Decimal``)
goes in, text or bytes come out. Nothing here reads the ledger, so a report can
be filled from any source and tested without a database, and every format shows
the same figures because every format reads the same derived values
(``TenantCost.status``, ``CostReport.total_cost``, ``format_money``…).

Validation happens when the model is built (``ReportDataError``), so a renderer
never meets half-valid data and never writes half a report.

This module renders HTML and CSV and is the public face of the renderer: the
model lives in ``report_model``, the chart geometry in ``report_charts`` and
the PDF in ``report_pdf``; their public names are re-exported here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC

import jinja2

from tenantops.finops import report_templates
from tenantops.finops.report_charts import (
    BAR_W,
    BAR_X0,
    LABEL_W,
    PLOT_H,
    PLOT_LEFT,
    PLOT_TOP,
    PLOT_W,
    ROW_H,
    SVG_WIDTH,
    HBar,
    HBarChart,
    LineChart,
    Tick,
    VBar,
    VBarChart,
    cost_chart,
    months_chart,
    trend_chart,
)
from tenantops.finops.report_model import (
    CHART_TENANTS,
    PREVIOUS_MONTHS,
    TOP_SERVICES,
    Action,
    BudgetStatus,
    CostReport,
    ReportDataError,
    Scope,
    TenantCost,
    decimal_text,
    format_money,
    format_ratio,
    format_thresholds,
    share_text,
    tenants_text,
)
from tenantops.kit.documents import CSS, csv_safe

# ----------------------------------------------------------------------------- HTML


@dataclass(frozen=True, slots=True)
class _Row:
    tenant_id: str
    name: str
    budget: str
    cost: str
    forecast: str
    ratio: str
    status: str
    over: bool
    thresholds: str
    top_service: str
    actions: int


def _row(t: TenantCost, currency: str) -> _Row:
    top = t.top_services[0][0] if t.top_services else "—"
    return _Row(
        tenant_id=t.tenant_id,
        name=t.name,
        budget="—" if t.budget is None else format_money(t.budget, currency),
        cost=format_money(t.cost_mtd, currency),
        forecast=format_money(t.forecast, currency),
        ratio=format_ratio(t),
        status=str(t.status),
        over=t.status is BudgetStatus.OVER,
        thresholds=format_thresholds(t),
        top_service=top,
        actions=len(t.actions),
    )


_env = jinja2.Environment(
    loader=jinja2.DictLoader(report_templates.TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_html(report: CostReport) -> str:
    """A self-contained page: inline CSS and SVG, no script, no external asset."""
    cur = report.currency
    context = {
        "r": report,
        "Scope": Scope,
        "money": lambda v: format_money(v, cur),
        "tenants": tenants_text,
        "rows": [_row(t, cur) for t in report.by_cost],
        "tenant": report.tenants[0] if report.scope is Scope.TENANT else None,
        "tenant_row": _row(report.tenants[0], cur) if report.scope is Scope.TENANT else None,
        "over_n": report.count(BudgetStatus.OVER),
        "forecast_over_n": report.count(BudgetStatus.FORECAST_OVER),
        "no_budget_n": report.count(BudgetStatus.NO_BUDGET),
        "cost_chart": cost_chart(report),
        "trend_chart": trend_chart(report) if report.has_cost_data else None,
        "months_chart": months_chart(report) if report.has_cost_data else None,
        "generated": report.generated_at.astimezone(UTC).isoformat(timespec="seconds"),
        "actions": [
            (t, a.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"), a) for t, a in report.actions
        ],
        "share": lambda v: share_text(v, report.total_cost),
        "css": CSS,
        "width": SVG_WIDTH,
        "geo": {
            "label_w": LABEL_W,
            "bar_x0": BAR_X0,
            "bar_w": BAR_W,
            "row_h": ROW_H,
            "left": PLOT_LEFT,
            "top": PLOT_TOP,
            "plot_w": PLOT_W,
            "plot_h": PLOT_H,
        },
    }
    return _env.get_template("report.html").render(context)


# ----------------------------------------------------------------------------- CSV

ALL_TENANTS_COLUMNS = (
    "month",
    "tenant_id",
    "tenant_name",
    "currency",
    "budget",
    "cost_mtd",
    "forecast",
    "budget_ratio",
    "status",
    "thresholds_crossed",
    "top_service",
    "top_service_cost",
    "actions",
)
TENANT_COLUMNS = (
    "tenant_id",
    "tenant_name",
    "currency",
    "record",
    "period",
    "item",
    "amount",
    "detail",
)


def render_csv(report: CostReport) -> str:
    """RFC 4180 text (CRLF, header row); amounts are decimal strings with two places.

    All tenants: one row per tenant, costliest first (``ALL_TENANTS_COLUMNS``).
    One tenant: a long table (``TENANT_COLUMNS``) whose ``record`` column says
    what a row is: ``summary`` (item budget, cost_mtd, forecast, budget_ratio; status
    and thresholds_crossed — e.g. ``50;80`` — in ``detail``),
    ``day`` (period YYYY-MM-DD), ``month`` (previous months, then this month to
    date), ``service`` (top services) and ``action`` (period = ISO time, item =
    kind, amount empty, summary in the last column).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if report.scope is Scope.ALL:
        writer.writerow(ALL_TENANTS_COLUMNS)
        writer.writerows(_all_tenant_rows(report))
    else:
        writer.writerow(TENANT_COLUMNS)
        writer.writerows(_tenant_rows(report))
    return out.getvalue()


def _all_tenant_rows(report: CostReport) -> Iterable[tuple[str, ...]]:
    for t in report.by_cost:
        ratio = t.ratio_exact
        top_name, top_cost = t.top_services[0] if t.top_services else ("", None)
        yield (
            report.month,
            csv_safe(t.tenant_id),
            csv_safe(t.name),
            report.currency,
            "" if t.budget is None else decimal_text(t.budget),
            decimal_text(t.cost_mtd),
            decimal_text(t.forecast),
            "" if ratio is None else str(ratio),
            str(t.status),
            ";".join(str(x) for x in t.thresholds_crossed),
            csv_safe(top_name),
            "" if top_cost is None else decimal_text(top_cost),
            str(len(t.actions)),
        )


def _tenant_rows(report: CostReport) -> Iterable[tuple[str, ...]]:
    t = report.tenants[0]
    head = (csv_safe(t.tenant_id), csv_safe(t.name), report.currency)
    m = report.month
    budget = "" if t.budget is None else decimal_text(t.budget)
    ratio = "" if t.ratio_exact is None else str(t.ratio_exact)
    yield (*head, "summary", m, "budget", budget, "")
    yield (*head, "summary", m, "cost_mtd", decimal_text(t.cost_mtd), "")
    yield (*head, "summary", m, "forecast", decimal_text(t.forecast), "")
    yield (*head, "summary", m, "budget_ratio", ratio, "")
    thresholds = ";".join(str(x) for x in t.thresholds_crossed)
    yield (*head, "summary", m, "status", "", str(t.status))
    yield (*head, "summary", m, "thresholds_crossed", "", thresholds)
    for day, amount in t.daily:
        yield (*head, "day", day.isoformat(), "", decimal_text(amount), "")
    for month, amount in t.previous_months:
        yield (*head, "month", month, "", decimal_text(amount), "")
    yield (*head, "month", m, "to date", decimal_text(t.cost_mtd), "")
    for service, amount in t.top_services:
        yield (*head, "service", m, csv_safe(service), decimal_text(amount), "")
    for a in t.actions:
        at = a.at.isoformat(timespec="seconds")
        yield (*head, "action", at, csv_safe(a.kind), "", csv_safe(a.summary))


__all__ = [
    "ALL_TENANTS_COLUMNS",
    "CHART_TENANTS",
    "PREVIOUS_MONTHS",
    "TENANT_COLUMNS",
    "TOP_SERVICES",
    "Action",
    "BudgetStatus",
    "CostReport",
    "HBar",
    "HBarChart",
    "LineChart",
    "ReportDataError",
    "Scope",
    "TenantCost",
    "Tick",
    "VBar",
    "VBarChart",
    "cost_chart",
    "csv_safe",
    "format_money",
    "format_ratio",
    "format_thresholds",
    "months_chart",
    "render_csv",
    "render_html",
    "trend_chart",
]
