"""``tenantops audit``: verify the hash chain of the audit trail."""

from __future__ import annotations

import typer

from tenantops.audit import service
from tenantops.config import Settings
from tenantops.store import open_database

app = typer.Typer(help="The audit trail.", no_args_is_help=True)


@app.command("verify")
def verify() -> None:
    """Exit 0 if the trail is intact; otherwise name the first bad entry and exit 1."""
    db = open_database(Settings())
    try:
        with service.snapshot(db) as session:
            result = service.verify(session)
    finally:
        db.dispose()
    if result.ok:
        typer.echo(f"audit trail intact: {result.checked} entries verified")
        return
    where = f"entry {result.bad_seq}" if result.bad_seq is not None else "the trail"
    typer.echo(
        f"audit trail BROKEN at {where}: {result.reason} "
        f"({result.checked} entries verified before it)",
        err=True,
    )
    raise typer.Exit(1)
