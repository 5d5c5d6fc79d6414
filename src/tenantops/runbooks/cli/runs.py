"""``tenantops runs``: runbook runs on a server, over HTTP — list, show, watch, decide."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tenantops.kit.cli import DEFAULT_URL, Output, Token, Url, connect, terminal
from tenantops.runbooks.schemas import SlaStatus
from tenantops.runbooks.wording import countdown

runs_app = typer.Typer(
    help="Runbook runs on a server: list, show, watch, decide.", no_args_is_help=True
)

FINISHED = ("succeeded", "failed", "cancelled")
STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
    "running": "cyan",
    "ready": "cyan",
    "waiting": "yellow",
    "pending": "dim",
}


def _since(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _sla(sla: dict[str, Any] | None, status: str) -> str:
    """A run's or step's SLA clock in the run page's words (only a success is "met")."""
    clock = countdown(SlaStatus.model_validate(sla), status) if sla else None
    return "-" if clock is None else clock.text


def _tries(step: dict[str, Any]) -> str:
    """An action step's tries of this round against its maximum, and every try if more.

    ``attempt`` keeps counting across ``runs retry``; the maximum bounds a round.
    """
    if step["kind"] != "action":
        return "-"
    tries = f"{step['tries']}/{step['max_attempts']}"
    return tries if step["attempt"] == step["tries"] else f"{tries} ({step['attempt']} in all)"


def retry_hint(run: dict[str, Any]) -> str | None:
    """The one line that says how a failed run goes on (nothing retries it by itself), or
    that it was closed."""
    if run["status"] != "failed":
        return None
    if run.get("closed_at"):
        return f"closed: {run.get('closed_reason')} — it is not retried"
    if not run.get("retriable"):
        return None  # a person rejected it at a gate: a decision, nothing to retry
    return f"retry from the failed step: tenantops runs retry {run['id']}"


def status_text(status: str) -> Text:
    """A run or step status in its colour."""
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _evidence(step: dict[str, Any]) -> str:
    if step.get("window") and step["status"] == "ready" and step.get("wake_at"):
        return f"window {step['window']}: due {_since(step['wake_at'])} UTC"
    if step.get("error") and step["status"] != "succeeded":
        return f"error: {step['error']}"
    evidence = step.get("evidence") or {}
    return ", ".join(f"{k}={v}" for k, v in evidence.items() if v is not None)


def _steps_table(run: dict[str, Any]) -> Table:
    table = Table(
        "#",
        "step",
        "kind",
        "status",
        "tries",
        "took",
        "sla",
        "evidence / error",
        box=box.SIMPLE_HEAD,
    )
    for step in run["steps"]:
        what = step["action"] or (
            "gate: " + ", ".join(step["gate"]["roles"]) if step["gate"] else step["kind"]
        )
        table.add_row(
            str(step["position"] + 1),
            step["name"],
            what,
            status_text(step["status"]),
            _tries(step),
            _duration(step["duration_seconds"]),
            _sla(step["sla"], step["status"]),
            _evidence(step),
        )
    return table


def _header(run: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None)
    tenant = run["tenant_name"] or run["tenant_id"] or "-"
    for key, value in (
        ("run", run["id"]),
        ("runbook", f"{run['runbook_id']} {run['runbook_version']} ({run['runbook_hash'][:12]})"),
        ("tenant", tenant),
        ("status", run["status"]),
        ("progress", f"{run['steps_done']}/{run['steps_total']}"),
        ("current_step", run["current_step"] or "-"),
        ("started_by", run["started_by"]),
        ("created_at", _since(run["created_at"])),
        ("finished_at", _since(run["finished_at"])),
        ("sla", _sla(run["sla"], run["status"])),
        ("sla_deadline", _since(run["sla"]["deadline"]) if run["sla"] else "-"),
        ("error", run["error"] or "-"),
    ):
        table.add_row(f"[bold]{key}[/bold]", value)
    return table


def _show_run(run: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(run, indent=2))
        return
    terminal().print(Group(_header(run), _steps_table(run)))
    hint = retry_hint(run)
    if hint:
        typer.echo(hint)


@runs_app.command("list")
def list_runs(
    url: Url = DEFAULT_URL,
    token: Token = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant name or id")] = None,
    runbook: Annotated[str | None, typer.Option(help="Runbook id")] = None,
    status: Annotated[
        str | None, typer.Option(help="running|waiting|succeeded|failed|cancelled")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many")] = 50,
    as_json: Output = False,
) -> None:
    """List runs, newest first."""
    params = {
        k: v for k, v in {"tenant": tenant, "runbook": runbook, "status": status}.items() if v
    }
    with connect(url, token) as client:
        items = client.collect("/runs", params, limit)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table(
        "id",
        "runbook",
        "tenant",
        "status",
        "progress",
        "step",
        "sla",
        "started_by",
        "created",
        box=box.SIMPLE_HEAD,
    )
    for r in items:
        table.add_row(
            r["id"],
            r["runbook_id"],
            r["tenant_name"] or r["tenant_id"] or "-",
            status_text(r["status"]) + (" (closed)" if r.get("closed_at") else ""),
            f"{r['steps_done']}/{r['steps_total']}",
            r["current_step"] or "-",
            _sla(r["sla"], r["status"]),
            r["started_by"],
            _since(r["created_at"]),
        )
    terminal().print(table)
    if not items:
        typer.echo("no runs match")


@runs_app.command("show")
def show_run(
    run_id: str, url: Url = DEFAULT_URL, token: Token = None, as_json: Output = False
) -> None:
    """Show a run: every step with its status, tries, timing, SLA and evidence."""
    with connect(url, token) as client:
        _show_run(client.get(f"/runs/{run_id}"), as_json)


@runs_app.command("watch")
def watch_run(
    run_id: str,
    url: Url = DEFAULT_URL,
    token: Token = None,
    interval: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds between polls")] = 1.0,
) -> None:
    """Follow a run's step progress live until it finishes (Ctrl-C stops watching).

    Exits 0 when the run succeeded, 1 when it failed or was cancelled.
    """
    console = terminal()
    with connect(url, token) as client:
        run = client.get(f"/runs/{run_id}")
        try:
            with Live(
                Group(_header(run), _steps_table(run)),
                console=console,
                refresh_per_second=4,
                transient=False,
            ) as live:
                while run["status"] not in FINISHED:
                    time.sleep(interval)
                    run = client.get(f"/runs/{run_id}")
                    live.update(Group(_header(run), _steps_table(run)))
        except KeyboardInterrupt:
            typer.echo(f"stopped watching; run {run_id} is {run['status']}", err=True)
            raise typer.Exit(130) from None
    typer.echo(f"run {run_id} {run['status']}")
    hint = retry_hint(run)
    if hint:
        typer.echo(hint)
    if run["status"] != "succeeded":
        raise typer.Exit(1)


def _decide(
    run_id: str,
    step: str,
    decision: str,
    comment: str | None,
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    body = {"decision": decision, "comment": comment}
    with connect(url, token) as client:
        _show_run(client.post(f"/runs/{run_id}/gates/{step}", body), as_json)


@runs_app.command("approve")
def approve_gate(
    run_id: str,
    step: Annotated[str, typer.Argument(help="The gate step")],
    comment: str | None = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Approve an approval gate of a run (you need one of its roles, and not to have started it)."""
    _decide(run_id, step, "approve", comment, url, token, as_json)


@runs_app.command("reject")
def reject_gate(
    run_id: str,
    step: Annotated[str, typer.Argument(help="The gate step")],
    comment: Annotated[str, typer.Option(help="Why (required)")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Reject an approval gate: the run fails at that step."""
    _decide(run_id, step, "reject", comment, url, token, as_json)


@runs_app.command("cancel")
def cancel_run(
    run_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit trail)")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Cancel an unfinished run, or close a failed one that will not be retried."""
    with connect(url, token) as client:
        _show_run(client.post(f"/runs/{run_id}/cancel", {"reason": reason}), as_json)


@runs_app.command("retry")
def retry_run(
    run_id: str, url: Url = DEFAULT_URL, token: Token = None, as_json: Output = False
) -> None:
    """Retry a failed run from its failed step."""
    with connect(url, token) as client:
        _show_run(client.post(f"/runs/{run_id}/retry", None), as_json)
