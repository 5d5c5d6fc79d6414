"""Monthly cost report rendering: what finance reads in the HTML, CSV and PDF.

Pure tests: the renderer takes a plain ``CostReport`` and touches no store.
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest

from tenantops.finops import report_templates
from tenantops.finops.report_pdf import find_unicode_font, render_pdf, to_latin1
from tenantops.finops.report_render import (
    ALL_TENANTS_COLUMNS,
    TENANT_COLUMNS,
    Action,
    BudgetStatus,
    CostReport,
    ReportDataError,
    Scope,
    TenantCost,
    csv_safe,
    format_money,
    render_csv,
    render_html,
)
from tenantops.kit.documents import CSS

D = Decimal
GENERATED = datetime(2026, 10, 21, 6, 0, tzinfo=UTC)


def tenant(
    tenant_id: str = "t-1",
    name: str = "Acme",
    *,
    daily_cost: str = "40.25",
    days: int = 20,
    budget: str | None = "1000.00",
    **overrides: Any,
) -> TenantCost:
    daily = [(date(2026, 10, d), D(daily_cost)) for d in range(1, days + 1)]
    cost = sum((v for _, v in daily), D(0))
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "name": name,
        "cost_mtd": cost,
        "forecast": (cost / days * 31).quantize(D("0.01")) if days else D(0),
        "budget": None if budget is None else D(budget),
        "thresholds_crossed": (50, 80),
        "daily": daily,
        "previous_months": [(f"2026-{m:02d}", D(900 + m)) for m in range(4, 10)],
        "top_services": [("compute", cost / 2), ("storage", cost / 4)],
        "actions": [],
    }
    fields.update(overrides)
    return TenantCost(**fields)


def report(*tenants: TenantCost, scope: Scope = Scope.ALL) -> CostReport:
    return CostReport(
        month="2026-10", generated_at=GENERATED, currency="EUR", scope=scope, tenants=tenants
    )


OVER = tenant(
    "t-over",
    "Zürich-Ωmega",
    daily_cost="70.25",
    thresholds_crossed=(50, 80, 100),
    actions=[
        Action(datetime(2026, 10, 15, 9, 30, tzinfo=UTC), "alert", "Budget 100 % crossed"),
        Action(datetime(2026, 10, 15, 10, 0, tzinfo=UTC), "rate_limit", "Token bucket 50 req/s"),
    ],
)


class Page(HTMLParser):
    """Collects the elements and text a test wants to look at."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.svg_children: list[list[str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "svg":
            self.svg_children.append([])
        elif self.stack and self.stack[-1] == "svg":
            self.svg_children[-1].append(tag)
        if tag not in {"meta", "rect", "line", "polyline", "path"}:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def pdf_text(pdf: bytes) -> str:
    """The page content streams, inflated: what a core-font PDF draws, as Latin-1."""
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            out.append(zlib.decompress(m.group(1)).decode("latin-1"))
        except zlib.error:
            continue
    return "\n".join(out)


def pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b(?!s)", pdf))


# ----------------------------------------------------------------------------- model


def test_status_and_ratio_follow_the_budget() -> None:
    assert OVER.status is BudgetStatus.OVER
    assert OVER.ratio == pytest.approx(1.405)
    assert tenant(daily_cost="35.00").status is BudgetStatus.FORECAST_OVER
    assert tenant(daily_cost="10.00").status is BudgetStatus.WITHIN
    no_budget = tenant(budget=None)
    assert no_budget.status is BudgetStatus.NO_BUDGET
    assert no_budget.ratio is None


def test_report_totals_sum_the_tenants() -> None:
    r = report(tenant("a", daily_cost="10.00"), tenant("b", daily_cost="5.00", budget=None))
    assert r.total_cost == D("300.00")
    assert r.total_budget == D("1000.00")
    assert r.daily_totals[0] == (date(2026, 10, 1), D("15.00"))
    assert r.monthly_totals[-1] == ("2026-09", D(1818))


def test_sequences_are_put_in_one_order() -> None:
    t = tenant(
        top_services=[("b", D(1)), ("a", D(5)), ("c", D(1))],
        daily=[(date(2026, 10, 3), D(1)), (date(2026, 10, 1), D(2))],
    )
    assert [s for s, _ in t.top_services] == ["a", "b", "c"]
    assert [d.day for d, _ in t.daily] == [1, 3]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: tenant(cost_mtd=12.5), "must be a Decimal"),
        (lambda: tenant(forecast=D("NaN")), "finite"),
        (lambda: tenant(budget="0"), "budget must be positive"),
        (lambda: tenant(top_services=[(f"s{i}", D(i)) for i in range(6)]), "at most 5"),
        (lambda: tenant(previous_months=[(f"2026-0{m}", D(1)) for m in range(1, 8)]), "at most 6"),
        (lambda: tenant(previous_months=[("2026-13", D(1))]), "YYYY-MM"),
        (lambda: tenant(daily=[(date(2026, 10, 1), D(1))] * 2), "appears twice"),
        (lambda: tenant(thresholds_crossed=(0,)), "thresholds"),
        (lambda: Action(datetime(2026, 10, 1), "alert", "naive"), "timezone-aware"),  # noqa: DTZ001
        (lambda: tenant(tenant_id=""), "tenant id"),
        (lambda: tenant(daily=[(date(2026, 10, 1),)]), "pairs"),
        (lambda: tenant(daily=[(datetime(2026, 10, 1, tzinfo=UTC), D(1))]), "must be dates"),
        (lambda: tenant(top_services=[("a", 1.5), ("b", D(1))]), "cost of a must be a Decimal"),
        (lambda: tenant(actions=["alert"]), "Action values"),
    ],
)
def test_bad_tenant_figures_are_refused(build: Any, message: str) -> None:
    with pytest.raises(ReportDataError, match=message):
        build()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"month": "2026-1"}, "YYYY-MM"),
        ({"currency": "EURO"}, "ISO 4217"),
        ({"generated_at": datetime(2026, 10, 21)}, "timezone-aware"),  # noqa: DTZ001
        ({"scope": "some"}, "scope"),
        ({"scope": Scope.TENANT, "tenants": ()}, "exactly one"),
        ({"tenants": (tenant("a"), tenant("a"))}, "appears twice"),
        ({"month": "2026-09"}, "outside 2026-09"),
        (
            {"tenants": (tenant(previous_months=[("2026-10", D(1))]),)},
            "previous months must be before",
        ),
    ],
)
def test_bad_report_figures_are_refused(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "month": "2026-10",
        "generated_at": GENERATED,
        "currency": "EUR",
        "scope": Scope.ALL,
        "tenants": (tenant(),),
    }
    fields.update(kwargs)
    with pytest.raises(ReportDataError, match=message):
        CostReport(**fields)


def test_money_has_two_decimals_rounded_half_up_and_the_code() -> None:
    assert format_money(D("1234.5"), "EUR") == "1,234.50 EUR"
    assert format_money(D("2.005"), "USD") == "2.01 USD"
    assert format_money(D("-0.125"), "CHF") == "-0.13 CHF"


def test_file_stem_is_safe_for_any_tenant_id() -> None:
    assert report(tenant()).file_stem == "cost-report-2026-10-all"
    one = report(tenant("../../etc/x y"), scope=Scope.TENANT)
    assert one.file_stem == "cost-report-2026-10-_.._etc_x_y"
    assert "/" not in one.file_stem


# ----------------------------------------------------------------------------- HTML


def test_single_tenant_page_shows_the_figures() -> None:
    html = render_html(report(OVER, scope=Scope.TENANT))
    page = parse(html)
    assert ("html", {"lang": "en"}) in page.tags
    assert "<title>Cost report October 2026 — Zürich-Ωmega</title>" in html
    for figure in ("1,000.00 EUR", "1,405.00 EUR", "2,177.75 EUR", "140.5 %", "50 %, 80 %, 100 %"):
        assert figure in html
    assert "Budget 100 % crossed" in html
    assert "rate_limit" in html
    assert "2026-10-15 09:30" in html
    assert [t for t, _ in page.tags if t in {"h1", "h2"}][:2] == ["h1", "h2"]


def test_all_tenant_page_marks_over_budget_in_words() -> None:
    html = render_html(report(tenant("t-ok", "Calm Ltd", daily_cost="10.00"), OVER))
    text = " ".join(parse(html).text)
    assert "over budget" in text
    assert "OVER BUDGET" in text  # on the chart bar, not just its red fill
    assert "1 tenant" in text
    # costliest first in the table
    assert text.index("Zürich-Ωmega") < text.index("Calm Ltd")


def test_names_are_escaped_everywhere() -> None:
    evil = "<script>alert('x')</script>"
    t = tenant(
        "t-<x>",
        evil,
        top_services=[(evil, D(10))],
        actions=[Action(GENERATED, evil, evil)],
    )
    for r in (report(t), report(t, scope=Scope.TENANT)):
        html = render_html(r)
        assert "<script" not in html
        assert "&lt;script&gt;" in html
        assert "t-&lt;x&gt;" in html


def test_page_stands_alone_and_is_accessible() -> None:
    html = render_html(report(OVER, tenant("t-2", "Other"), tenant("t-3", "Third")))
    page = parse(html)
    tags = [t for t, _ in page.tags]
    assert "script" not in tags
    assert "link" not in tags
    assert "img" not in tags
    assert not re.search(r"(src|href)=", html)
    assert all(a.get("scope") in {"col", "row"} for t, a in page.tags if t == "th")
    svgs = [a for t, a in page.tags if t == "svg"]
    assert len(svgs) == 3
    for attrs, children in zip(svgs, page.svg_children, strict=True):
        assert attrs["role"] == "img"
        assert children[:2] == ["title", "desc"]
        title_id, desc_id = (attrs["aria-labelledby"] or "").split()
        ids = {a.get("id") for _, a in page.tags}
        assert {title_id, desc_id} <= ids


def relative_luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_text_colours_reach_4_5_to_1_on_white() -> None:
    templates = CSS + report_templates.CHARTS
    colours = set(re.findall(r"(?<![-\w])color:\s*(#[0-9a-fA-F]{6})", templates))
    colours |= set(re.findall(r"fill:\s*(#[0-9a-fA-F]{6})", templates))
    assert colours >= {"#1b1b1b", "#4a4a4a", "#a3001b"}
    for colour in colours:
        ratio = (1.0 + 0.05) / (relative_luminance(colour) + 0.05)
        assert ratio >= 4.5, colour


def test_actions_show_in_utc_whatever_zone_they_came_in() -> None:
    cet = timezone(timedelta(hours=2))
    t = tenant(actions=[Action(datetime(2026, 10, 15, 11, 30, tzinfo=cet), "alert", "x")])
    assert "2026-10-15 09:30" in render_html(report(t, scope=Scope.TENANT))


# ----------------------------------------------------------------------------- CSV


def test_all_tenant_csv_parses_back_to_the_same_figures() -> None:
    text = render_csv(report(tenant("t-ok", "Calm", daily_cost="10.00", budget=None), OVER))
    assert text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0].keys()) == ALL_TENANTS_COLUMNS
    assert [r["tenant_id"] for r in rows] == ["t-over", "t-ok"]
    over, calm = rows
    assert over["tenant_name"] == "Zürich-Ωmega"
    assert D(over["cost_mtd"]) == D("1405.00")
    assert over["budget"] == "1000.00"
    assert over["budget_ratio"] == "1.4050"
    assert over["status"] == "over budget"
    assert over["thresholds_crossed"] == "50;80;100"
    assert over["top_service"] == "compute"
    assert over["actions"] == "2"
    assert calm["budget"] == ""
    assert calm["budget_ratio"] == ""
    assert calm["status"] == "no budget"


def test_single_tenant_csv_is_one_long_table() -> None:
    rows = list(csv.reader(io.StringIO(render_csv(report(OVER, scope=Scope.TENANT)))))
    assert tuple(rows[0]) == TENANT_COLUMNS
    records = [r[3] for r in rows[1:]]
    assert records.count("day") == 20
    assert records.count("month") == 7
    assert records.count("service") == 2
    assert records.count("action") == 2
    summary = {r[5]: (r[6], r[7]) for r in rows[1:] if r[3] == "summary"}
    assert summary["cost_mtd"] == ("1405.00", "")
    assert summary["budget_ratio"] == ("1.4050", "")
    assert summary["status"] == ("", "over budget")
    assert summary["thresholds_crossed"] == ("", "50;80;100")
    for row in rows[1:]:
        if row[6]:
            Decimal(row[6])  # every amount is a plain decimal string


@pytest.mark.parametrize("name", ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\t=x", "\rx"])
def test_csv_formula_injection_is_defused(name: str) -> None:
    t = tenant(
        name=name,
        top_services=[(name, D(1))],
        actions=[Action(GENERATED, name, name)],
    )
    all_rows = list(csv.DictReader(io.StringIO(render_csv(report(t)))))
    assert all_rows[0]["tenant_name"] == "'" + name
    assert all_rows[0]["top_service"] == "'" + name
    one = list(csv.reader(io.StringIO(render_csv(report(t, scope=Scope.TENANT)))))
    cells = [c for row in one[1:] for c in row]
    assert name not in cells
    assert "'" + name in cells


def test_csv_safe_leaves_ordinary_text_and_amounts_alone() -> None:
    assert csv_safe("Zürich") == "Zürich"
    negative = tenant(daily_cost="-1.50")  # a credit month
    rows = list(csv.DictReader(io.StringIO(render_csv(report(negative)))))
    assert rows[0]["cost_mtd"] == "-30.00"


# ----------------------------------------------------------------------------- PDF


def test_pdf_has_the_title_figures_and_page_numbers() -> None:
    pdf = render_pdf(report(OVER, scope=Scope.TENANT))
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert pdf_pages(pdf) >= 1
    text = pdf_text(pdf)
    assert "Cost report October 2026 - Z\xfcrich-?mega" in text
    for figure in ("1,405.00 EUR", "over budget", "OVER BUDGET", "50 %, 80 %, 100 %", "compute"):
        assert figure in text
    assert "page 1 of" in text


def test_pdf_is_the_same_bytes_for_the_same_report() -> None:
    r = report(OVER, tenant("t-2"))
    assert render_pdf(r) == render_pdf(r)


def test_long_tenant_table_runs_over_several_pages() -> None:
    tenants = [tenant(f"t-{i:03d}", f"Tenant {i}", days=3) for i in range(300)]
    pdf = render_pdf(report(*tenants))
    pages = pdf_pages(pdf)
    assert pages > 5
    text = pdf_text(pdf)
    assert f"page {pages} of" in text
    # the header row repeats on every page the table spans, and no tenant is lost
    assert text.count("Forecast \\(EUR\\)") >= pages - 2
    assert all(f"(Tenant {i})" in text for i in range(300))


def test_non_latin_names_do_not_break_the_core_font_pdf() -> None:
    names = ["Zürich-Ωmega", "東京 tenant", "Ōsaka — “quoted”", "tab\tand\x00nul"]
    tenants = [tenant(f"t-{i}", n, top_services=[(n, D(1))]) for i, n in enumerate(names)]
    pdf = render_pdf(report(*tenants))
    text = pdf_text(pdf)
    assert "Z\xfcrich-?mega" in text
    assert "?? tenant" in text
    assert 'Osaka - "quoted"' in text


@pytest.mark.skipif(find_unicode_font() is None, reason="DejaVu Sans is not installed")
def test_a_unicode_font_prints_names_as_they_are() -> None:
    font = find_unicode_font()
    pdf = render_pdf(report(OVER, scope=Scope.TENANT), unicode_font=font)
    assert pdf.startswith(b"%PDF-")
    assert b"DejaVuSans" in pdf


def test_to_latin1_keeps_what_latin1_has() -> None:
    assert to_latin1("Zürich-Ωmega") == "Zürich-?mega"
    assert to_latin1("Łódź") == "Lódz"
    assert to_latin1("a—b…") == "a-b..."
    assert to_latin1("x\ny\x85") == "x y "
    assert to_latin1("plain") == "plain"


# ----------------------------------------------------------------------------- empty month


@pytest.mark.parametrize(
    "r",
    [
        report(),
        report(tenant(days=0, previous_months=[], top_services=[])),
        report(tenant(days=0, top_services=[]), scope=Scope.TENANT),
    ],
    ids=["no-tenants", "tenant-without-costs", "single-tenant-without-costs"],
)
def test_a_month_without_costs_says_so(r: CostReport) -> None:
    html = render_html(r)
    assert "No cost data for 2026-10" in html
    assert 'role="status"' in html
    assert "chart-daily" not in html
    rows = list(csv.reader(io.StringIO(render_csv(r))))
    assert len(rows) >= 1
    pdf = render_pdf(r)
    assert pdf.startswith(b"%PDF-")
    assert "No cost data for 2026-10" in pdf_text(pdf)


def test_ten_thousand_tenants_all_reach_the_html_and_csv() -> None:
    tenants = [
        TenantCost(
            tenant_id=f"t-{i:05d}",
            name=f"Tenant {i}",
            cost_mtd=D(i) / 100,
            forecast=D(i) / 50,
            budget=D(50),
            daily=[(date(2026, 10, 1 + i % 28), D(i) / 100)],
        )
        for i in range(10_000)
    ]
    r = report(*tenants)
    rows = list(csv.DictReader(io.StringIO(render_csv(r))))
    assert len(rows) == 10_000
    assert rows[0]["tenant_id"] == "t-09999"
    assert sum(D(row["cost_mtd"]) for row in rows) == r.total_cost
    html = render_html(r)
    assert html.count('<tr><th scope="row">Tenant ') == 10_000
    assert "4,999 tenants" in html  # over budget: cost above 50.00
