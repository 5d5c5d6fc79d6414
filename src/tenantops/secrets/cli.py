"""``tenantops secrets``: the secrets inventory and its rotations, over HTTP; ``schedule``
starts the daily check on the local database (as ``reports schedule`` does)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tenantops.auth.cli import operator
from tenantops.config import Settings
from tenantops.kit.cli import DEFAULT_URL, Output, Token, Url, connect, terminal
from tenantops.kit.clock import utcnow
from tenantops.secrets.actions import open_check_runs, schedule_day
from tenantops.secrets.service import RotationStatus
from tenantops.store import open_database

secrets_app = typer.Typer(
    help="Secrets rotation: the inventory (metadata only), due and overdue secrets, rotations.",
    no_args_is_help=True,
)

TenantArg = Annotated[str, typer.Argument(help="Tenant id or name")]
PathArg = Annotated[str, typer.Argument(help="The secret's path in the tenant's store")]


def _when(value: str | None) -> str:
    return "-" if not value else value[:16].replace("T", " ")


def _table(items: list[dict[str, Any]]) -> Table:
    table = Table(
        "tenant",
        "path",
        "status",
        "next due (UTC)",
        "last rotated",
        "every",
        "owner",
        "store",
        box=box.SIMPLE_HEAD,
    )
    for s in items:
        table.add_row(
            s["tenant_name"],
            s["path"],
            s["status"],
            _when(s["next_due_at"]),
            _when(s["last_rotated_at"]),
            f"{s['rotation_days']}d",
            s["owner"] or "-",
            s["store_status"],
        )
    return table


def _show(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(items, indent=2))
    else:
        terminal().print(_table(items))


@secrets_app.command("list")
def list_secrets(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (id or name)")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue secrets")] = False,
    status: Annotated[
        RotationStatus | None, typer.Option(help="Only secrets in this state")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Secrets soonest due first: status, next due date, last rotation, cycle, owner."""
    if overdue and status not in (None, RotationStatus.OVERDUE):
        raise typer.BadParameter("--overdue and --status differ", param_hint="'--status'")
    params: dict[str, Any] = {"limit": 1000}
    if tenant:
        params["tenant"] = tenant
    if overdue or status:
        params["status"] = (status or RotationStatus.OVERDUE).value
    with connect(url, token) as client:
        items = client.get("/secrets", params=params)["items"]
    if items or as_json:
        _show(items, as_json)
    elif params.keys() - {"limit"}:
        typer.echo("no secrets match")
    else:
        # What a new installation sees: nothing fills the inventory until the check runs.
        typer.echo(
            "the inventory is empty: the daily rotation check fills it from every tenant's "
            "secret store; start it once with: tenantops secrets schedule"
        )


@secrets_app.command("register")
def register(
    tenant: TenantArg,
    path: PathArg,
    every: Annotated[int, typer.Option("--every", help="Rotation cycle in days", min=1)],
    owner: Annotated[
        str | None, typer.Option(help="Who rotates it: an e-mail address or slack:/teams: channel")
    ] = None,
    purpose: Annotated[str | None, typer.Option(help="What the secret is for")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Register a secret's owner, purpose and cycle (audited; wins over the store's metadata)."""
    body = {"path": path, "owner": owner, "purpose": purpose, "rotation_days": every}
    with connect(url, token) as client:
        entry = client.request("PUT", f"/secrets/{tenant}/registrations", json=body)
    _show([entry], as_json)


@secrets_app.command("rotated")
def rotated(
    tenant: TenantArg,
    path: PathArg,
    evidence: Annotated[
        str, typer.Option(help="Where the rotation is evidenced: change ticket, CI job, run")
    ],
    at: Annotated[
        datetime | None,
        typer.Option(help="When it was rotated (ISO 8601, UTC if no zone); default now"),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Record a rotation you made (audited; announced as secret.rotated)."""
    body: dict[str, Any] = {"path": path, "evidence": evidence}
    if at is not None:
        body["rotated_at"] = (at if at.tzinfo else at.replace(tzinfo=utcnow().tzinfo)).isoformat()
    with connect(url, token) as client:
        entry = client.post(f"/secrets/{tenant}/rotations", json=body)
    if as_json:
        typer.echo(json.dumps(entry, indent=2))
        return
    typer.echo(
        f"recorded: {entry['tenant_name']} {entry['path']} rotated "
        f"{_when(entry['last_rotated_at'])} UTC, next due {_when(entry['next_due_at'])} UTC"
    )


@secrets_app.command("schedule")
def schedule() -> None:
    """Start the daily rotation check (local database); does nothing while one is open.

    Each run refreshes the inventory, announces what became due, tells the
    owners, waits until 06:00 UTC the next day and starts the next run, so this
    is needed once per installation.
    """
    db = open_database(Settings())
    try:
        with db.write() as session:
            running = open_check_runs(session)
            if running:
                run = running[-1]
                typer.echo(
                    f"already scheduled: run {run.id} checks {run.inputs.get('day')} ({run.status})"
                )
                return
            run, _ = schedule_day(session, utcnow().date(), actor=operator())
            day = run.inputs.get("day")
    finally:
        db.dispose()
    typer.echo(f"scheduled: run {run.id} checks {day} and starts the next day's")
