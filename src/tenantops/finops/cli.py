"""``tenantops finops``: cost imports, budgets, the ledger — all through the API.

``tenantops finops import FILE`` streams the file to ``POST /finops/imports``
with a progress bar (on stderr) and prints the import summary; a rejected
file prints one error line (with the first bad lines) and exits non-zero.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from tenantops.auth.cli import operator
from tenantops.config import Settings
from tenantops.errors import AppError
from tenantops.finops.actions import ensure_over, open_monthly_runs, schedule_month
from tenantops.finops.costs import Month as Period
from tenantops.finops.costs import cents
from tenantops.finops.reports import previous_month
from tenantops.kit.cli import DEFAULT_URL, Output, Token, Url, connect, download, terminal
from tenantops.kit.client import ClientError
from tenantops.kit.files import write_atomic
from tenantops.store import open_database

app = typer.Typer(help="FinOps: cost imports, budgets, the tenant ledger.", no_args_is_help=True)
budget_app = typer.Typer(help="Tenant budgets.", no_args_is_help=True)
app.add_typer(budget_app, name="budget")

CONTENT_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
UPLOAD_TIMEOUT = httpx.Timeout(15.0, read=1800.0, write=600.0)
Month = Annotated[str | None, typer.Option(help="YYYY-MM; default: this month")]


def _chunks(path: Path, progress: Progress, task: Any) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            progress.update(task, advance=len(chunk))
            yield chunk


def _guess(path: Path) -> str:
    with path.open("rb") as fh:
        return "parquet" if fh.read(4) == b"PAR1" else "csv"


def _problem_lines(exc: ClientError, body: dict[str, Any] | None) -> str:
    if not body or not body.get("errors"):
        return str(exc)
    first = "; ".join(
        f"line {e['line']}{' ' + e['column'] if e.get('column') else ''}: {e['message']}"
        for e in body["errors"][:5]
    )
    return f"{exc} (first: {first})"


def _money(exact: str) -> str:
    """An import's exact total (the API keeps every place, to reconcile with the file) in
    cents, as every other FinOps figure is shown."""
    return str(cents(Decimal(exact)))


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or parquet; default: from the content")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Import a FOCUS cost file (CSV or Parquet) and print the summary."""
    kind = (fmt or _guess(file)).lower()
    if kind not in CONTENT_TYPES:
        raise typer.BadParameter("csv or parquet", param_hint="'--format'")
    size = file.stat().st_size
    with connect(url, token) as client:
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        with progress:
            task = progress.add_task(f"uploading {file.name}", total=size)
            try:
                summary = client.request(
                    "POST",
                    "/finops/imports",
                    content=_chunks(file, progress, task),
                    headers={"content-type": CONTENT_TYPES[kind], "content-length": str(size)},
                    params={"filename": file.name, "format": kind},
                    timeout=UPLOAD_TIMEOUT,
                )
            except ClientError as exc:
                raise ClientError(_problem_lines(exc, getattr(exc, "body", None))) from exc
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    verb = "already imported as" if summary["duplicate"] else "imported"
    typer.echo(
        f"{verb} {summary['id']}: {summary['rows']} lines of {summary['billing_account_id']} "
        f"{summary['billing_period_start'][:10]}, {_money(summary['effective_cost'])} "
        f"{summary['currency']} effective"
    )
    typer.echo(
        f"allocated {summary['allocated_rows']} lines to {summary['summary'].get('tenants', 0)} "
        f"tenant(s); unallocated {summary['unallocated_rows']} lines "
        f"({_money(summary['unallocated_cost'])} {summary['currency']})"
    )
    for rule, count in summary["summary"].get("by_rule", {}).items():
        typer.echo(f"  rule {rule}: {count} lines")
    unknown = summary["summary"].get("unknown_tenants") or []
    if unknown:
        typer.echo("  unknown tenants: " + ", ".join(u["ref"] for u in unknown))
    for old in summary["summary"].get("supersedes") or []:
        typer.echo(f"  supersedes import {old}")


@app.command("imports")
def imports(
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 20,
    as_json: Output = False,
) -> None:
    """Cost imports, newest first."""
    with connect(url, token) as client:
        items = client.collect("/finops/imports", {}, limit)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("id", "file", "account", "period", "lines", "unallocated", "cost", "current")
    for i in items:
        table.add_row(
            i["id"],
            i["filename"],
            i["billing_account_id"],
            i["billing_period_start"][:7],
            str(i["rows"]),
            str(i["unallocated_rows"]),
            f"{i['effective_cost']} {i['currency']}",
            "no" if i["superseded_by"] else "yes",
        )
    terminal().print(table)


@app.command("costs")
def costs(
    month: Month = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 1000,
    as_json: Output = False,
) -> None:
    """Every tenant's cost, forecast and budget of a month."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"month": month} if month else {}
    with connect(url, token) as client:
        cursor = None
        while len(items) < limit:
            page = client.get(
                "/finops/costs",
                params={**params, "limit": min(1000, limit - len(items)), "cursor": cursor}
                if cursor
                else {**params, "limit": min(1000, limit - len(items))},
            )
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
    if as_json:
        typer.echo(json.dumps({"month": page["month"], "items": items}, indent=2))
        return
    table = Table("tenant", "cost", "forecast", "budget", "ratio", "crossed")
    for r in items:
        table.add_row(
            r["tenant_name"],
            f"{r['cost']} {r['currency']}",
            r["forecast"],
            r["budget"],
            r["ratio"] or "-",
            f"{r['crossed']}%" if r["crossed"] else "",
        )
    terminal().print(table)
    totals = ", ".join(f"{v} {c}" for c, v in page["total"].items()) or "0"
    unallocated = ", ".join(f"{v} {c}" for c, v in page["unallocated"].items()) or "0"
    typer.echo(f"{page['month']}: total {totals}; unallocated {unallocated}")


@budget_app.command("set")
def budget_set(
    tenant: str,
    amount: str,
    currency: Annotated[str | None, typer.Option(help="ISO 4217; default: the tenant's")] = None,
    thresholds: Annotated[
        str | None, typer.Option(help="Percentages, comma separated, e.g. 50,80,100,120")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Set a tenant's monthly budget."""
    body: dict[str, Any] = {"amount": amount}
    if currency:
        body["currency"] = currency
    if thresholds:
        try:
            body["thresholds"] = [int(t) for t in thresholds.split(",") if t.strip()]
        except ValueError as exc:
            raise typer.BadParameter(
                "comma-separated integers", param_hint="'--thresholds'"
            ) from exc
    with connect(url, token) as client:
        read = client.request("PUT", f"/tenants/{tenant}/budget", json=body)
    typer.echo(
        f"budget of {read['tenant_name']}: {read['amount']} {read['currency']}, thresholds "
        + ",".join(str(t) for t in read["thresholds"])
        + f" (version {read['version']})"
    )


@budget_app.command("show")
def budget_show(tenant: str, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """A tenant's budget and this month's cost against it."""
    with connect(url, token) as client:
        cost = client.get(f"/tenants/{tenant}/costs")
    typer.echo(
        f"{cost['tenant_name']} {cost['month']}: {cost['cost']} of {cost['budget']} "
        f"{cost['currency']} (ratio {cost['ratio']}), forecast {cost['forecast']}"
    )


@app.command("ledger")
def ledger(
    tenant: str,
    url: Url = DEFAULT_URL,
    token: Token = None,
    kind: Annotated[list[str] | None, typer.Option(help="Only these kinds (repeatable)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: Output = False,
) -> None:
    """A tenant's ledger, newest first."""
    with connect(url, token) as client:
        page = client.get(f"/tenants/{tenant}/ledger", params={"limit": limit, "kind": kind or []})
    if as_json:
        typer.echo(json.dumps(page["items"], indent=2))
        return
    table = Table("seq", "at", "kind", "what", "amount", "by")
    for e in page["items"]:
        what = e["service_name"] or e["ref"] or ""
        amount = e["effective_cost"] or e["amount"] or ""
        table.add_row(
            str(e["seq"]),
            e["at"][:19].replace("T", " "),
            e["kind"],
            what,
            f"{amount} {e['currency'] or ''}".strip(),
            e["actor"],
        )
    terminal().print(table)
    if not page["items"]:
        typer.echo("the ledger is empty")


# ----------------------------------------------------------------------------- reviews

review_app = typer.Typer(help="Budget Review checklists.", no_args_is_help=True)
app.add_typer(review_app, name="review")


@review_app.command("start")
def review_start(
    tenant: str,
    month: Month = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Start the Budget Review of a tenant's month; another finance user completes it."""
    with connect(url, token) as client:
        run = client.post(
            f"/tenants/{tenant}/budget-reviews", json={"month": month} if month else {}
        )
    typer.echo(
        f"budget review {run['inputs']['month']} of {run.get('tenant_name') or tenant} "
        f"started: run {run['id']} ({run['status']}); finance decides its gates: "
        f"tenantops runs approve {run['id']} review-spend ..."
    )


# ----------------------------------------------------------------------------- reports

# ``tenantops reports`` (tenantops.reports.cli) registers these two beside the SLA report.


def report_cost(
    month: Annotated[str | None, typer.Option(help="YYYY-MM; default: the previous month")] = None,
    tenant: Annotated[
        str | None, typer.Option(help="One tenant (id or name); default: all")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="html, csv or pdf")] = "html",
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File to write; default: the report's name here"),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Download a month's cost report and write it to a file."""
    if fmt not in ("html", "csv", "pdf"):
        raise typer.BadParameter("html, csv or pdf", param_hint="'--format'")
    params = {"format": fmt}
    if month:
        params["month"] = month
    if tenant:
        params["tenant"] = tenant
    body, name = download(url, token, "/api/v1/finops/reports/cost", params, "cost-report")
    target = output or Path(name)
    write_atomic(target, body)
    typer.echo(f"wrote {target} ({len(body)} bytes)")


def report_schedule(
    month: Annotated[
        str | None,
        typer.Option(help="First month to report, YYYY-MM; default: the previous month"),
    ] = None,
) -> None:
    """Start the monthly report chain (local database); does nothing while a run is open.

    Each run reports its month, mails finance, waits until the next month is
    over and starts the next run, so this is needed once per installation.
    """
    db = open_database(Settings())
    try:
        with db.write() as session:
            running = open_monthly_runs(session)
            if running:
                run = running[-1]
                typer.echo(
                    f"already scheduled: run {run.id} reports {run.inputs.get('month')} "
                    f"({run.status})"
                )
                return
            period = Period.parse(month) if month else previous_month()
            try:
                ensure_over(period)
            except AppError as exc:
                raise typer.BadParameter(exc.detail, param_hint="'--month'") from None
            run, started = schedule_month(session, period, actor=operator())
    finally:
        db.dispose()
    if started:
        typer.echo(f"scheduled: run {run.id} reports {period.label} and starts the next month's")
        last = previous_month()
        behind = (last.first.year - period.first.year) * 12 + last.first.month - period.first.month
        if behind > 0:
            typer.echo(
                f"catching up: the {behind} month(s) after it, up to {last.label}, are over"
                " too, so their reports follow at once, each mailed"
            )
    else:
        typer.echo(
            f"the report of {period.label} already ran (run {run.id}, {run.status}); "
            "pass --month for a later month"
        )
