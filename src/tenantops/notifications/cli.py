"""``tenantops notifications``: the outbox of a server — what was sent, to whom, how it went."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from tenantops.kit.cli import DEFAULT_URL, Output, Token, Url, connect, terminal

app = typer.Typer(help="The notification outbox: list and show messages.", no_args_is_help=True)


@app.command("list")
def list_(
    url: Url = DEFAULT_URL,
    token: Token = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (id or name)")] = None,
    status: Annotated[str | None, typer.Option(help="pending, sent, stored or failed")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many")] = 50,
    as_json: Output = False,
) -> None:
    """Messages, newest first."""
    params = {k: v for k, v in {"tenant": tenant, "status": status}.items() if v}
    with connect(url, token) as client:
        items = client.collect("/notifications", params, limit)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("id", "created", "tenant", "template", "to", "status", "attempts", "subject")
    for m in items:
        table.add_row(
            m["id"],
            m["created_at"][:19].replace("T", " "),
            m["tenant_name"] or "-",
            m["template"],
            ", ".join(m["recipients"]),
            m["status"],
            str(m["attempts"]),
            m["subject"],
        )
    terminal().print(table)
    if not items:
        typer.echo("no messages match")


@app.command("show")
def show(
    message_id: str, url: Url = DEFAULT_URL, token: Token = None, as_json: Output = False
) -> None:
    """One message with its body and delivery status."""
    with connect(url, token) as client:
        m = client.get(f"/notifications/{message_id}")
    if as_json:
        typer.echo(json.dumps(m, indent=2))
        return
    console = terminal()
    console.print(f"[bold]{m['subject']}[/bold]")
    console.print(f"to: {', '.join(m['recipients'])}  ({m['audience']}, template {m['template']})")
    console.print(
        f"status: {m['status']} after {m['attempts']} attempt(s)"
        + (f" — last error: {m['last_error']}" if m["last_error"] else "")
    )
    console.print()
    console.print(m["body"], markup=False, highlight=False)
