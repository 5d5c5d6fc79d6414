"""``tenantops alerts``: the alerts Alertmanager sent and what they started."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from tenantops.kit.cli import DEFAULT_URL, Output, Token, Url, connect, terminal

app = typer.Typer(help="Alerts received from Alertmanager.", no_args_is_help=True)


@app.command("list")
def list_alerts(
    url: Url = DEFAULT_URL,
    token: Token = None,
    status: Annotated[str | None, typer.Option(help="firing or resolved")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (name or id)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many")] = 50,
    as_json: Output = False,
) -> None:
    """Received alerts, newest first, with the run each started and any dispatch error."""
    params: dict[str, Any] = {k: v for k, v in {"status": status, "tenant": tenant}.items() if v}
    items: list[dict[str, Any]] = []
    with connect(url, token) as client:
        after = None
        while len(items) < limit:
            page = client.get(
                "/alerts",
                params={
                    **params,
                    "limit": min(500, limit - len(items)),
                    **({"after": after} if after else {}),
                },
            )
            items.extend(page["items"])
            after = page["next_after"]
            if not after:
                break
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("received", "status", "alert", "tenant", "playbook", "run", "closed", "problem")
    for a in items:
        table.add_row(
            a["received_at"][:19].replace("T", " "),
            a["status"],
            a["alertname"],
            a["tenant_label"] or a["tenant_id"] or "-",
            a["playbook"] or "",
            a["run_id"] or "",
            (a["closed_at"] or "")[:19].replace("T", " "),
            a["dispatch_error"] or "",
        )
    terminal().print(table)
    if not items:
        typer.echo("no alerts match")
