"""``tenantops users``: local web users of the embedded default (local database)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tenantops.auth.cli import operator
from tenantops.auth.principal import Role
from tenantops.config import Settings
from tenantops.errors import Unprocessable
from tenantops.store import open_database
from tenantops.tenants import service as tenant_service
from tenantops.web import service

app = typer.Typer(
    help="Local users of the web UI (runs against the database directly).", no_args_is_help=True
)

PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of stdin"),
]


def _password(from_stdin: bool) -> str:
    """The new password: stdin's first line, or typed twice at a prompt (never echoed)."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise Unprocessable("no password on stdin")
        return line
    if not sys.stdin.isatty():
        # No one to type it (a pipe, a script): say how, rather than echo warnings and abort.
        raise Unprocessable("no terminal to type the password at: give it with --password-stdin")
    typed: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return typed


def _create(username: str, roles: list[Role], tenant: str | None, from_stdin: bool) -> None:
    password = _password(from_stdin)
    db = open_database(Settings())
    try:
        with db.write() as session:
            tenant_id = None
            if tenant is not None:
                tenant_id = tenant_service.get_tenant(session, principal=operator(), ref=tenant).id
            user = service.create_user(
                session,
                actor=operator(),
                username=username,
                password=password,
                roles=roles,
                tenant_id=tenant_id,
            )
            name, granted = user.username, ",".join(user.roles)
    finally:
        db.dispose()
    typer.echo(f"created user {name} ({granted})")


@app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Argument(help="Login name")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a local admin who can sign in to the web UI."""
    _create(username, [Role.ADMIN], None, password_stdin)


@app.command("create")
def create(
    username: Annotated[str, typer.Argument(help="Login name")],
    role: Annotated[list[Role], typer.Option(help="Role to grant; repeat for several")],
    tenant: Annotated[
        str | None, typer.Option(help="Bind to one tenant (id or name); tenant_owner needs it")
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a local user with roles, optionally bound to one tenant."""
    _create(username, role, tenant, password_stdin)


@app.command("list")
def list_() -> None:
    """List web users: name, roles, tenant, state, and where they sign in (local or the issuer).

    The tenant is shown by name, as ``--tenant`` takes it; by id if the tenant is gone.
    """
    db = open_database(Settings())
    try:
        with db.read() as session:
            users = service.list_users(session)
            names = tenant_service.names_of(session, {u.tenant_id for u in users if u.tenant_id})
            for u in users:
                tenant = names.get(u.tenant_id, u.tenant_id) if u.tenant_id else "-"
                state = "disabled" if u.disabled else "enabled"
                source = f"oidc:{u.oidc_issuer}" if u.oidc_issuer else "local"
                typer.echo(f"{u.username}\t{','.join(u.roles)}\t{tenant}\t{state}\t{source}")
    finally:
        db.dispose()


def _set_disabled(username: str, disabled: bool) -> service.Disabling:
    db = open_database(Settings())
    try:
        with db.write() as session:
            return service.set_disabled(
                session, actor=operator(), username=username, disabled=disabled
            )
    finally:
        db.dispose()


@app.command("disable")
def disable(username: Annotated[str, typer.Argument(help="Login name")]) -> None:
    """Disable a user (local or OIDC) and end their open sessions at once.

    The last enabled admin bound to no tenant is not disabled (create another first).
    """
    done = _set_disabled(username, True)
    if not done.changed:
        typer.echo(f"user {username} was disabled already")
        return
    typer.echo(f"disabled user {username}; {done.sessions_ended} open session(s) ended")


@app.command("enable")
def enable(username: Annotated[str, typer.Argument(help="Login name")]) -> None:
    """Let a disabled user sign in again."""
    _set_disabled(username, False)
    typer.echo(f"enabled user {username}")


@app.command("set-password")
def set_password(
    username: Annotated[str, typer.Argument(help="Login name of a local user")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Give a local user a new password; their open sessions end at once."""
    password = _password(password_stdin)
    db = open_database(Settings())
    try:
        with db.write() as session:
            ended = service.set_password(
                session, actor=operator(), username=username, password=password
            )
    finally:
        db.dispose()
    typer.echo(f"new password set for {username}; {ended} open session(s) ended")
