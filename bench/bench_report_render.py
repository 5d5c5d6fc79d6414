"""Cost report rendering time for a large all-tenant month, in HTML, CSV and PDF.

Builds ``--tenants`` tenants (30 days of costs, 6 previous months, 5 services,
two actions each; one in four over budget) in memory, then renders each format
once and prints wall time and output size. The model build is timed too, since
validation runs there. No database: rendering is pure.

    .venv/bin/python bench/bench_report_render.py --tenants 10000
    .venv/bin/python bench/bench_report_render.py --tenants 10000 --unicode-font
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal

from tenantops.finops.report_render import (
    Action,
    CostReport,
    Scope,
    TenantCost,
    find_unicode_font,
    render_csv,
    render_html,
    render_pdf,
)


def build(tenants: int) -> CostReport:
    out = []
    for i in range(tenants):
        day_cost = Decimal(10 + i % 50) + Decimal(i % 100) / 100
        daily = [(date(2026, 10, d), day_cost) for d in range(1, 31)]
        cost = day_cost * 30
        over = i % 4 == 0
        budget = cost * (Decimal("0.8") if over else Decimal("1.25"))
        out.append(
            TenantCost(
                tenant_id=f"tn-{i:05d}",
                name=f"Tenant {i} Zürich-Ωmega",
                cost_mtd=cost,
                forecast=day_cost * 31,
                budget=budget.quantize(Decimal("0.01")),
                thresholds_crossed=(50, 80, 100) if over else (50, 80),
                daily=daily,
                previous_months=[(f"2026-{m:02d}", cost - m) for m in range(4, 10)],
                top_services=[(f"service-{s}", cost / (s + 2)) for s in range(5)],
                actions=[
                    Action(datetime(2026, 10, 12, 8, tzinfo=UTC), "alert", "80 % of budget"),
                    Action(datetime(2026, 10, 20, 9, tzinfo=UTC), "follow_up", "Review due"),
                ],
            )
        )
    return CostReport(
        month="2026-10",
        generated_at=datetime(2026, 10, 31, 6, tzinfo=UTC),
        currency="EUR",
        scope=Scope.ALL,
        tenants=out,
    )


def timed(label: str, fn: Callable[[], str | bytes | CostReport]) -> object:
    """Wall and CPU seconds: on a shared machine the CPU figure is the steadier one."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    size = f"{len(result) / 1e6:8.2f} MB" if isinstance(result, str | bytes) else ""
    print(f"{label:<18} {elapsed:8.2f} s wall {used:8.2f} s cpu {size}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument(
        "--unicode-font", action="store_true", help="render the PDF with DejaVu Sans if installed"
    )
    args = parser.parse_args()
    report = timed(f"build {args.tenants}", lambda: build(args.tenants))
    assert isinstance(report, CostReport)
    timed("html", lambda: render_html(report))
    timed("csv", lambda: render_csv(report))
    font = find_unicode_font() if args.unicode_font else None
    pdf = timed(
        f"pdf ({'DejaVu' if font else 'core fonts'})", lambda: render_pdf(report, unicode_font=font)
    )
    assert isinstance(pdf, bytes)
    print(f"pdf pages          {pdf.count(b'/Type /Page' + bytes([10])):8d}")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average       {load} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
