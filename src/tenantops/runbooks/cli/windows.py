"""``tenantops windows``: the maintenance windows windowed steps wait for, over HTTP."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tenantops.kit.cli import DEFAULT_URL, Output, Token, Url, connect, terminal

windows_app = typer.Typer(
    help="Maintenance windows: when steps marked `window: NAME` may start.",
    no_args_is_help=True,
)


def _when(value: str) -> str:
    return value[:16].replace("T", " ") + " UTC"


def _table(items: list[dict[str, Any]]) -> Table:
    table = Table(
        "name", "days", "local time", "time zone", "now", "next opening", "by", box=box.SIMPLE_HEAD
    )
    for w in items:
        table.add_row(
            w["name"],
            ",".join(w["days"]),
            f"{w['start']}-{w['end']}",
            w["timezone"],
            "open" if w["open_now"] else "closed",
            w["error"] or ("-" if w["open_now"] else _when(w["next_start"])),
            w["updated_by"],
        )
    return table


@windows_app.command("list")
def list_windows(url: Url = DEFAULT_URL, token: Token = None, as_json: Output = False) -> None:
    """Every window: its days and hours, whether it is open now, when it next opens."""
    with connect(url, token) as client:
        items = client.get("/maintenance-windows")
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    terminal().print(_table(items))
    if not items:
        typer.echo("no maintenance windows; define one with `tenantops windows set NAME …`")


@windows_app.command("set")
def set_window(
    name: Annotated[str, typer.Argument(help="The name steps use: `window: NAME`")],
    days: Annotated[
        str, typer.Option(help="Comma-separated days it opens on: mon,tue,wed,thu,fri,sat,sun")
    ],
    start: Annotated[str, typer.Option("--from", help="Local opening time, HH:MM")],
    end: Annotated[
        str, typer.Option("--to", help="Local closing time, HH:MM (at or before --from: next day)")
    ],
    timezone: Annotated[str, typer.Option("--tz", help="IANA time zone, e.g. Europe/Berlin")],
    description: Annotated[str | None, typer.Option(help="What the window is for")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Create or replace a window (audited; needs ops_engineer or admin)."""
    body = {
        "days": [d.strip().lower() for d in days.split(",") if d.strip()],
        "start": start,
        "end": end,
        "timezone": timezone,
        "description": description,
    }
    with connect(url, token) as client:
        window = client.request("PUT", f"/maintenance-windows/{name}", json=body)
    if as_json:
        typer.echo(json.dumps(window, indent=2))
        return
    terminal().print(_table([window]))


@windows_app.command("delete")
def delete_window(name: str, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Delete a window (audited); a step naming it fails when next due, saying so."""
    with connect(url, token) as client:
        client.request("DELETE", f"/maintenance-windows/{name}")
    typer.echo(f"deleted maintenance window {name}")
