"""Chart geometry of a cost report, in plain numbers, shared by the HTML (SVG) and the PDF.

Layout is computed once here; the templates and the PDF only place it, so
both formats draw the same bars and lines, and every label reaches the HTML
page through Jinja's autoescape.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from tenantops.finops.report_model import (
    CHART_TENANTS,
    BudgetStatus,
    CostReport,
    Scope,
    TenantCost,
    amount_text,
    format_money,
)

# ----------------------------------------------------------------------------- charts
# Geometry is computed here in plain numbers; the templates only place it, so
# every label reaches the page through Jinja's autoescape.


@dataclass(frozen=True, slots=True)
class HBar:
    """One row of the cost-vs-budget chart."""

    label: str
    y: float
    width: float
    budget_x: float | None
    over: bool
    value_text: str


@dataclass(frozen=True, slots=True)
class HBarChart:
    """Cost against budget as horizontal bars, a black budget marker per row."""

    chart_id: str
    title: str
    desc: str
    height: float
    rows: tuple[HBar, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    """An axis tick: where and what it says."""

    at: float
    label: str


@dataclass(frozen=True, slots=True)
class LineChart:
    """Cumulative cost over the month against the straight budget pace line."""

    chart_id: str
    title: str
    desc: str
    area: str
    line: str
    pace: str | None
    forecast: str | None
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]


@dataclass(frozen=True, slots=True)
class VBar:
    """One month of the six-month trend."""

    x: float
    y: float
    height: float
    label: str
    value_text: str
    current: bool


@dataclass(frozen=True, slots=True)
class VBarChart:
    """Monthly totals as vertical bars, the current month marked "to date"."""

    chart_id: str
    title: str
    desc: str
    bars: tuple[VBar, ...]
    bar_width: float
    budget_y: float | None
    budget_label: str


# Chart frame (SVG user units; the SVG scales to the page width).
SVG_WIDTH = 800
LABEL_W = 190
BAR_X0 = 200
BAR_W = 300
ROW_H = 28
PLOT_LEFT, PLOT_TOP, PLOT_W, PLOT_H = 130, 20, 640, 220


def cost_chart(report: CostReport) -> HBarChart:
    """Month-to-date (and, for one tenant, forecast) cost against budget."""
    cur = report.currency
    rows_in: list[tuple[str, Decimal, Decimal | None, bool, str]] = []
    if report.scope is Scope.TENANT:
        t = report.tenants[0]
        over = t.status is BudgetStatus.OVER
        fc_over = t.budget is not None and t.forecast > t.budget
        rows_in.append(
            ("Month to date", t.cost_mtd, t.budget, over, _bar_text(t.cost_mtd, t, over, cur))
        )
        rows_in.append(
            ("Forecast", t.forecast, t.budget, fc_over, _bar_text(t.forecast, t, fc_over, cur))
        )
        title = f"Cost against budget, {report.month}"
    else:
        shown = report.by_cost[:CHART_TENANTS]
        for t in shown:
            over = t.status is BudgetStatus.OVER
            rows_in.append(
                (t.name, t.cost_mtd, t.budget, over, _bar_text(t.cost_mtd, t, over, cur))
            )
        title = f"Month-to-date cost against budget: the {len(shown)} costliest tenants"
    top = max([Decimal(0)] + [max(v, b or Decimal(0)) for _, v, b, _, _ in rows_in])
    scale = BAR_W / float(top) if top > 0 else 0.0
    rows = tuple(
        HBar(
            label=_clip(label, 28),
            y=10 + i * ROW_H,
            width=max(0.0, float(value)) * scale,
            budget_x=None if budget is None else BAR_X0 + float(budget) * scale,
            over=over,
            value_text=text,
        )
        for i, (label, value, budget, over, text) in enumerate(rows_in)
    )
    over_n = sum(1 for r in rows if r.over)
    desc = (
        f"{len(rows)} bars; the black marker is the budget. {over_n} shown over budget, "
        "drawn in red and labelled “OVER BUDGET”."
        if rows
        else "No tenants in this report."
    )
    return HBarChart("chart-cost", title, desc, 20 + max(1, len(rows)) * ROW_H, rows)


def _bar_text(value: Decimal, t: TenantCost, over: bool, currency: str) -> str:
    text = format_money(value, currency)
    if t.budget is not None:
        text += f" · {(value / t.budget * 100).quantize(Decimal(1), ROUND_HALF_UP)} %"
        if over:
            text += " · OVER BUDGET"
    else:
        text += " · no budget"
    return text


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def trend_chart(report: CostReport) -> LineChart:
    """Cumulative daily cost, the budget pace line and the forecast to month end."""
    days = report.days_in_month
    daily = report.daily_totals
    budget = report.tenants[0].budget if report.scope is Scope.TENANT else report.total_budget
    forecast = report.total_forecast
    cumulative: list[tuple[int, float]] = [(0, 0.0)]
    running = Decimal(0)
    for day, amount in daily:
        running += amount
        cumulative.append((day.day, float(running)))
    values = [v for _, v in cumulative] + [float(budget or 0), float(forecast)]
    y_max, y_min = max(values), min(0.0, *values)
    if y_max <= y_min:
        y_max = y_min + 1.0

    def px(day: float, value: float) -> str:
        x = PLOT_LEFT + day / days * PLOT_W
        y = PLOT_TOP + (y_max - value) / (y_max - y_min) * PLOT_H
        return f"{x:.1f},{y:.1f}"

    line = " ".join(px(d, v) for d, v in cumulative)
    last_day, last = cumulative[-1]
    base = PLOT_TOP + y_max / (y_max - y_min) * PLOT_H
    area = f"M{PLOT_LEFT},{base:.1f} L" + line.replace(" ", " L") + f" L{px(last_day, 0)} Z"
    pace = None if budget is None else f"{px(0, 0)} {px(days, float(budget))}"
    fc = None if not daily else f"{px(last_day, last)} {px(days, float(forecast))}"
    x_ticks = tuple(
        Tick(PLOT_LEFT + d / days * PLOT_W, f"{report.month}-{d:02d}" if d == 1 else f"{d}")
        for d in sorted({1, 8, 15, 22, days})
    )
    y_ticks = tuple(
        Tick(
            PLOT_TOP + (y_max - v) / (y_max - y_min) * PLOT_H,
            format_money(Decimal(str(round(v, 2))), report.currency),
        )
        for v in (y_min, (y_min + y_max) / 2, y_max)
    )
    cur = report.currency
    desc = (
        f"Cumulative cost for {report.month}: {format_money(running, cur)} "
        f"after {len(daily)} days with costs; forecast {format_money(forecast, cur)} at month end"
        + (
            f"; budget {format_money(budget, cur)}, its pace is the dashed line."
            if budget is not None
            else "; no budget."
        )
    )
    title = f"Cumulative daily cost, {report.month}"
    return LineChart("chart-daily", title, desc, area, line, pace, fc, x_ticks, y_ticks)


def months_chart(report: CostReport) -> VBarChart:
    """Up to six previous months and this month to date, with the budget as a line."""
    bars_in = [(m, v, False) for m, v in report.monthly_totals]
    bars_in.append((report.month, report.total_cost, True))
    budget = report.tenants[0].budget if report.scope is Scope.TENANT else report.total_budget
    top = max([float(budget or 0)] + [float(v) for _, v, _ in bars_in] + [0.0])
    scale = PLOT_H / top if top > 0 else 0.0
    slot = PLOT_W / len(bars_in)
    width = min(60.0, slot * 0.6)
    bars = tuple(
        VBar(
            x=PLOT_LEFT + i * slot + (slot - width) / 2,
            y=PLOT_TOP + PLOT_H - max(0.0, float(v)) * scale,
            height=max(0.0, float(v)) * scale,
            label=m,
            value_text=amount_text(v),
            current=current,
        )
        for i, (m, v, current) in enumerate(bars_in)
    )
    budget_y = None if budget is None else PLOT_TOP + PLOT_H - float(budget) * scale
    budget_label = "" if budget is None else f"budget {format_money(budget, report.currency)}"
    desc = "; ".join(f"{m}: {format_money(v, report.currency)}" for m, v, _ in bars_in) + (
        f"; {budget_label} (dashed line)." if budget_label else "."
    )
    title = (
        f"Monthly cost in {report.currency}, "
        f"{len(bars) - 1} previous months and {report.month} to date"
    )
    return VBarChart("chart-months", title, desc, bars, width, budget_y, budget_label)
