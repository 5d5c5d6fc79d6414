"""``tenantops itil``: incidents, changes and problems linked to tenants, over HTTP.

The acting principal is the token's (``--token`` / ``TENANTOPS_TOKEN``), as in
every command that calls a server; a refusal is one line and exit code 1.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tenantops.itil.states import Kind
from tenantops.kit.cli import DEFAULT_URL, Output, Token, Url, connect, terminal

itil_app = typer.Typer(
    help="ITIL records: incidents, changes and problems, linked to tenants.",
    no_args_is_help=True,
)

RecordArg = Annotated[str, typer.Argument(help="The record's number (INC0000042) or id")]
IfMatch = Annotated[
    int | None,
    typer.Option("--if-version", help="Refuse if the record is no longer at this version"),
]


def _when(value: str | None) -> str:
    return "-" if not value else value[:16].replace("T", " ")


def _table(items: list[dict[str, Any]]) -> Table:
    table = Table(
        "number", "state", "P", "tenant", "title", "assigned", "opened (UTC)", box=box.SIMPLE_HEAD
    )
    for r in items:
        table.add_row(
            r["number"],
            r["state"],
            str(r["priority"]),
            r["tenant_name"] or "(platform)",
            r["title"],
            r["assigned_to"] or "-",
            _when(r["opened_at"]),
        )
    return table


def _one(record: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    replayed = " (opened before with this correlation id)" if record.get("replayed") else ""
    typer.echo(
        f"{verb}: {record['number']} {record['kind']} {record['state']} "
        f"P{record['priority']} {record['tenant_name'] or '(platform)'} — "
        f"{record['title']}{replayed}"
    )


def _headers(version: int | None) -> dict[str, str]:
    return {} if version is None else {"If-Match": f'"{version}"'}


@itil_app.command("list")
def list_records(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (id or name)")] = None,
    kind: Annotated[Kind | None, typer.Option(help="Only this kind")] = None,
    state: Annotated[str | None, typer.Option(help="Only records in this state")] = None,
    open_only: Annotated[
        bool, typer.Option("--open", help="Only records not resolved, closed or cancelled")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many")] = 100,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Records newest first: number, state, priority, tenant, title, assignee."""
    params: dict[str, Any] = {}
    if tenant:
        params["tenant"] = tenant
    if kind:
        params["kind"] = kind.value
    if state:
        params["state"] = state
    if open_only:
        params["open_only"] = "true"
    with connect(url, token) as client:
        items = client.collect("/itil/records", params, limit)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
    elif items:
        terminal().print(_table(items))
    else:
        typer.echo("no records match")


@itil_app.command("show")
def show(
    record: RecordArg, url: Url = DEFAULT_URL, token: Token = None, as_json: Output = False
) -> None:
    """One record, its timeline and where it may move next."""
    with connect(url, token) as client:
        found = client.get(f"/itil/records/{record}")
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    _one(found, False, found["number"])
    for label, key in (
        ("opened by", "opened_by"),
        ("assigned to", "assigned_to"),
        ("resolution", "resolution"),
        ("link", "external_link"),
        ("run", "run_id"),
    ):
        if found.get(key):
            typer.echo(f"  {label}: {found[key]}")
    typer.echo(f"  next: {', '.join(found['next_states']) or 'none'}")
    for note in found["timeline"]:
        text = note["text"].replace("\n", " / ")
        typer.echo(f"  {_when(note['at'])}  {note['author']}  [{note['kind']}] {text}")


@itil_app.command("open")
def open_record(
    kind: Annotated[Kind, typer.Argument(help="incident, change or problem")],
    title: Annotated[str, typer.Argument(help="One line: what happened or what changes")],
    tenant: Annotated[
        str | None, typer.Option(help="The tenant (id or name); none: the platform")
    ] = None,
    priority: Annotated[int, typer.Option(min=1, max=4, help="1 critical .. 4 low")] = 3,
    description: Annotated[str, typer.Option(help="The details")] = "",
    problem: Annotated[str | None, typer.Option(help="The problem behind it")] = None,
    correlation_id: Annotated[
        str | None, typer.Option(help="Idempotency key: the same key opens one record")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Open a record (an incident at priority 1 or 2 pages on-call)."""
    body: dict[str, Any] = {
        "kind": kind.value,
        "title": title,
        "description": description,
        "priority": priority,
        "tenant": tenant,
        "problem": problem,
        "correlation_id": correlation_id,
    }
    with connect(url, token) as client:
        opened = client.post("/itil/records", json=body)
    _one(opened, as_json, "opened")


@itil_app.command("transition")
def transition(
    record: RecordArg,
    state: Annotated[str, typer.Argument(help="The state to move to, e.g. in_progress")],
    resolution: Annotated[
        str | None, typer.Option(help="How it ended (needed to resolve; a change: to close)")
    ] = None,
    note: Annotated[str | None, typer.Option(help="A note for the timeline")] = None,
    if_version: IfMatch = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Move a record to another state of its machine."""
    body = {"state": state, "resolution": resolution, "note": note}
    with connect(url, token) as client:
        moved = client.post(
            f"/itil/records/{record}/transitions", json=body, headers=_headers(if_version)
        )
    _one(moved, as_json, "moved")


@itil_app.command("note")
def note(
    record: RecordArg,
    text: Annotated[str, typer.Argument(help="The work note")],
    key: Annotated[str | None, typer.Option(help="Idempotency key: written once")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Add a work note to the record's timeline."""
    with connect(url, token) as client:
        added = client.post(f"/itil/records/{record}/notes", json={"text": text, "key": key})
    if as_json:
        typer.echo(json.dumps(added, indent=2))
    else:
        typer.echo(f"noted on {record} by {added['author']}")


@itil_app.command("assign")
def assign(
    record: RecordArg,
    to: Annotated[str | None, typer.Argument(help="A person or group; omit to unassign")] = None,
    if_version: IfMatch = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Assign the record (or take it back to the queue)."""
    with connect(url, token) as client:
        done = client.request(
            "PUT",
            f"/itil/records/{record}/assignment",
            json={"assigned_to": to},
            headers=_headers(if_version),
        )
    _one(done, as_json, f"assigned to {to}" if to else "unassigned")


@itil_app.command("link")
def link(
    record: RecordArg,
    problem: Annotated[str, typer.Argument(help="The problem's number (PRB…) or id")],
    if_version: IfMatch = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Link an incident or change to the problem behind it."""
    with connect(url, token) as client:
        done = client.request(
            "PUT",
            f"/itil/records/{record}/problem",
            json={"problem": problem},
            headers=_headers(if_version),
        )
    _one(done, as_json, f"linked to {problem}")
