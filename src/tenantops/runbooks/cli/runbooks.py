"""``tenantops runbooks``: the runbook library — list, show, validate, schema, test.

None of these needs a server: they read the runbook files and, for ``test``,
run one against a throwaway database in a temporary directory with the local
drivers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Group
from rich.table import Table

from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.kit.cli import Output, terminal
from tenantops.runbooks import service, spec
from tenantops.runbooks.actions import GateChecks, Registry
from tenantops.runbooks.cli.runs import status_text
from tenantops.runbooks.plan import Plan, plan_runbook
from tenantops.runbooks.sandbox import TENANT_STAGES, Faults
from tenantops.runbooks.testing import RunbookTestReport, run_runbook_test

runbooks_app = typer.Typer(
    help="The runbook library: list, show, validate, schema, test.", no_args_is_help=True
)


@runbooks_app.command("list")
def list_runbooks(as_json: Output = False) -> None:
    """The runbooks shipped with tenantops."""
    library = spec.load_library()
    items = [service.runbook_summary(r) for r in library.values()]
    if as_json:
        typer.echo(json.dumps([i.model_dump(mode="json") for i in items], indent=2))
        return
    table = Table("id", "version", "title", "kind", "tenant", "steps", "hash", box=box.SIMPLE_HEAD)
    for i in items:
        table.add_row(
            i.id, i.version, i.title, i.kind, "yes" if i.tenant else "no", str(i.steps), i.hash[:12]
        )
    terminal().print(table)


@runbooks_app.command("show")
def show_runbook(
    runbook: Annotated[str, typer.Argument(help="A runbook id, or a YAML file")],
    as_json: Output = False,
) -> None:
    """Show a runbook: its inputs, SLA and steps."""
    loaded = service.resolve_runbook(runbook)
    read = service.runbook_read(loaded)
    if as_json:
        typer.echo(json.dumps(read.model_dump(mode="json"), indent=2))
        return
    rb = loaded.runbook
    head = Table(show_header=False, box=None)
    for key, value in (
        ("id", rb.id),
        ("version", rb.version),
        ("title", rb.title),
        ("source", loaded.source),
        ("hash", loaded.hash),
        ("tenant", "yes" if rb.tenant else "no"),
        (
            "inputs",
            ", ".join(f"{n}: {i.type}{'' if i.required else '?'}" for n, i in rb.inputs.items())
            or "-",
        ),
        ("sla", f"{rb.sla.within} after {rb.sla.after}" if rb.sla else "-"),
    ):
        head.add_row(f"[bold]{key}[/bold]", value)
    steps = Table("#", "step", "does", "retry", "timeout", "sla", "evidence", box=box.SIMPLE_HEAD)
    for n, s in enumerate(rb.steps, 1):
        steps.add_row(
            str(n),
            s.name,
            s.does(),
            f"{s.retry.attempts}x {s.retry.backoff}" if s.action else "-",
            s.timeout if s.action else "-",
            f"{s.sla.within} after {s.sla.after}" if s.sla else "-",
            ", ".join(s.evidence) or "-",
        )
    terminal().print(Group(head, steps))


@runbooks_app.command("validate")
def validate(
    files: Annotated[
        list[Path] | None, typer.Argument(help="More runbook files to check", show_default=False)
    ] = None,
) -> None:
    """Check the shipped library and FILES against the runbook schema.

    Every template in ``params`` and ``wait`` must compile and read only the
    outputs of earlier steps and declared inputs. A gate's ``check`` must name
    a gate check this version installs.
    Stops at the first error with one line naming the file and the path in it.
    """
    checks = installed_checks()
    library = spec.load_library()
    for loaded in library.values():
        spec.refuse_unknown_checks(loaded, checks)
    checked = [loaded.source for loaded in library.values()]
    for path in files or []:
        if not path.is_file():
            raise Unprocessable(f"{path}: no such file")
        loaded = spec.parse(path.read_text(encoding="utf-8"), source=str(path))
        spec.refuse_unknown_checks(loaded, checks)
        checked.append(str(path))
    typer.echo(f"ok: {len(checked)} runbook(s) valid ({', '.join(checked) or 'none'})")


def installed_checks() -> set[str]:
    """The names of the gate checks a server installs (environment settings ignored)."""
    from tenantops.config import Settings
    from tenantops.wiring import build_gate_checks

    settings = Settings(_env_prefix="TENANTOPS_RUNBOOKS_VALIDATE_IGNORED_", _env_file=None)
    return set(build_gate_checks(settings))


@runbooks_app.command("schema")
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file")
    ] = None,
) -> None:
    """Print the published JSON Schema of a runbook document."""
    text = schema_text()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


def schema_text() -> str:
    """The schema as committed in ``docs/runbook.schema.json``."""
    return json.dumps(spec.schema(), indent=2, sort_keys=True) + "\n"


@contextmanager
def local_drivers(data_dir: Path, db: Database) -> Iterator[tuple[Registry, GateChecks]]:
    """The local drivers and the gate checks for ``data_dir``, and this server's API on a free
    127.0.0.1 port.

    The health checks of the embedded default call the built-in per-tenant probe
    of the server, so the test serves one over the throwaway database.
    Environment settings are ignored: a test must never reach a configured
    remote (a real Git remote, SMTP server or health URL).
    """
    import socket

    import uvicorn

    from tenantops.app import create_app
    from tenantops.config import Settings, WorkerSettings
    from tenantops.wiring import build_actions, build_gate_checks

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    settings = Settings(
        data_dir=data_dir,
        host="127.0.0.1",
        port=port,
        bootstrap_admin=False,
        worker=WorkerSettings(in_process=False),
        _env_prefix="TENANTOPS_RUNBOOKS_TEST_IGNORED_",
        _env_file=None,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, db=db),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, name="runbooks-test-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield build_actions(settings, db), build_gate_checks(settings)
    finally:
        server.should_exit = True
        thread.join(10)


def _fault_counts(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        step, _, times = value.partition(":")
        if not step or not times.isdigit() or int(times) < 1:
            raise typer.BadParameter(f"{value!r} is not STEP:N (N >= 1)", param_hint="'--fail'")
        counts[step] = int(times)
    return counts


def _input_values(values: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for value in values:
        name, sep, raw = value.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{value!r} is not NAME=VALUE", param_hint="'--input'")
        try:
            inputs[name] = json.loads(raw)
        except ValueError:
            inputs[name] = raw
    return inputs


@runbooks_app.command("test")
def runbook_test(
    runbook: Annotated[str, typer.Argument(help="A runbook id, or a YAML file")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; run nothing")] = False,
    fail: Annotated[
        list[str] | None, typer.Option("--fail", help="STEP:N — the step fails N times first")
    ] = None,
    timeout: Annotated[
        list[str] | None, typer.Option("--timeout", help="STEP times out once (after its effect)")
    ] = None,
    crash: Annotated[
        list[str] | None,
        typer.Option("--crash", help="A worker dies holding STEP; its lease must expire"),
    ] = None,
    input_: Annotated[
        list[str] | None, typer.Option("--input", help="NAME=VALUE (JSON or text); repeatable")
    ] = None,
    tenant_state: Annotated[
        str | None,
        typer.Option(
            help="How far the sample tenant is taken first: "
            + "|".join(TENANT_STAGES)
            + " (default: where the runbook starts)"
        ),
    ] = None,
    as_json: Output = False,
) -> None:
    """Run a runbook against a throwaway database and the local drivers, with faults.

    Prints each step's outcome and PASS or FAIL; exits 1 on FAIL. Time is
    simulated (backoffs, timers and leases are skipped over); gates are approved
    by a tester holding the gate's role.
    """
    if tenant_state is not None and tenant_state not in TENANT_STAGES:
        raise typer.BadParameter(
            f"{tenant_state!r} is none of {', '.join(TENANT_STAGES)}", param_hint="--tenant-state"
        )
    loaded = service.resolve_runbook(runbook)
    inputs = _input_values(input_ or [])
    if dry_run:
        _print_plan(
            plan_runbook(loaded, build=local_drivers, inputs=inputs, tenant_state=tenant_state),
            as_json,
        )
        return
    faults = Faults(
        fail=_fault_counts(fail or []),
        timeout=frozenset(timeout or []),
        crash=frozenset(crash or []),
    )
    report = run_runbook_test(
        loaded, build=local_drivers, faults=faults, inputs=inputs, tenant_state=tenant_state
    )
    _print_report(report, as_json)
    if not report.passed:
        raise typer.Exit(1)


def _print_plan(plan: Plan, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(_jsonable(plan), indent=2, default=str))
        return
    console = terminal()
    console.print(
        f"[bold]{plan.runbook}[/bold] {plan.version} ({plan.hash[:12]}) — dry run, nothing is done"
    )
    if plan.tenant:
        console.print(f"sample tenant: {plan.tenant['name']} ({plan.tenant['state']})")
    for n, step in enumerate(plan.steps, 1):
        console.print(
            f"\n[bold]{n}. {step.name}[/bold]  {step.what}"
            + (f"  — {step.title}" if step.title else "")
        )
        if step.kind == "action":
            console.print(f"   retry {step.attempts}x, timeout {step.timeout}")
            shown = json.dumps(step.params, default=str)
            console.print(f"   params: {shown}", markup=False)
            if step.unresolved:
                console.print(f"   ({step.unresolved})", markup=False)
        if step.preview is not None:
            _print_preview(step.preview)
        if step.preview_error:
            console.print(f"   gitops.plan failed: {step.preview_error}", markup=False)


def _print_preview(preview: dict[str, Any]) -> None:
    """The ``gitops.plan`` output: its facts, then each manifest as a YAML document."""
    console = terminal()
    console.print("   gitops.plan:", markup=False)
    manifests = preview.get("manifests")
    for key, value in preview.items():
        if key != "manifests":
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            console.print(f"     {key}: {shown}", markup=False)
    if isinstance(manifests, dict):
        for path, text in manifests.items():
            console.print(f"---\n# {path}\n{str(text).rstrip()}", markup=False, highlight=False)


def _print_report(report: RunbookTestReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(_jsonable(report), indent=2, default=str))
        return
    table = Table("step", "kind", "status", "tries", "ran", "notes", box=box.SIMPLE_HEAD)
    for s in report.steps:
        notes = "; ".join([*s.notes, *([f"error: {s.error}"] if s.error else [])])
        table.add_row(
            s.name,
            s.kind,
            status_text(s.status),
            ",".join(s.attempts) or "-",
            str(s.executions),
            notes or "-",
        )
    console = terminal()
    console.print(table)
    for note in report.notes:
        console.print(f"- {note}", markup=False)
    verdict = "PASS" if report.passed else "FAIL"
    console.print(f"{verdict} {report.runbook} {report.version}: run {report.status}", markup=False)


def _jsonable(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value
