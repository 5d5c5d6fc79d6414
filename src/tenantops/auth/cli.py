"""``tenantops tokens``: mint, list and revoke service-account API tokens (local database)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tenantops.auth import tokens
from tenantops.auth.principal import Principal, Role
from tenantops.config import Settings
from tenantops.kit.clock import utcnow
from tenantops.kit.durations import parse_duration
from tenantops.store import open_database
from tenantops.tenants import service as tenant_service

app = typer.Typer(
    help="Service-account API tokens (runs against the database directly).", no_args_is_help=True
)


def operator() -> Principal:
    """The person at this terminal, as the audit trail names them."""
    return Principal(subject=f"cli:{getpass.getuser()}", roles=frozenset({Role.ADMIN}), via="cli")


@app.command("create")
def create(
    subject: Annotated[str, typer.Option(help="Who or what the token is for")],
    role: Annotated[list[Role], typer.Option(help="Role to grant; repeat for several")],
    tenant: Annotated[str | None, typer.Option(help="Bind to one tenant (id or name)")] = None,
    ttl: Annotated[
        str | None, typer.Option(help="Lifetime such as 8h or 30d; default: none")
    ] = None,
) -> None:
    """Create a token and print it once; only its hash is stored."""
    # An empty --ttl is a mistake, not a request for a token that never expires.
    lifetime = parse_duration(ttl) if ttl is not None else None
    db = open_database(Settings())
    try:
        with db.write() as session:
            tenant_id = None
            if tenant is not None:
                tenant_id = tenant_service.get_tenant(session, principal=operator(), ref=tenant).id
            issued = tokens.create_token(
                session,
                actor=operator(),
                subject=subject,
                roles=role,
                tenant_id=tenant_id,
                ttl=lifetime,
            )
    finally:
        db.dispose()
    typer.echo(issued.value)


@app.command("list")
def list_() -> None:
    """List tokens (never their values): whether each still works, and its tenant by name."""
    db = open_database(Settings())
    table = Table("id", "prefix", "subject", "roles", "tenant", "status", "expires", "revoked")
    now = utcnow()
    try:
        with db.read() as session:
            rows = tokens.list_tokens(session)
            # A tenant gone from the table keeps its id here: the token still names it.
            names = tenant_service.names_of(session, {t.tenant_id for t in rows if t.tenant_id})
            for t in rows:
                table.add_row(
                    t.id,
                    t.prefix,
                    t.subject,
                    ",".join(t.roles),
                    names.get(t.tenant_id, t.tenant_id) if t.tenant_id else "-",
                    tokens.status_of(t, now=now).value,
                    t.expires_at.isoformat(timespec="minutes") if t.expires_at else "never",
                    t.revoked_at.isoformat(timespec="minutes") if t.revoked_at else "-",
                )
    finally:
        db.dispose()
    console = Console()
    # Never cut a cell to fit a narrow (or piped, 80-column) output: the id and
    # prefix are what an operator copies into 'tokens revoke'.
    needed = console.measure(table, options=console.options.update_width(10_000)).maximum
    if needed > console.width:
        console = Console(width=needed)
    console.print(table)


@app.command("revoke")
def revoke(
    token_id: Annotated[
        str,
        typer.Argument(
            metavar="TOKEN",
            help="The token's id, its prefix as 'tokens list' shows it, or the whole token;"
            " '-' reads it from stdin (keeps a whole token out of the shell history)",
        ),
    ],
) -> None:
    """Revoke a token at once; the whole token is matched by its hash and never shown."""
    if token_id == "-":  # noqa: S105 - the stdin marker, not a password
        token_id = sys.stdin.readline().strip()
        if not token_id:
            raise ValueError("no token on stdin")
    db = open_database(Settings())
    try:
        with db.write() as session:
            row = tokens.revoke_token(session, actor=operator(), token_id=token_id)
    finally:
        db.dispose()
    typer.echo(f"revoked {row.prefix} ({row.subject})")
