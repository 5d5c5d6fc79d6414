"""The figures of a monthly cost report: frozen dataclasses, validated when built, and their text.

``CostReport``, ``TenantCost`` and ``Action`` hold money as ``Decimal`` and
check themselves in ``__post_init__`` (``ReportDataError``), so a renderer never
meets half-valid data. The text helpers (``format_money``…) live here because
every format must show the same figures the same way.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

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


def decimal_text(value: Decimal) -> str:
    return str(value.quantize(CENT, ROUND_HALF_UP))


def amount_text(value: Decimal) -> str:
    return f"{value.quantize(CENT, ROUND_HALF_UP):,.2f}"


def share_text(amount: Decimal, total: Decimal) -> str:
    if total <= 0:
        return "—"
    return f"{(amount / total * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)} %"


def tenants_text(n: int) -> str:
    return "1 tenant" if n == 1 else f"{n:,} tenants"
