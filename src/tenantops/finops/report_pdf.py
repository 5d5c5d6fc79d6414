"""The PDF rendering of a cost report (fpdf2), with a Unicode font when one is installed.

Reads only the model and the chart geometry, so the PDF shows exactly the
figures and bars of the HTML page.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC
from pathlib import Path

import fpdf
from fpdf.enums import XPos, YPos

from tenantops.finops.report_charts import (
    BAR_W,
    BAR_X0,
    LABEL_W,
    PLOT_H,
    PLOT_LEFT,
    PLOT_TOP,
    PLOT_W,
    SVG_WIDTH,
    HBarChart,
    cost_chart,
    months_chart,
    trend_chart,
)
from tenantops.finops.report_model import (
    DEJAVU_SANS,
    BudgetStatus,
    CostReport,
    Scope,
    amount_text,
    format_money,
    format_ratio,
    format_thresholds,
    share_text,
    tenants_text,
)

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
                    ((name, amount_text(v), share_text(v, report.total_cost)), False)
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
                        "-" if t.budget is None else amount_text(t.budget),
                        amount_text(t.cost_mtd),
                        amount_text(t.forecast),
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
        ("Over budget", tenants_text(over), over > 0),
        ("Forecast over budget", tenants_text(report.count(BudgetStatus.FORECAST_OVER)), False),
        ("Without a budget", tenants_text(report.count(BudgetStatus.NO_BUDGET)), False),
    ]


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
