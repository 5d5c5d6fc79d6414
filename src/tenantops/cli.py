"""``tenantops``: the operator CLI. Every failure ends in one line and a non-zero exit."""

from __future__ import annotations

import sys
from typing import Annotated

import structlog
import typer
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from tenantops import __version__
from tenantops.accessreview.cli import access_review
from tenantops.alerts.cli import app as alerts_app
from tenantops.audit.cli import app as audit_app
from tenantops.auth.cli import app as tokens_app
from tenantops.auth.cli import operator
from tenantops.backup.cli import app as backup_app
from tenantops.compliance.cli import app as compliance_app
from tenantops.config import MAX_WORKER_CONCURRENCY, Settings
from tenantops.errors import AppError
from tenantops.events.cli import app as events_app
from tenantops.finops.cli import app as finops_app
from tenantops.itil.cli import itil_app
from tenantops.kit import heap
from tenantops.kit.client import ClientError
from tenantops.logs import configure_logging
from tenantops.notifications.cli import app as notifications_app
from tenantops.oncall.cli import oncall_app
from tenantops.reports.cli import app as reports_app
from tenantops.runbooks.cli import runbooks_app, runs_app, windows_app
from tenantops.secrets.cli import secrets_app
from tenantops.tenants.cli import app as tenants_app
from tenantops.web.cli import app as users_app

try:  # typer >= 0.26 ships its own copy of click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]

app = typer.Typer(
    name="tenantops",
    help="Control plane for operating the tenants of a multi-tenant platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The control-plane database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(backup_app, name="backup")
app.add_typer(tokens_app, name="tokens")
app.add_typer(audit_app, name="audit")
tenants_app.command("access-review")(access_review)
app.add_typer(tenants_app, name="tenants")
app.add_typer(runs_app, name="runs")
app.add_typer(runbooks_app, name="runbooks")
app.add_typer(windows_app, name="windows")
app.add_typer(notifications_app, name="notifications")
app.add_typer(oncall_app, name="oncall")
app.add_typer(events_app, name="events")
app.add_typer(finops_app, name="finops")
app.add_typer(reports_app, name="reports")
app.add_typer(alerts_app, name="alerts")
app.add_typer(users_app, name="users")
app.add_typer(secrets_app, name="secrets")
app.add_typer(compliance_app, name="compliance")
app.add_typer(itil_app, name="itil")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (TENANTOPS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (TENANTOPS_PORT)")] = None,
) -> None:
    """Run the API server; an empty database is migrated first."""
    import uvicorn

    from tenantops.app import create_app
    from tenantops.auth import tokens
    from tenantops.auth.principal import Role
    from tenantops.store import open_database

    # The flags win over the environment, and the app must know where it listens
    # (the built-in tenant probe and the links it sends are built from them):
    # given to the constructor, so the links derived from host and port follow.
    settings = Settings.model_validate(
        {name: value for name, value in (("host", host), ("port", port)) if value}
    )
    db = open_database(settings, migrate_empty=True)
    if settings.bootstrap_admin and settings.oidc.issuer is None:
        with db.write() as session:
            if not tokens.has_admin_token(session):
                issued = tokens.create_token(
                    session,
                    actor=operator(),
                    subject="bootstrap-admin",
                    roles=[Role.ADMIN],
                    tenant_id=None,
                    ttl=None,
                )
                # Printed to the terminal once, never logged; revoke it once real
                # principals exist (tenantops tokens revoke <prefix>).
                print(  # noqa: T201
                    "\nFirst start: a bootstrap admin token was created. It is shown only now:\n"
                    f"\n    {issued.value}\n\n"
                    "Create tokens for people and automation with 'tenantops tokens create'.\n",
                    file=sys.stderr,
                    flush=True,
                )
    # A database that never had web users: the first admin, printed once (stdout).
    from tenantops.web.bootstrap import announce_first_admin

    announce_first_admin(db, settings, actor=operator())
    application = create_app(settings, db=db)
    heap.settle()
    worker = "with an in-process worker" if settings.worker.in_process else "API only"
    typer.echo(f"tenantops {__version__}: serving {settings.own_url()} ({worker})", err=True)
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
    )


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_WORKER_CONCURRENCY,
            help="Steps run at once (TENANTOPS_WORKER__CONCURRENCY)",
        ),
    ] = None,
) -> None:
    """Run runbook workers only (no API); stop with Ctrl-C or SIGTERM."""
    import signal

    from tenantops.store import open_database
    from tenantops.wiring import build_relay, build_worker

    settings = Settings()
    if concurrency is not None:
        settings.worker.concurrency = concurrency
    db = open_database(settings)
    runner = build_worker(settings, db)
    # The event relay runs beside the worker; with several processes one leads.
    relay = build_relay(settings, db) if settings.events.relay else None

    def _stop(_signum: int, _frame: object) -> None:
        runner.stop(timeout=0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    typer.echo(f"worker {runner.name} started (concurrency {runner.concurrency})", err=True)
    heap.settle()
    if relay is not None:
        relay.start()
    try:
        runner.serve()
    finally:
        if relay is not None:
            relay.stop(timeout=5)
        db.dispose()
        typer.echo(f"worker {runner.name} stopped", err=True)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Check every configured adapter: reachable, logged in, allowed. Exit 1 if one fails."""
    import json

    from rich.table import Table

    from tenantops.doctor import run as examine
    from tenantops.kit.cli import terminal

    findings = examine(Settings())
    failed = [f for f in findings if f.status == "fail"]
    if as_json:
        typer.echo(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        table = Table("check", "status", "detail", "fix")
        style = {"ok": "green", "skip": "dim", "fail": "bold red"}
        for f in findings:
            table.add_row(f.check, f"[{style[f.status]}]{f.status}[/]", f.detail, f.fix)
        terminal().print(table)
        typer.echo(
            f"{len(failed)} of {len(findings)} checks failed" if failed else "all checks pass"
        )
    if failed:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Apply the migrations up to ``revision``."""
    from tenantops.migrations import current_revision, upgrade
    from tenantops.store import connect

    db = connect(Settings())
    try:
        upgrade(db.engine, revision)
        typer.echo(f"database at revision {current_revision(db.engine)}")
    finally:
        db.dispose()


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the database."""
    from tenantops.db import Database
    from tenantops.migrations import current_revision, head_revision

    settings = Settings()
    db = Database(settings.resolved_database_url())
    try:
        current = current_revision(db.engine)
        typer.echo(f"{current or 'empty'} (code expects {head_revision(db.engine)})")
    finally:
        db.dispose()


LONG_RUNNING = frozenset({"serve", "worker"})


def _one_line(message: str) -> str:
    """``message`` on one line: a server's or driver's text may carry newlines."""
    return " ".join(message.split())


def _validation_line(exc: ValidationError) -> str:
    """Each problem as ``where: what``; a setting is named by its environment variable.

    The value given is never shown: a setting may be a password or a token.
    """
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        path = [str(part) for part in error["loc"]]
        where = ".".join(path)
        if exc.title == Settings.__name__:  # set in the environment or the config file
            where = f"setting {where} (TENANTOPS_{'__'.join(path).upper()})"
        problems.append(f"{where}: {error['msg']}")
    return _one_line("; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn any failure into one line on stderr."""
    command = typer.main.get_command(app)
    try:
        if not structlog.is_configured():
            # Logs go to stderr, so stdout carries only what a command prints
            # (`TOKEN=$(tenantops tokens create …)` must capture the token alone).
            # The long-running commands log at the configured level; a one-shot
            # command reports its failure in its one error line, so it logs
            # nothing short of a crash.
            settings = Settings()
            args = sys.argv[1:] if argv is None else argv
            long_running = bool(args) and args[0] in LONG_RUNNING
            level = settings.log_level if long_running else "CRITICAL"
            configure_logging(level, json=settings.log_json)
        result = command.main(args=argv, prog_name="tenantops", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        # Raising it rendered the help already when Rich formats it (the message is
        # then empty); with plain click the help is the message. Show it once.
        if exc.format_message().strip():
            typer.echo(exc.format_message())
        return 2
    except click_exc.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        typer.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
        return 2
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except ValidationError as exc:
        typer.echo(f"error: {_validation_line(exc)}", err=True)
        return 1
    except (ClientError, AppError, ValueError) as exc:
        typer.echo(f"error: {_one_line(str(exc))}", err=True)
        return 1
    except OperationalError as exc:
        typer.echo(f"error: cannot use the database: {_one_line(str(exc.orig))}", err=True)
        return 1
    except OSError as exc:
        # A file a command reads or writes: missing, not allowed, disk full.
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or _one_line(str(exc))}", err=True)
        return 1
    except typer.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
