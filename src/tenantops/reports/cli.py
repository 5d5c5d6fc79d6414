"""``tenantops reports``: the weekly SLA/SLO report, beside finance's monthly cost report.

The group lives here and registers the cost report's commands from
``tenantops.finops.cli``: reports depends on finops, never the reverse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tenantops.auth.cli import operator
from tenantops.config import Settings
from tenantops.errors import AppError
from tenantops.finops.cli import report_cost, report_schedule
from tenantops.kit.cli import DEFAULT_URL, Token, Url, download
from tenantops.kit.files import write_atomic
from tenantops.reports.actions import ensure_over, open_weekly_runs, schedule_week
from tenantops.reports.service import FORMATS
from tenantops.reports.weeks import IsoWeek, last_full_week
from tenantops.store import open_database

app = typer.Typer(
    help="Reports: the weekly SLA/SLO report for governance and the monthly cost report "
    "for finance; download them, and schedule their e-mails.",
    no_args_is_help=True,
)
app.command("cost")(report_cost)


def _week(text: str | None) -> IsoWeek:
    """The ``--week`` asked for, or the last full week; a bad one is a usage error."""
    if not text:
        return last_full_week()
    try:
        return IsoWeek.parse(text)
    except AppError as exc:
        raise typer.BadParameter(exc.detail, param_hint="'--week'") from None


@app.command("sla")
def report_sla(
    week: Annotated[
        str | None, typer.Option(help="ISO week YYYY-Www; default: the last full week (UTC)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="html, csv or json")] = "html",
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File to write; default: the report's name here"),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Download a week's SLA/SLO report and write it to a file."""
    if fmt not in FORMATS:
        raise typer.BadParameter(", ".join(FORMATS), param_hint="'--format'")
    period = _week(week)
    params = {"week": period.label, "format": fmt}
    body, name = download(url, token, "/api/v1/reports/sla", params, f"sla-report.{fmt}")
    if fmt == "json":
        name = f"sla-report-{period.label}.json"
    target = output or Path(name)
    write_atomic(target, body)
    typer.echo(f"wrote {target} ({len(body)} bytes)")


@app.command("schedule")
def schedule(
    month: Annotated[
        str | None,
        typer.Option(help="Cost report: first month, YYYY-MM; default: the previous month"),
    ] = None,
    sla: Annotated[
        bool, typer.Option("--sla", help="Schedule the weekly SLA/SLO report instead")
    ] = False,
    week: Annotated[
        str | None,
        typer.Option(help="SLA report: first week, YYYY-Www (implies --sla); default: the last"),
    ] = None,
) -> None:
    """Start the monthly cost report chain, or (--sla) the weekly SLA/SLO report chain.

    Runs on the local database and does nothing while a run of the chain is
    open: each run reports its period, mails finance (governance), waits until
    the next period is over and starts the next run, so this is needed once.
    The first run reports at once, so a week not over yet is refused.
    """
    if not (sla or week):
        report_schedule(month=month)
        return
    if month:
        raise typer.BadParameter(
            "--month is the cost report's; give --week", param_hint="'--month'"
        )
    period = _week(week)
    db = open_database(Settings())
    try:
        with db.write() as session:
            running = open_weekly_runs(session)
            if running:
                run = running[-1]
                typer.echo(
                    f"already scheduled: run {run.id} reports {run.inputs.get('week')} "
                    f"({run.status})"
                )
                return
            try:
                ensure_over(period)
            except AppError as exc:
                raise typer.BadParameter(exc.detail, param_hint="'--week'") from None
            run, started = schedule_week(session, period, actor=operator())
    finally:
        db.dispose()
    if started:
        typer.echo(f"scheduled: run {run.id} reports {period.label} and starts the next week's")
        behind = (last_full_week().monday - period.monday).days // 7
        if behind > 0:
            typer.echo(
                f"catching up: the {behind} week(s) after it, up to {last_full_week().label},"
                " are over too, so their reports follow at once, each mailed"
            )
    else:
        typer.echo(
            f"the report of {period.label} already ran (run {run.id}, {run.status}); "
            "pass --week for a later week"
        )
