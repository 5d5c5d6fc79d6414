"""``tenantops backup``: back up, verify and restore the control plane.

These commands work on the configured database and data directory directly
(like ``tenantops db`` and ``audit verify``), not through a server: a restore
happens before any server runs.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Annotated

import typer

from tenantops.auth.cli import operator
from tenantops.backup import service
from tenantops.backup.files import signing_key_file
from tenantops.config import Settings
from tenantops.store import connect, open_database

app = typer.Typer(
    help="Back up and restore the control plane (database and data directory).",
    no_args_is_help=True,
)


def _say(message: str) -> None:
    typer.echo(f"… {message}", err=True)


@app.command("create")
def create(
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="File to write (NAME.tar.gz), or a folder (created if need be) to write "
            "tenantops-backup-<UTC time>.tar.gz into; default: that name here",
        ),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="After writing, keep only the newest N tenantops-backup-*.tar.gz of the folder",
        ),
    ] = None,
) -> None:
    """Write a backup: every table from one snapshot, the GitOps repository, the data files."""
    settings = Settings()
    target = output or Path(service.default_name())
    if target.is_dir() or not target.name.endswith(".tar.gz"):
        target = target / service.default_name()
    elif keep is not None and output is not None:
        raise typer.BadParameter("--keep needs a folder, not a file name", param_hint="'-o'")
    db = open_database(settings)
    try:
        written = service.create(settings, db, target, progress=_say)
    finally:
        db.dispose()
    m = written.manifest
    key = signing_key_file(settings)
    if key is not None:
        typer.echo(
            f"note: the webhook signing key {key} is not in the backup (a backup holds no "
            "secret); keep a copy in your secret manager or set TENANTOPS_EVENTS__SIGNING_KEY",
            err=True,
        )
    typer.echo(
        f"wrote {written.path} ({written.size:,} bytes): {len(m.tables)} tables, "
        f"{m.rows:,} rows, {m.audit_entries:,} audit entries, {len(m.files)} files"
        + (f", GitOps at {m.gitops.head[:12]}" if m.gitops else "")
    )
    typer.echo(f"sha256 {written.sha256}")
    if keep is not None:
        for old in service.prune(written.path.parent, keep=keep):
            typer.echo(f"removed {old}")


@app.command("verify")
def verify(
    backup: Annotated[Path, typer.Argument(help="The backup file")],
) -> None:
    """Check every member against the manifest, then restore it into a scratch database."""
    checked = service.verify(backup, progress=_say)
    m = checked.manifest
    typer.echo(
        f"backup intact: {len(m.tables)} tables, {m.rows:,} rows, {len(m.files)} files"
        + (", GitOps bundle" if m.gitops else "")
        + f"; restores at schema {m.schema_revision}"
        + (f" and upgrades to {checked.schema}" if checked.schema != m.schema_revision else "")
        + f"; audit trail of {checked.audit_entries:,} entries verified"
    )


@app.command("restore")
def restore(
    backup: Annotated[Path, typer.Argument(help="The backup file")],
) -> None:
    """Restore a backup into the configured database, which must be empty; all or nothing."""
    settings = Settings()
    made = not settings.data_dir.exists()  # ``connect`` creates it for the SQLite file
    db = connect(settings, **service.RESTORE_ENGINE)
    try:
        checked = service.restore(settings, db, backup, actor=operator(), progress=_say)
    except BaseException:
        if made:
            with suppress(OSError):  # emptied by the failed restore, unless something came in
                settings.data_dir.rmdir()
        raise
    finally:
        db.dispose()
    m = checked.manifest
    typer.echo(
        f"restored {backup} (written {m.created_at} on {m.source}): {m.rows:,} rows, "
        f"{len(m.files)} files"
        + (", GitOps repository" if m.gitops else "")
        + f"; audit trail of {checked.audit_entries:,} entries verified, the restore recorded"
        + (
            f"; schema {m.schema_revision} upgraded to {checked.schema}"
            if checked.schema != m.schema_revision
            else ""
        )
    )
