"""``tenantops tenants``: the tenant API from the terminal (talks to a running server)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tenantops.kit.cli import DEFAULT_URL, Output, Token, Url, connect, terminal
from tenantops.kit.client import ClientError

app = typer.Typer(
    help="Request, approve, suspend, reactivate and offboard tenants.", no_args_is_help=True
)


def _show(tenant: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(tenant, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key in (
        "name",
        "id",
        "state",
        "display_name",
        "business_owner",
        "compliance_classification",
        "region",
        "tier",
        "monthly_budget",
        "currency",
        "contacts",
        "ticket_ref",
        "requested_by",
        "created_at",
        "approved_at",
        "activated_at",
        "updated_at",
        "version",
    ):
        value = tenant.get(key)
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        elif key == "monthly_budget" and isinstance(value, int | float):
            value = f"{value:,.2f}"  # as in the list
        table.add_row(f"[bold]{key}[/bold]", "-" if value is None else str(value))
    terminal().print(table)


@app.command("list")
def list_(
    url: Url = DEFAULT_URL,
    token: Token = None,
    state: Annotated[str | None, typer.Option(help="Only tenants in this state")] = None,
    region: str | None = None,
    tier: str | None = None,
    owner: Annotated[str | None, typer.Option(help="Business owner e-mail")] = None,
    search: Annotated[str | None, typer.Option("--search", "-q", help="Text search")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many")] = 50,
    as_json: Output = False,
) -> None:
    """List tenants, newest first."""
    params: dict[str, Any] = {
        k: v
        for k, v in {
            "state": state,
            "region": region,
            "tier": tier,
            "owner": owner,
            "q": search,
        }.items()
        if v
    }
    with connect(url, token) as client:
        items = client.collect("/tenants", params, limit)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table(
        "name", "state", "region", "tier", "owner", "budget", "created", box=box.SIMPLE_HEAD
    )
    for t in items:
        table.add_row(
            t["name"],
            t["state"],
            t["region"],
            t["tier"],
            t["business_owner"],
            f"{t['monthly_budget']:,.2f} {t['currency']}",
            t["created_at"][:16],
        )
    terminal().print(table)
    if not items:
        typer.echo("no tenants match")


@app.command("show")
def show(tenant: str, url: Url = DEFAULT_URL, token: Token = None, as_json: Output = False) -> None:
    """Show one tenant (by name or id)."""
    with connect(url, token) as client:
        _show(client.get(f"/tenants/{tenant}"), as_json)


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="DNS-1123 label, e.g. acme-prod")],
    display_name: Annotated[str, typer.Option(help="Human-readable name")],
    business_owner: Annotated[str, typer.Option(help="Owner e-mail")],
    classification: Annotated[str, typer.Option(help="public|internal|confidential|restricted")],
    region: Annotated[str, typer.Option(help="Data-residency region, e.g. eu-central-1")],
    tier: Annotated[str, typer.Option(help="Service tier, e.g. standard")],
    budget: Annotated[float, typer.Option(help="Monthly budget")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code")] = "EUR",
    contact: Annotated[list[str] | None, typer.Option(help="Contact e-mail; repeatable")] = None,
    ticket: Annotated[str | None, typer.Option(help="Intake ticket reference")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Make retries safe")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Request a new tenant (state: requested)."""
    body = {
        "name": name,
        "display_name": display_name,
        "business_owner": business_owner,
        "compliance_classification": classification,
        "region": region,
        "tier": tier,
        "monthly_budget": budget,
        "currency": currency,
        "contacts": contact or [],
        "ticket_ref": ticket,
    }
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with connect(url, token) as client:
        _show(client.post("/tenants", body, headers=headers), as_json)


def _decide(
    tenant: str,
    role: str,
    decision: str,
    comment: str | None,
    risk_ref: str | None,
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    body = {"role": role, "decision": decision, "comment": comment, "risk_ref": risk_ref}
    with connect(url, token) as client:
        _show(client.post(f"/tenants/{tenant}/approvals", body), as_json)


Role = Annotated[str, typer.Option(help="governance or security")]


@app.command("approve")
def approve(
    tenant: str,
    role: Role,
    comment: str | None = None,
    risk_ref: Annotated[str | None, typer.Option(help="Risk-register entry")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Approve a requested tenant in your governance or security role."""
    _decide(tenant, role, "approve", comment, risk_ref, url, token, as_json)


@app.command("reject")
def reject(
    tenant: str,
    role: Role,
    # --reason too: suspend and offboard ask for one, and a reject is the same kind of "why".
    comment: Annotated[str, typer.Option("--comment", "--reason", help="Why (required)")],
    risk_ref: str | None = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Reject a requested tenant."""
    _decide(tenant, role, "reject", comment, risk_ref, url, token, as_json)


@app.command("suspend")
def suspend(
    tenant: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit trail)")],
    incident: Annotated[str | None, typer.Option(help="Incident reference")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Suspend an active tenant."""
    body = {"reason": reason, "incident_ref": incident}
    with connect(url, token) as client:
        _show(client.post(f"/tenants/{tenant}/suspend", body), as_json)


@app.command("reactivate")
def reactivate(
    tenant: str,
    reason: Annotated[str | None, typer.Option(help="Ask for reactivation, saying why")] = None,
    approve: Annotated[bool, typer.Option("--approve", help="Approve the pending request")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the pending request")] = False,
    comment: str | None = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Request reactivation (--reason), or decide the pending request (--approve/--reject)."""
    if sum([reason is not None, approve, reject]) != 1:
        raise typer.BadParameter("give exactly one of --reason (request), --approve or --reject")
    with connect(url, token) as client:
        if reason is not None:
            path = f"/tenants/{tenant}/reactivation-requests"
            request = client.post(path, {"reason": reason})
            typer.echo(f"reactivation request {request['id']} is waiting for a governance approval")
            return
        pending = [
            r
            for r in client.get(f"/tenants/{tenant}/approvals")
            if r["kind"] == "reactivation" and r["status"] == "pending"
        ]
        if not pending:
            raise ClientError(f"no pending reactivation request for {tenant}")
        body = {"decision": "approve" if approve else "reject", "comment": comment}
        path = f"/tenants/{tenant}/reactivation-requests/{pending[0]['id']}/approvals"
        _show(client.post(path, body), as_json)
    if approve:
        typer.echo(
            f"approved: {tenant} stays suspended until its tenant-reactivation run has restored"
            f" network, queues, secrets and access (tenantops runs list --tenant {tenant})",
            err=True,
        )


@app.command("offboard")
def offboard(
    tenant: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit trail)")],
    ticket: str | None = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Start offboarding a tenant."""
    body = {"reason": reason, "ticket_ref": ticket}
    with connect(url, token) as client:
        _show(client.post(f"/tenants/{tenant}/offboard", body), as_json)
