"""``tenantops oncall``: apply the on-call document, see who is on call, page and answer pages.

Over HTTP, as every command that changes the control plane: the server checks
the caller's role and writes the audit entry. ``apply`` validates the file here
first, so a mistake is named (with its field's path) before anything is sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tenantops.kit.cli import DEFAULT_URL, Output, Token, Url, connect, terminal
from tenantops.oncall.document import SEVERITIES, parse_yaml

oncall_app = typer.Typer(
    help="On-call: rotations, escalation policies, pages (acknowledge, resolve).",
    no_args_is_help=True,
)

PageArg = Annotated[str, typer.Argument(help="The page's id")]


def _when(value: str | None) -> str:
    return "-" if not value else value[:16].replace("T", " ")


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _shifts(shifts: list[dict[str, Any]]) -> Table:
    table = Table("rotation", "on call", "since (UTC)", "until (UTC)", "", box=box.SIMPLE_HEAD)
    for s in shifts:
        table.add_row(
            s["rotation"],
            s["member"],
            _when(s["since"]),
            _when(s["until"]),
            "override" if s["override"] else "",
        )
    return table


def _pages(items: list[dict[str, Any]]) -> Table:
    table = Table(
        "id", "status", "sev", "level", "tenant", "summary", "next (UTC)", box=box.SIMPLE_HEAD
    )
    for p in items:
        status = "exhausted" if p["exhausted"] else p["status"]
        level = "-" if p["level"] is None else f"{p['level']}/{p['levels']}"
        table.add_row(
            p["id"],
            status,
            p["severity"],
            level,
            p["tenant_name"] or "-",
            p["summary"],
            _when(p["next_at"]),
        )
    return table


def _line(verb: str, page: dict[str, Any]) -> str:
    return f"{verb}: {page['id']} {page['status']} — {page['summary']}"


@oncall_app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="The on-call document (YAML or JSON)")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Apply an on-call document: a new version if it differs from the one in force."""
    document = parse_yaml(file.read_text(encoding="utf-8"), source=str(file))
    with connect(url, token) as client:
        applied = client.request("PUT", "/oncall/config", json=document.as_json())
    if as_json:
        _echo_json(applied)
    elif applied["changed"]:
        typer.echo(f"applied: version {applied['version']} ({applied['digest']})")
    else:
        typer.echo(f"unchanged: version {applied['version']} is already in force")
    for warning in applied.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)


@oncall_app.command("show")
def show(url: Url = DEFAULT_URL, token: Token = None, as_json: Output = False) -> None:
    """The configuration in force (version, policies, routes) and who is on call now."""
    with connect(url, token) as client:
        data = client.get("/oncall")
    if as_json:
        _echo_json(data)
        return
    config = data["config"]
    if config["version"] is None:
        typer.echo("configuration: the built-in default (no document applied)")
    else:
        typer.echo(
            f"configuration: version {config['version']} applied by {config['applied_by']} "
            f"at {_when(config['applied_at'])} ({config['digest']})"
        )
    doc = config["document"]
    for name, policy in doc["policies"].items():
        levels = " -> ".join(
            f"{', '.join(level['targets'])} ({level['after']})" for level in policy["levels"]
        )
        mark = " (default)" if name == doc["default"] else ""
        typer.echo(f"policy {name}{mark}: {levels}; repeat {policy['repeat']}")
    for i, route in enumerate(doc["routes"], 1):
        when = {k: v for k, v in route["when"].items() if v is not None}
        typer.echo(f"route {i}: {json.dumps(when) if when else 'anything'} -> {route['policy']}")
    if data["now"]["shifts"]:
        terminal().print(_shifts(data["now"]["shifts"]))
    else:
        typer.echo("no rotations: pages go to the policies' roles and recipients")


@oncall_app.command("now")
def now(
    at: Annotated[
        str | None, typer.Option("--at", help="An RFC 3339 instant (default: now)")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Who is on call, rotation by rotation (overrides applied)."""
    with connect(url, token) as client:
        data = client.get("/oncall/now", params={"at": at} if at else {})
    if as_json:
        _echo_json(data)
    elif data["shifts"]:
        terminal().print(_shifts(data["shifts"]))
    else:
        typer.echo("no rotations in the configuration in force")


@oncall_app.command("pages")
def pages(
    open_only: Annotated[bool, typer.Option("--open", help="Only pages not resolved yet")] = False,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (id or name)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Pages, newest first: status, severity, level reached, tenant, next escalation."""
    params: dict[str, Any] = {"limit": limit}
    if open_only:
        params["status"] = "open"
    if tenant:
        params["tenant"] = tenant
    with connect(url, token) as client:
        items = client.get("/oncall/pages", params=params)["items"]
    if as_json:
        _echo_json(items)
    elif items:
        terminal().print(_pages(items))
    else:
        typer.echo("no pages" + (" open" if open_only else ""))


@oncall_app.command("page")
def page(
    page_id: PageArg, url: Url = DEFAULT_URL, token: Token = None, as_json: Output = False
) -> None:
    """One page and its timeline: who was told when, who answered."""
    with connect(url, token) as client:
        data = client.get(f"/oncall/pages/{page_id}")
    if as_json:
        _echo_json(data)
        return
    terminal().print(_pages([data]))
    table = Table("at (UTC)", "event", "level", "told", "by", "detail", box=box.SIMPLE_HEAD)
    for e in data["timeline"]:
        table.add_row(
            _when(e["at"]),
            e["event"],
            "-" if e["level"] is None else str(e["level"]),
            ", ".join(e["targets"]) or "-",
            e["actor"],
            e["detail"] or "",
        )
    terminal().print(table)


@oncall_app.command("ack")
def ack(page_id: PageArg, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Acknowledge a page: it escalates no further."""
    with connect(url, token) as client:
        data = client.post(f"/oncall/pages/{page_id}/acknowledge", json=None)
    typer.echo(_line("acknowledged", data))


@oncall_app.command("resolve")
def resolve(page_id: PageArg, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Resolve (close) a page."""
    with connect(url, token) as client:
        data = client.post(f"/oncall/pages/{page_id}/resolve", json=None)
    typer.echo(_line("resolved", data))


@oncall_app.command("trigger")
def trigger(
    summary: Annotated[str, typer.Option(help="What is wrong, in one line")],
    tenant: Annotated[str | None, typer.Option(help="The tenant it is about")] = None,
    severity: Annotated[str, typer.Option(help=f"One of {', '.join(SEVERITIES)}")] = "high",
    key: Annotated[
        str | None, typer.Option(help="Idempotency: a second trigger with it returns the first")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Page on-call by hand; the first level is told on the escalator's next sweep."""
    if severity not in SEVERITIES:
        raise typer.BadParameter(f"one of {', '.join(SEVERITIES)}", param_hint="'--severity'")
    body = {"summary": summary, "severity": severity, "tenant": tenant, "key": key}
    with connect(url, token) as client:
        data = client.post("/oncall/pages", json=body)
    if as_json:
        _echo_json(data)
    else:
        typer.echo(f"paged: {data['id']} by policy {data['policy']} — {data['summary']}")
