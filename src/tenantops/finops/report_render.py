"""Monthly cost report: the figures a report shows, rendered as HTML, CSV and PDF.

Rendering is pure: a ``CostReport`` of frozen dataclasses (money as ``Decimal``)
goes in, text or bytes come out. Nothing here reads the ledger, so a report can
be filled from any source and tested without a database, and every format shows
the same figures because every format reads the same derived values
(``TenantCost.status``, ``CostReport.total_cost``, ``format_money``…).

Validation happens when the model is built (``ReportDataError``), so a renderer
never meets half-valid data and never writes half a report.
"""

from __future__ import annotations

import calendar
import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import fpdf
import jinja2
from fpdf.enums import XPos, YPos

from tenantops.finops import report_templates
from tenantops.kit.iso4217 import CURRENCY_CODES

TOP_SERVICES = 5
PREVIOUS_MONTHS = 6
CHART_TENANTS = 20
"""The all-tenant bar chart shows this many tenants (highest cost first); the table shows all."""

CENT = Decimal("0.01")
RATIO_PLACES = Decimal("0.0001")
MONTH_NAMES: tuple[str, ...] = ("January", "February", "March", "April", "May", "June", "July")
MONTH_NAMES += ("August", "September", "October", "November", "December")
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
DEJAVU_SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


class ReportDataError(ValueError):
    """The figures handed to the renderer are inconsistent; nothing was rendered."""


class Scope(StrEnum):
    """Whether a report covers every tenant or exactly one."""

    ALL = "all"
    TENANT = "tenant"


class BudgetStatus(StrEnum):
    """Where a tenant stands against its budget, in words (never colour alone)."""

    OVER = "over budget"
    FORECAST_OVER = "forecast over budget"
    WITHIN = "within budget"
    NO_BUDGET = "no budget"


def _money_error(what: str, value: object) -> ReportDataError:
    # float and int are refused: a float has already lost cents, and an int
    # usually means a unit mix-up (cents vs units) upstream.
    if not isinstance(value, Decimal):
        return ReportDataError(f"{what} must be a Decimal, got {type(value).__name__}")
    return ReportDataError(f"{what} must be a finite amount, got {value}")


def _check_money(what: str, value: object) -> Decimal:
    if not (isinstance(value, Decimal) and value.is_finite()):
        raise _money_error(what, value)
    return value


def _pairs(what: str, items: Iterable[Any]) -> list[tuple[Any, Any]]:
    try:
        return [(key, amount) for key, amount in items]
    except (TypeError, ValueError):
        raise ReportDataError(f"{what} must be (key, amount) pairs") from None


def _check_month(what: str, value: str) -> str:
    if not isinstance(value, str) or not _MONTH_RE.match(value):
        raise ReportDataError(f"{what} must be a month as YYYY-MM, got {value!r}")
    return value


def _check_text(what: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ReportDataError(f"{what} must be a non-empty string")
    return value


def _check_aware(what: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ReportDataError(f"{what} must be a timezone-aware datetime")
    return value


@dataclass(frozen=True, slots=True)
class Action:
    """Something done about a tenant's cost this month: an alert, a rate limit, a follow-up."""

    at: datetime
    kind: str
    summary: str

    def __post_init__(self) -> None:
        _check_aware("action time", self.at)
        _check_text("action kind", self.kind)
        if not isinstance(self.summary, str):
            raise ReportDataError("action summary must be a string")


@dataclass(frozen=True, slots=True)
class TenantCost:
    """One tenant's month: cost so far, forecast, budget, trend, hotspots and actions.

    Sequences are stored as tuples in a fixed order (days and months ascending,
    services by cost descending, actions by time) so every format lists them
    the same way whatever order the caller used.
    """

    tenant_id: str
    name: str
    cost_mtd: Decimal
    forecast: Decimal
    budget: Decimal | None = None
    thresholds_crossed: Sequence[int] = ()
    daily: Sequence[tuple[date, Decimal]] = ()
    previous_months: Sequence[tuple[str, Decimal]] = ()
    top_services: Sequence[tuple[str, Decimal]] = ()
    actions: Sequence[Action] = ()

    def __post_init__(self) -> None:
        _check_text("tenant id", self.tenant_id)
        if not isinstance(self.name, str):
            raise ReportDataError(f"tenant {self.tenant_id}: name must be a string")
        who = f"tenant {self.tenant_id}"
        _check_money(f"{who}: cost_mtd", self.cost_mtd)
        _check_money(f"{who}: forecast", self.forecast)
        if self.budget is not None and _check_money(f"{who}: budget", self.budget) <= 0:
            raise ReportDataError(f"{who}: budget must be positive (None means no budget)")
        # Messages are built only on failure: a 10,000-tenant month has 300,000 daily costs.
        thresholds = tuple(self.thresholds_crossed)
        if any(not isinstance(t, int) or isinstance(t, bool) or t <= 0 for t in thresholds):
            raise ReportDataError(f"{who}: thresholds are positive whole percentages")
        thresholds = tuple(sorted(set(thresholds)))
        daily = _pairs(f"{who}: daily costs", self.daily)
        for day, amount in daily:
            if type(day) is not date:
                raise ReportDataError(f"{who}: daily cost dates must be dates, got {day!r}")
            if not (isinstance(amount, Decimal) and amount.is_finite()):
                raise _money_error(f"{who}: cost on {day}", amount)
        if len({d for d, _ in daily}) != len(daily):
            raise ReportDataError(f"{who}: a day appears twice in the daily costs")
        months = _pairs(f"{who}: previous months", self.previous_months)
        if len(months) > PREVIOUS_MONTHS:
            raise ReportDataError(f"{who}: at most {PREVIOUS_MONTHS} previous months")
        for month, amount in months:
            _check_month(f"{who}: previous month", month)
            _check_money(f"{who}: total of {month}", amount)
        if len({m for m, _ in months}) != len(months):
            raise ReportDataError(f"{who}: a previous month appears twice")
        services = _pairs(f"{who}: top services", self.top_services)
        if len(services) > TOP_SERVICES:
            raise ReportDataError(f"{who}: at most {TOP_SERVICES} top services")
        for service, amount in services:
            _check_text(f"{who}: service name", service)
            _check_money(f"{who}: cost of {service}", amount)
        actions = tuple(self.actions)
        if any(not isinstance(a, Action) for a in actions):
            raise ReportDataError(f"{who}: actions must be Action values")
        daily.sort(key=itemgetter(0))
        months.sort(key=itemgetter(0))
        services.sort(key=lambda s: (-s[1], s[0]))
        actions = tuple(sorted(actions, key=attrgetter("at")))
        object.__setattr__(self, "thresholds_crossed", thresholds)
        object.__setattr__(self, "daily", tuple(daily))
        object.__setattr__(self, "previous_months", tuple(months))
        object.__setattr__(self, "top_services", tuple(services))
        object.__setattr__(self, "actions", actions)

    @property
    def ratio(self) -> float | None:
        """Month-to-date cost over budget (1.0 = the whole budget spent); None without one."""
        exact = self.ratio_exact
        return None if exact is None else float(exact)

    @property
    def ratio_exact(self) -> Decimal | None:
        """The ratio to four places, as CSV and text show it."""
        if self.budget is None:
            return None
        return (self.cost_mtd / self.budget).quantize(RATIO_PLACES, ROUND_HALF_UP)

    @property
    def status(self) -> BudgetStatus:
        """Spent beyond the budget wins over merely forecast beyond it."""
        if self.budget is None:
            return BudgetStatus.NO_BUDGET
        if self.cost_mtd > self.budget:
            return BudgetStatus.OVER
        if self.forecast > self.budget:
            return BudgetStatus.FORECAST_OVER
        return BudgetStatus.WITHIN


@dataclass(frozen=True, slots=True)
class CostReport:
    """A month's cost report for all tenants (``Scope.ALL``) or one (``Scope.TENANT``).

    ``generated_at`` is given, not read from a clock, so the same figures always
    render to the same bytes.
    """

    month: str
    generated_at: datetime
    currency: str
    scope: Scope
    tenants: Sequence[TenantCost] = ()
    _by_cost: tuple[TenantCost, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_month("report month", self.month)
        _check_aware("generated_at", self.generated_at)
        if self.currency not in CURRENCY_CODES:
            raise ReportDataError(f"currency must be an ISO 4217 code, got {self.currency!r}")
        try:
            scope = Scope(self.scope)
        except ValueError:
            raise ReportDataError(f"scope must be 'all' or 'tenant', got {self.scope!r}") from None
        tenants = tuple(self.tenants)
        if scope is Scope.TENANT and len(tenants) != 1:
            raise ReportDataError("a single-tenant report has exactly one tenant")
        ids: set[str] = set()
        first, last = self.first_day, self.last_day
        for tenant in tenants:
            if not isinstance(tenant, TenantCost):
                raise ReportDataError("tenants must be TenantCost values")
            if tenant.tenant_id in ids:
                raise ReportDataError(f"tenant {tenant.tenant_id} appears twice")
            ids.add(tenant.tenant_id)
            if tenant.daily and not (first <= tenant.daily[0][0] and tenant.daily[-1][0] <= last):
                raise ReportDataError(
                    f"tenant {tenant.tenant_id}: a daily cost is outside {self.month}"
                )
            if tenant.previous_months and tenant.previous_months[-1][0] >= self.month:
                raise ReportDataError(
                    f"tenant {tenant.tenant_id}: previous months must be before {self.month}"
                )
        object.__setattr__(self, "scope", scope)
        object.__setattr__(self, "tenants", tenants)
        by_cost = tuple(sorted(tenants, key=lambda t: (-t.cost_mtd, t.name, t.tenant_id)))
        object.__setattr__(self, "_by_cost", by_cost)

    @property
    def first_day(self) -> date:
        """First day of the report month."""
        return date(int(self.month[:4]), int(self.month[5:]), 1)

    @property
    def days_in_month(self) -> int:
        """Length of the month, for the budget pace line."""
        return calendar.monthrange(int(self.month[:4]), int(self.month[5:]))[1]

    @property
    def last_day(self) -> date:
        """Last day of the report month."""
        return self.first_day.replace(day=self.days_in_month)

    @property
    def month_title(self) -> str:
        """``October 2026``: English names, whatever the process locale."""
        return f"{MONTH_NAMES[int(self.month[5:]) - 1]} {self.month[:4]}"

    @property
    def scope_label(self) -> str:
        """``all tenants`` or the tenant's name."""
        if self.scope is Scope.ALL:
            return "all tenants"
        return self.tenants[0].name or self.tenants[0].tenant_id

    @property
    def title(self) -> str:
        """The report's title, as the HTML page and the PDF show it."""
        return f"Cost report {self.month_title} — {self.scope_label}"

    @property
    def empty_message(self) -> str:
        """What the report says instead of charts for a month without costs."""
        who = "any tenant" if self.scope is Scope.ALL else self.scope_label
        return f"No cost data for {self.month}: nothing was recorded for {who}."

    @property
    def file_stem(self) -> str:
        """``cost-report-2026-10-all`` or ``cost-report-2026-10-<tenant id>``: safe as a file name.

        The tenant id, not the name: ids are stable and unique, and anything
        outside ``[A-Za-z0-9._-]`` becomes ``_`` so no id can climb out of a directory.
        """
        who = "all" if self.scope is Scope.ALL else self.tenants[0].tenant_id
        return f"cost-report-{self.month}-{_UNSAFE_FILE_CHARS.sub('_', who).lstrip('.')}"

    @property
    def by_cost(self) -> tuple[TenantCost, ...]:
        """Tenants by month-to-date cost, highest first: the order of every table."""
        return self._by_cost

    @property
    def total_cost(self) -> Decimal:
        """Month-to-date cost of every tenant in the report."""
        return sum((t.cost_mtd for t in self.tenants), Decimal(0))

    @property
    def total_forecast(self) -> Decimal:
        """Forecast to month end of every tenant in the report."""
        return sum((t.forecast for t in self.tenants), Decimal(0))

    @property
    def total_budget(self) -> Decimal | None:
        """Sum of the budgets that exist; None when no tenant has one."""
        budgets = [t.budget for t in self.tenants if t.budget is not None]
        return sum(budgets, Decimal(0)) if budgets else None

    @property
    def budgeted_cost(self) -> Decimal:
        """Cost of the tenants that have a budget: what ``total_budget`` is compared with."""
        return sum((t.cost_mtd for t in self.tenants if t.budget is not None), Decimal(0))

    def count(self, status: BudgetStatus) -> int:
        """How many tenants are in ``status``."""
        return sum(1 for t in self.tenants if t.status is status)

    @property
    def has_cost_data(self) -> bool:
        """False for a month with no cost recorded: the report says so instead of drawing zeros."""
        return any(t.cost_mtd != 0 or t.daily for t in self.tenants)

    @property
    def daily_totals(self) -> tuple[tuple[date, Decimal], ...]:
        """Cost per day summed over the report's tenants, days ascending."""
        if self.scope is Scope.TENANT:
            return tuple(self.tenants[0].daily)
        # Indexed by day of month: every date was checked to lie in this month.
        sums: list[Decimal | None] = [None] * 32
        for tenant in self.tenants:
            for day, amount in tenant.daily:
                n = day.day
                total = sums[n]
                sums[n] = amount if total is None else total + amount
        first = self.first_day
        return tuple((first.replace(day=n), v) for n, v in enumerate(sums) if v is not None)

    @property
    def monthly_totals(self) -> tuple[tuple[str, Decimal], ...]:
        """Previous months' totals summed over the tenants (at most six), oldest first."""
        if self.scope is Scope.TENANT:
            return tuple(self.tenants[0].previous_months)
        sums: dict[str, Decimal] = {}
        for tenant in self.tenants:
            for month, amount in tenant.previous_months:
                sums[month] = sums.get(month, Decimal(0)) + amount
        return tuple(sorted(sums.items()))[-PREVIOUS_MONTHS:]

    @property
    def actions(self) -> tuple[tuple[TenantCost, Action], ...]:
        """Every action of the month with its tenant, oldest first."""
        pairs = [(t, a) for t in self.tenants for a in t.actions]
        pairs.sort(key=lambda p: (p[1].at, p[0].tenant_id))
        return tuple(pairs)


# ----------------------------------------------------------------------------- text


def format_money(value: Decimal, currency: str) -> str:
    """``1,234.50 EUR``: two decimals, half-up, thousands separated, the code after."""
    return f"{value.quantize(CENT, ROUND_HALF_UP):,.2f} {currency}"


def format_ratio(tenant: TenantCost) -> str:
    """``112.5 %`` of budget, or an em dash without a budget."""
    exact = tenant.ratio_exact
    if exact is None:
        return "—"
    return f"{(exact * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)} %"


def format_thresholds(tenant: TenantCost) -> str:
    """``50 %, 80 %``: the budget thresholds crossed this month."""
    return ", ".join(f"{t} %" for t in tenant.thresholds_crossed)


def _decimal_text(value: Decimal) -> str:
    return str(value.quantize(CENT, ROUND_HALF_UP))


def _amount(value: Decimal) -> str:
    return f"{value.quantize(CENT, ROUND_HALF_UP):,.2f}"


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
            value_text=_amount(v),
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
        "tenants": _tenants,
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
        "share": lambda v: _share(v, report.total_cost),
        "css": report_templates.CSS,
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


def _share(amount: Decimal, total: Decimal) -> str:
    if total <= 0:
        return "—"
    return f"{(amount / total * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)} %"


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
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(text: str) -> str:
    """Prefix an apostrophe to text a spreadsheet would run as a formula (CSV injection)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


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
            "" if t.budget is None else _decimal_text(t.budget),
            _decimal_text(t.cost_mtd),
            _decimal_text(t.forecast),
            "" if ratio is None else str(ratio),
            str(t.status),
            ";".join(str(x) for x in t.thresholds_crossed),
            csv_safe(top_name),
            "" if top_cost is None else _decimal_text(top_cost),
            str(len(t.actions)),
        )


def _tenant_rows(report: CostReport) -> Iterable[tuple[str, ...]]:
    t = report.tenants[0]
    head = (csv_safe(t.tenant_id), csv_safe(t.name), report.currency)
    m = report.month
    budget = "" if t.budget is None else _decimal_text(t.budget)
    ratio = "" if t.ratio_exact is None else str(t.ratio_exact)
    yield (*head, "summary", m, "budget", budget, "")
    yield (*head, "summary", m, "cost_mtd", _decimal_text(t.cost_mtd), "")
    yield (*head, "summary", m, "forecast", _decimal_text(t.forecast), "")
    yield (*head, "summary", m, "budget_ratio", ratio, "")
    thresholds = ";".join(str(x) for x in t.thresholds_crossed)
    yield (*head, "summary", m, "status", "", str(t.status))
    yield (*head, "summary", m, "thresholds_crossed", "", thresholds)
    for day, amount in t.daily:
        yield (*head, "day", day.isoformat(), "", _decimal_text(amount), "")
    for month, amount in t.previous_months:
        yield (*head, "month", month, "", _decimal_text(amount), "")
    yield (*head, "month", m, "to date", _decimal_text(t.cost_mtd), "")
    for service, amount in t.top_services:
        yield (*head, "service", m, csv_safe(service), _decimal_text(amount), "")
    for a in t.actions:
        at = a.at.isoformat(timespec="seconds")
        yield (*head, "action", at, csv_safe(a.kind), "", csv_safe(a.summary))


# ----------------------------------------------------------------------------- PDF

_LATIN1_FALLBACK = {
    "—": "-",
    "–": "-",
    "‐": "-",
    "−": "-",
    "…": "...",
    "‘": "'",
    "’": "'",
    "‚": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "•": "·",
    "€": "EUR",
    "\u00a0": " ",
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "Œ": "OE",
    "œ": "oe",
    "ı": "i",
}


def to_latin1(text: str) -> str:
    """Text the PDF core fonts can draw: accents kept where Latin-1 has them, else "?".

    Letters with a Latin-1 base keep it (``ő`` → ``o``); anything else becomes
    ``?``, so a name in another script is visibly replaced, never dropped or
    fatal. Control characters become spaces.
    """
    if text.isascii() and text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code < 0xA0:
            out.append(" ")
        elif code < 0x100:
            out.append(ch)
        elif ch in _LATIN1_FALLBACK:
            out.append(_LATIN1_FALLBACK[ch])
        else:
            base = unicodedata.normalize("NFKD", ch)
            kept = "".join(c for c in base if ord(c) < 0x100 and not unicodedata.combining(c))
            out.append(kept if kept and all(ord(c) >= 0x20 for c in kept) else "?")
    return "".join(out)


def find_unicode_font() -> Path | None:
    """DejaVu Sans where Debian's fonts-dejavu-core put it, if installed.

    Optional by design: without it the PDF falls back to the core fonts and
    ``to_latin1``, so a report never depends on a system package.
    """
    return DEJAVU_SANS if DEJAVU_SANS.is_file() else None


# Page geometry in millimetres (A4 portrait, 15 mm margins: 180 mm of width).
_BLUE = (31, 95, 168)
_RED = (163, 0, 27)
_GREY = (74, 74, 74)
_LIGHT = (207, 224, 245)
_INK = (27, 27, 27)


class _ReportPDF(fpdf.FPDF):
    """A4 pages with the report title and "page n of m" in the footer."""

    def __init__(self, report: CostReport, unicode_font: Path | None) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self._report = report
        self._glyph_widths: dict[tuple[str, str], dict[str, float]] = {}
        self._unicode = unicode_font is not None
        if unicode_font is not None:
            bold = unicode_font.with_name(f"{unicode_font.stem}-Bold{unicode_font.suffix}")
            self.add_font("report", "", unicode_font)
            self.add_font("report", "B", bold if bold.is_file() else unicode_font)
            self._face = "report"
        else:
            self._face = "helvetica"
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(auto=True, margin=18)
        self.set_creation_date(report.generated_at)
        self.set_title(self.t(report.title))
        self.set_author("tenantops")
        self.set_lang("en")

    def t(self, text: str) -> str:
        """Text as the current font can encode it."""
        return text if self._unicode else to_latin1(text)

    def use_font(self, size: float, *, bold: bool = False) -> None:
        self.set_font(self._face, "B" if bold else "", size)

    def footer(self) -> None:
        self.set_y(-12)
        self.use_font(8)
        self.set_text_color(*_GREY)
        label = f"{self._report.title} · page {self.page_no()} of {{nb}}"
        self.cell(0, 5, self.t(label), align="C")
        self.set_text_color(*_INK)

    def width(self, text: str) -> float:
        """Width in mm at the current font, from cached glyph widths.

        ``get_string_width`` costs ~50 µs a call; a 10,000-tenant table needs
        tens of thousands, so glyph widths are measured once per font.
        """
        key = (self.font_family, self.font_style)
        widths = self._glyph_widths.setdefault(key, {})
        total = 0.0
        for ch in text:
            w = widths.get(ch)
            if w is None:
                w = widths[ch] = self.get_string_width(ch) / self.font_size_pt
            total += w
        return total * self.font_size_pt

    def fit(self, text: str, width: float) -> str:
        """Cut ``text`` with "..." so it fits a cell ``width`` mm wide."""
        text = self.t(text)
        if self.width(text) <= width - 2:
            return text
        while text and self.width(text + "...") > width - 2:
            text = text[:-1]
        return text + "..."

    def heading(self, text: str, space: float = 30) -> None:
        """A section heading kept with at least ``space`` mm of what follows it."""
        if self.will_page_break(10 + space):
            self.add_page()
        self.ln(4)
        self.use_font(12, bold=True)
        self.cell(0, 7, self.t(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.use_font(9)

    def grid(
        self,
        columns: Sequence[tuple[str, float, str]],
        rows: Iterable[tuple[Sequence[str], bool]],
        flag_col: int | None = None,
    ) -> None:
        """Rows of cells; the header repeats on every page; a flagged row's ``flag_col`` is red."""

        def header() -> None:
            self.use_font(8, bold=True)
            self.set_fill_color(242, 242, 242)
            for title, width, align in columns:
                self.cell(width, 6, self.fit(title, width), border="B", align=align, fill=True)
            self.ln(6)
            self.use_font(8)

        header()
        # text() rather than cell(): ~20 µs instead of ~270 µs a cell, which is
        # what lets a 10,000-tenant table render in seconds.
        for cells, flagged in rows:
            if self.will_page_break(5):
                self.add_page()
                header()
            x, baseline = self.l_margin, self.get_y() + 3.6
            for i, ((_, width, align), text) in enumerate(zip(columns, cells, strict=True)):
                red = flagged and i == flag_col
                if red:
                    self.use_font(8, bold=True)
                    self.set_text_color(*_RED)
                shown = self.fit(text, width)
                left = x + width - 1 - self.width(shown) if align == "R" else x + 1
                self.text(left, baseline, shown)
                if red:
                    self.use_font(8)
                    self.set_text_color(*_INK)
                x += width
            self.ln(5)


def render_pdf(report: CostReport, *, unicode_font: Path | None = None) -> bytes:
    """An A4 PDF: summary, charts drawn with PDF primitives, tables, page numbers.

    With ``unicode_font`` (a TTF such as ``find_unicode_font()``) names print
    as they are; without it the core Helvetica is used and ``to_latin1``
    replaces what Latin-1 cannot hold.
    """
    pdf = _ReportPDF(report, unicode_font)
    pdf.add_page()
    cur = report.currency
    pdf.use_font(16, bold=True)
    pdf.multi_cell(0, 8, pdf.t(report.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.use_font(9)
    pdf.set_text_color(*_GREY)
    generated = report.generated_at.astimezone(UTC).isoformat(timespec="seconds")
    meta = f"Month {report.month} · currency {cur} · generated {generated}"
    pdf.cell(0, 5, pdf.t(meta), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*_INK)

    pdf.heading("Summary", space=20)
    for key, value, red in _summary_pairs(report):
        pdf.use_font(9, bold=True)
        pdf.cell(50, 5, pdf.t(key))
        pdf.use_font(9, bold=red)
        if red:
            pdf.set_text_color(*_RED)
        pdf.cell(0, 5, pdf.t(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(*_INK)
    if not report.has_cost_data:
        pdf.ln(3)
        pdf.use_font(10, bold=True)
        note = pdf.t(report.empty_message)
        pdf.multi_cell(0, 6, note, border=1, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    if report.tenants:
        chart = cost_chart(report)
        pdf.heading("Cost against budget", space=8 + 6 * len(chart.rows))
        _pdf_hbars(pdf, chart)
    if report.has_cost_data:
        pdf.heading("Trend", space=70)
        _pdf_trend(pdf, report)
        pdf.heading("Monthly cost", space=65)
        _pdf_months(pdf, report)

    money = f"({cur})"
    if report.scope is Scope.TENANT:
        tenant = report.tenants[0]
        pdf.heading("Top services", space=8 + 5 * len(tenant.top_services))
        if tenant.top_services:
            pdf.grid(
                [("Service", 110, "L"), (f"Cost to date {money}", 40, "R"), ("Share", 30, "R")],
                (
                    ((name, _amount(v), _share(v, report.total_cost)), False)
                    for name, v in tenant.top_services
                ),
            )
        else:
            pdf.cell(0, 5, "No service costs recorded.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    elif not report.tenants:
        pdf.heading("Tenants", space=15)
        pdf.cell(0, 5, "No tenants in this report.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    else:
        pdf.heading("Tenants (costliest first)", space=15)
        pdf.grid(
            [
                ("Tenant", 46, "L"),
                (f"Budget {money}", 26, "R"),
                (f"Cost {money}", 26, "R"),
                (f"Forecast {money}", 26, "R"),
                ("Used", 14, "R"),
                ("Status", 28, "L"),
                ("Actions", 14, "R"),
            ],
            (
                (
                    (
                        t.name,
                        "-" if t.budget is None else _amount(t.budget),
                        _amount(t.cost_mtd),
                        _amount(t.forecast),
                        format_ratio(t),
                        str(t.status),
                        str(len(t.actions)),
                    ),
                    t.status is BudgetStatus.OVER,
                )
                for t in report.by_cost
            ),
            flag_col=5,
        )

    pdf.heading("Actions taken", space=8 + 5 * min(len(report.actions), 8))
    if report.actions:
        single = report.scope is Scope.TENANT
        columns = [("When (UTC)", 30, "L"), ("Kind", 30, "L"), ("Summary", 120, "L")]
        if not single:
            columns = [("When (UTC)", 28, "L"), ("Tenant", 40, "L"), ("Kind", 25, "L")]
            columns.append(("Summary", 87, "L"))
        pdf.grid(
            columns,
            (
                (
                    (a.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),)
                    + (() if single else (t.name,))
                    + (a.kind, a.summary),
                    False,
                )
                for t, a in report.actions
            ),
        )
    else:
        pdf.cell(0, 5, "No actions this month.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


def _summary_pairs(report: CostReport) -> list[tuple[str, str, bool]]:
    cur = report.currency
    if report.scope is Scope.TENANT:
        t = report.tenants[0]
        return [
            ("Tenant", f"{t.name} ({t.tenant_id})", False),
            ("Budget", "-" if t.budget is None else format_money(t.budget, cur), False),
            ("Cost to date", format_money(t.cost_mtd, cur), False),
            ("Forecast to month end", format_money(t.forecast, cur), False),
            ("Budget used", format_ratio(t), False),
            ("Status", str(t.status), t.status is BudgetStatus.OVER),
            ("Thresholds crossed", format_thresholds(t) or "none", False),
        ]
    budget = report.total_budget
    over = report.count(BudgetStatus.OVER)
    return [
        ("Tenants", str(len(report.tenants)), False),
        ("Cost to date", format_money(report.total_cost, cur), False),
        ("Forecast to month end", format_money(report.total_forecast, cur), False),
        ("Budgets (sum)", "-" if budget is None else format_money(budget, cur), False),
        ("Over budget", _tenants(over), over > 0),
        ("Forecast over budget", _tenants(report.count(BudgetStatus.FORECAST_OVER)), False),
        ("Without a budget", _tenants(report.count(BudgetStatus.NO_BUDGET)), False),
    ]


def _tenants(n: int) -> str:
    return "1 tenant" if n == 1 else f"{n:,} tenants"


def _pdf_hbars(pdf: _ReportPDF, chart: HBarChart) -> None:
    """The SVG chart's geometry scaled from 800 user units to 180 mm."""
    k = 180 / SVG_WIDTH
    x0, y0 = pdf.l_margin, pdf.get_y()
    row_h = 6.0
    for i, bar in enumerate(chart.rows):
        y = y0 + i * row_h
        pdf.use_font(8)
        pdf.set_xy(x0, y)
        pdf.cell(LABEL_W * k, row_h, pdf.fit(bar.label, LABEL_W * k), align="R")
        pdf.set_fill_color(*(_RED if bar.over else _BLUE))
        if bar.width > 0:
            pdf.rect(x0 + BAR_X0 * k, y + 1, bar.width * k, row_h - 2, style="F")
        if bar.budget_x is not None:
            pdf.set_draw_color(0, 0, 0)
            pdf.set_line_width(0.6)
            pdf.line(x0 + bar.budget_x * k, y + 0.3, x0 + bar.budget_x * k, y + row_h - 0.3)
        pdf.set_xy(x0 + (BAR_X0 + BAR_W + 10) * k, y)
        if bar.over:
            pdf.use_font(8, bold=True)
            pdf.set_text_color(*_RED)
        pdf.cell(0, row_h, pdf.t(bar.value_text))
        pdf.set_text_color(*_INK)
    pdf.set_line_width(0.2)
    pdf.set_xy(x0, y0 + len(chart.rows) * row_h + 1)
    pdf.use_font(7)
    pdf.set_text_color(*_GREY)
    pdf.cell(0, 4, pdf.t(f"{chart.title}. Black marker: budget."))
    pdf.set_text_color(*_INK)
    pdf.ln(5)


def _pdf_trend(pdf: _ReportPDF, report: CostReport) -> None:
    chart = trend_chart(report)
    k = 180 / SVG_WIDTH
    x0, y0 = pdf.l_margin, pdf.get_y()

    def pts(points: str) -> list[tuple[float, float]]:
        pairs = (p.split(",") for p in points.split())
        return [(x0 + float(x) * k, y0 + float(y) * k) for x, y in pairs]

    pdf.use_font(7)
    pdf.set_draw_color(208, 208, 208)
    for tick in chart.y_ticks:
        y = y0 + tick.at * k
        pdf.line(x0 + PLOT_LEFT * k, y, x0 + (PLOT_LEFT + PLOT_W) * k, y)
        pdf.set_xy(x0, y - 2)
        pdf.cell((PLOT_LEFT - 6) * k, 4, pdf.t(tick.label), align="R")
    for tick in chart.x_ticks:
        pdf.set_xy(x0 + tick.at * k - 10, y0 + (PLOT_TOP + PLOT_H) * k + 2)
        pdf.cell(20, 4, pdf.t(tick.label), align="C")
    line = pts(chart.line)
    base = pts(chart.area.split()[0][1:])[0][1]
    pdf.set_fill_color(*_LIGHT)
    pdf.polygon([(line[0][0], base), *line, (line[-1][0], base)], style="F")
    pdf.set_draw_color(*_BLUE)
    pdf.set_line_width(0.7)
    pdf.polyline(line)
    if chart.forecast:
        pdf.set_dash_pattern(dash=0.6, gap=1.2)
        pdf.polyline(pts(chart.forecast))
    if chart.pace:
        pdf.set_draw_color(*_GREY)
        pdf.set_dash_pattern(dash=2, gap=1.2)
        pdf.polyline(pts(chart.pace))
    pdf.set_dash_pattern()
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_xy(x0, y0 + (PLOT_TOP + PLOT_H) * k + 7)
    legend = "Solid: cumulative cost. Dotted: forecast to month end."
    if chart.pace:
        legend += " Dashed grey: budget pace."
    pdf.set_text_color(*_GREY)
    pdf.cell(0, 4, pdf.t(legend), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*_INK)


def _pdf_months(pdf: _ReportPDF, report: CostReport) -> None:
    chart = months_chart(report)
    k = 180 / SVG_WIDTH
    x0, y0 = pdf.l_margin, pdf.get_y() + 4
    # The budget line goes first so the bars and their labels sit on top of it.
    if chart.budget_y is not None:
        pdf.set_draw_color(*_GREY)
        pdf.set_line_width(0.5)
        pdf.set_dash_pattern(dash=2, gap=1.2)
        y = y0 + chart.budget_y * k
        pdf.line(x0 + PLOT_LEFT * k, y, x0 + (PLOT_LEFT + PLOT_W) * k, y)
        pdf.set_dash_pattern()
    pdf.use_font(7)
    pdf.set_draw_color(*_BLUE)
    pdf.set_line_width(0.5)
    for bar in chart.bars:
        pdf.set_fill_color(*((255, 255, 255) if bar.current else _BLUE))
        x, w = x0 + bar.x * k, chart.bar_width * k
        if bar.height > 0:
            pdf.rect(x, y0 + bar.y * k, w, bar.height * k, style="DF")
        value = pdf.t(bar.value_text)
        text_w = pdf.width(value) + 1.5
        pdf.set_fill_color(255, 255, 255)
        pdf.set_xy(x + w / 2 - text_w / 2, y0 + bar.y * k - 4.2)
        pdf.cell(text_w, 3.6, value, align="C", fill=True)
        pdf.set_xy(x - 8, y0 + (PLOT_TOP + PLOT_H) * k + 1)
        label = f"{bar.label} (to date)" if bar.current else bar.label
        pdf.cell(w + 16, 4, pdf.t(label), align="C")
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_xy(x0, y0 + (PLOT_TOP + PLOT_H) * k + 6)
    legend = "Outlined bar: this month so far."
    if chart.budget_label:
        legend += f" Dashed grey: {chart.budget_label}."
    pdf.set_text_color(*_GREY)
    pdf.cell(0, 4, pdf.t(legend), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*_INK)
