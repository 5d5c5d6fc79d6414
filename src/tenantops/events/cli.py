"""``tenantops events``: follow the event stream, manage webhooks, redeliver, the catalogue."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tenantops.kit.cli import DEFAULT_URL, Output, Token, Url, connect, terminal

app = typer.Typer(
    help="Events: tail the stream, webhook subscriptions and deliveries, the catalogue.",
    no_args_is_help=True,
)
subscriptions_app = typer.Typer(help="Webhook subscriptions.", no_args_is_help=True)
app.add_typer(subscriptions_app, name="subscriptions")

Types = Annotated[
    list[str] | None,
    typer.Option("--type", "-t", help="Event type; a * suffix matches a prefix (repeatable)"),
]


def _line(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    who = data.get("tenant_name") or event.get("subject") or "-"
    what = event["type"].removeprefix("io.tenantops.")
    extra = data.get("to_state") or data.get("decision") or data.get("status") or ""
    if data.get("step"):
        extra = f"{data['step']}: {extra}" if extra else str(data["step"])
    elif data.get("subject") and "access" in what:
        extra = str(data["subject"])
    return f"{event['time'][:23]}  #{event['sequence']:>6}  {what:<28} {who:<24} {extra}"


@app.command("tail")
def tail(
    url: Url = DEFAULT_URL,
    token: Token = None,
    types: Types = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (id)")] = None,
    last: Annotated[int, typer.Option(min=0, max=1000, help="Show this many first")] = 10,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", "-f", help="Keep watching")
    ] = True,
    interval: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds between polls")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="One CloudEvent (JSON) per line")] = False,
) -> None:
    """The newest events, then new ones as they happen (Ctrl-C stops)."""
    params: dict[str, Any] = {"type": types or [], **({"tenant": tenant} if tenant else {})}

    def show(items: list[dict[str, Any]]) -> None:
        for event in items:
            typer.echo(json.dumps(event, sort_keys=True) if as_json else _line(event))

    with connect(url, token) as client:
        page = client.get("/events", params={**params, "last": max(last, 1)})
        show(page["items"][-last:] if last else [])
        after = page["next_after"]
        try:
            while follow:
                time.sleep(interval)
                while True:
                    page = client.get("/events", params={**params, "after": after, "limit": 500})
                    show(page["items"])
                    after = page["next_after"]
                    if len(page["items"]) < 500:
                        break
        except KeyboardInterrupt:
            return


@subscriptions_app.command("list")
def subscriptions_list(
    url: Url = DEFAULT_URL, token: Token = None, as_json: Output = False
) -> None:
    """Webhook subscriptions."""
    with connect(url, token) as client:
        items = client.get("/events/subscriptions")["items"]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("id", "url", "types", "created by", "created", "description")
    for s in items:
        table.add_row(
            s["id"],
            s["url"],
            ", ".join(s["types"]),
            s["created_by"],
            s["created_at"][:19].replace("T", " "),
            s["description"] or "",
        )
    terminal().print(table)
    if not items:
        typer.echo("no webhook subscriptions")


@subscriptions_app.command("create")
def subscriptions_create(
    target: Annotated[str, typer.Argument(metavar="URL", help="Where to POST events")],
    types: Types = None,
    description: Annotated[str | None, typer.Option(help="What it is for")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Subscribe a webhook; prints its signing secret once."""
    body = {"url": target, "types": types or ["*"], "description": description}
    with connect(url, token) as client:
        sub = client.post("/events/subscriptions", json=body)
    if as_json:
        typer.echo(json.dumps(sub, indent=2))
        return
    typer.echo(f"subscription {sub['id']} -> {sub['url']} ({', '.join(sub['types'])})")
    typer.echo(f"signing secret (shown once, keep it safe): {sub['secret']}")


@subscriptions_app.command("delete")
def subscriptions_delete(subscription_id: str, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Stop a webhook; its pending deliveries are cancelled."""
    with connect(url, token) as client:
        client.request("DELETE", f"/events/subscriptions/{subscription_id}")
    typer.echo(f"subscription {subscription_id} deleted")


@app.command("deliveries")
def deliveries(
    url: Url = DEFAULT_URL,
    token: Token = None,
    status: Annotated[
        str | None, typer.Option(help="pending, delivered, dead or cancelled")
    ] = None,
    subscription: Annotated[str | None, typer.Option(help="Only this subscription")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many")] = 50,
    as_json: Output = False,
) -> None:
    """Webhook deliveries, newest event first (``--status dead``: the dead letters)."""
    params = {k: v for k, v in {"status": status, "subscription": subscription}.items() if v}
    with connect(url, token) as client:
        items = client.collect("/events/deliveries", params, limit)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("id", "event", "type", "subscription", "status", "attempts", "last error")
    for d in items:
        table.add_row(
            d["id"],
            str(d["event_seq"]),
            d["event_type"].removeprefix("io.tenantops."),
            d["subscription_id"],
            d["status"],
            str(d["attempts"]),
            d["last_error"] or "",
        )
    terminal().print(table)
    if not items:
        typer.echo("no deliveries match")


@app.command("redeliver")
def redeliver(delivery_id: str, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Send a dead (or delivered) event to its webhook again."""
    with connect(url, token) as client:
        d = client.post(f"/events/deliveries/{delivery_id}/redeliver", json=None)
    typer.echo(f"delivery {d['id']} of event {d['event_seq']} is pending again")


@app.command("prune")
def prune(
    days: Annotated[
        int | None,
        typer.Option(min=1, max=3650, help="Keep this many days (default: events.retention_days)"),
    ] = None,
) -> None:
    """Delete events and deliveries older than the retention window, now (runs on the database).

    The leading relay of ``serve``/``worker`` does the same every hour; this is
    for a first clean-up or after lowering the window.
    """
    from datetime import timedelta

    from tenantops.config import Settings
    from tenantops.errors import Unprocessable
    from tenantops.events.retention import prune as prune_outbox
    from tenantops.kit.clock import utcnow
    from tenantops.store import open_database

    settings = Settings()
    keep = days if days is not None else settings.events.retention_days
    if not keep:
        raise Unprocessable("events.retention_days is 0 (keep everything): pass --days to prune")
    before = utcnow() - timedelta(days=keep)
    db = open_database(settings)
    events = deliveries = 0
    try:
        while True:
            pruned = prune_outbox(db, before=before, max_batches=10)
            events, deliveries = events + pruned.events, deliveries + pruned.deliveries
            if not pruned.more:
                break
            typer.echo(f"… {events} events, {deliveries} deliveries so far", err=True)
    finally:
        db.dispose()
    typer.echo(
        f"deleted {events} events and {deliveries} deliveries older than {keep} days "
        f"(before {before:%Y-%m-%d %H:%M} UTC)"
    )


@app.command("catalogue")
def catalogue(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="docs/events.md, not AsyncAPI")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file")
    ] = None,
) -> None:
    """Print the event catalogue: AsyncAPI 3.0 JSON (default) or Markdown."""
    from tenantops.events.asyncapi import document
    from tenantops.events.asyncapi import markdown as as_markdown

    text = as_markdown() if markdown else json.dumps(document(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)
