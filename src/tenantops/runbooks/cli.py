"""``tenantops runs`` (runs on a server, over HTTP) and ``tenantops runbooks`` (the library).

``runbooks validate``, ``schema`` and ``test`` need no server: they read the
runbook files and, for ``test``, run one against a throwaway database in a
temporary directory with the local drivers.
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
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.kit.cli import DEFAULT_URL, Output, Token, Url, connect, terminal
from tenantops.runbooks import service, spec
from tenantops.runbooks.actions import Registry
from tenantops.runbooks.plan import Plan, plan_runbook
from tenantops.runbooks.sandbox import TENANT_STAGES, Faults
from tenantops.runbooks.testing import RunbookTestReport, run_runbook_test

runs_app = typer.Typer(
    help="Runbook runs on a server: list, show, watch, decide.", no_args_is_help=True
)
runbooks_app = typer.Typer(
    help="The runbook library: list, show, validate, schema, test.", no_args_is_help=True
)

FINISHED = ("succeeded", "failed", "cancelled")
STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
    "running": "cyan",
    "ready": "cyan",
    "waiting": "yellow",
    "pending": "dim",
}


def _since(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _sla(sla: dict[str, Any] | None) -> str:
    if not sla:
        return "-"
    if sla["breached"]:
        return "BREACHED"
    left = sla.get("remaining_seconds")
    return "met" if left is None else f"{_duration(left)} left"


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _evidence(step: dict[str, Any]) -> str:
    if step.get("error") and step["status"] != "succeeded":
        return f"error: {step['error']}"
    evidence = step.get("evidence") or {}
    return ", ".join(f"{k}={v}" for k, v in evidence.items() if v is not None)


def _steps_table(run: dict[str, Any]) -> Table:
    table = Table(
        "#",
        "step",
        "kind",
        "status",
        "tries",
        "took",
        "sla",
        "evidence / error",
        box=box.SIMPLE_HEAD,
    )
    for step in run["steps"]:
        what = step["action"] or (
            "gate: " + ", ".join(step["gate"]["roles"]) if step["gate"] else step["kind"]
        )
        table.add_row(
            str(step["position"] + 1),
            step["name"],
            what,
            _status(step["status"]),
            f"{step['attempt']}/{step['max_attempts']}" if step["kind"] == "action" else "-",
            _duration(step["duration_seconds"]),
            _sla(step["sla"]),
            _evidence(step),
        )
    return table


def _header(run: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None)
    tenant = run["tenant_name"] or run["tenant_id"] or "-"
    for key, value in (
        ("run", run["id"]),
        ("runbook", f"{run['runbook_id']} {run['runbook_version']} ({run['runbook_hash'][:12]})"),
        ("tenant", tenant),
        ("status", run["status"]),
        ("progress", f"{run['steps_done']}/{run['steps_total']}"),
        ("current_step", run["current_step"] or "-"),
        ("started_by", run["started_by"]),
        ("created_at", _since(run["created_at"])),
        ("finished_at", _since(run["finished_at"])),
        ("sla", _sla(run["sla"])),
        ("sla_deadline", _since(run["sla"]["deadline"]) if run["sla"] else "-"),
        ("error", run["error"] or "-"),
    ):
        table.add_row(f"[bold]{key}[/bold]", value)
    return table


def _show_run(run: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(run, indent=2))
        return
    terminal().print(Group(_header(run), _steps_table(run)))


@runs_app.command("list")
def list_runs(
    url: Url = DEFAULT_URL,
    token: Token = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant name or id")] = None,
    runbook: Annotated[str | None, typer.Option(help="Runbook id")] = None,
    status: Annotated[
        str | None, typer.Option(help="running|waiting|succeeded|failed|cancelled")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many")] = 50,
    as_json: Output = False,
) -> None:
    """List runs, newest first."""
    params = {
        k: v for k, v in {"tenant": tenant, "runbook": runbook, "status": status}.items() if v
    }
    with connect(url, token) as client:
        items = client.collect("/runs", params, limit)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table(
        "id",
        "runbook",
        "tenant",
        "status",
        "progress",
        "step",
        "sla",
        "started_by",
        "created",
        box=box.SIMPLE_HEAD,
    )
    for r in items:
        table.add_row(
            r["id"],
            r["runbook_id"],
            r["tenant_name"] or r["tenant_id"] or "-",
            _status(r["status"]),
            f"{r['steps_done']}/{r['steps_total']}",
            r["current_step"] or "-",
            _sla(r["sla"]),
            r["started_by"],
            _since(r["created_at"]),
        )
    terminal().print(table)
    if not items:
        typer.echo("no runs match")


@runs_app.command("show")
def show_run(
    run_id: str, url: Url = DEFAULT_URL, token: Token = None, as_json: Output = False
) -> None:
    """Show a run: every step with its status, tries, timing, SLA and evidence."""
    with connect(url, token) as client:
        _show_run(client.get(f"/runs/{run_id}"), as_json)


@runs_app.command("watch")
def watch_run(
    run_id: str,
    url: Url = DEFAULT_URL,
    token: Token = None,
    interval: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds between polls")] = 1.0,
) -> None:
    """Follow a run's step progress live until it finishes (Ctrl-C stops watching).

    Exits 0 when the run succeeded, 1 when it failed or was cancelled.
    """
    console = terminal()
    with connect(url, token) as client:
        run = client.get(f"/runs/{run_id}")
        try:
            with Live(
                Group(_header(run), _steps_table(run)),
                console=console,
                refresh_per_second=4,
                transient=False,
            ) as live:
                while run["status"] not in FINISHED:
                    time.sleep(interval)
                    run = client.get(f"/runs/{run_id}")
                    live.update(Group(_header(run), _steps_table(run)))
        except KeyboardInterrupt:
            typer.echo(f"stopped watching; run {run_id} is {run['status']}", err=True)
            raise typer.Exit(130) from None
    typer.echo(f"run {run_id} {run['status']}")
    if run["status"] != "succeeded":
        raise typer.Exit(1)


def _decide(
    run_id: str,
    step: str,
    decision: str,
    comment: str | None,
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    body = {"decision": decision, "comment": comment}
    with connect(url, token) as client:
        _show_run(client.post(f"/runs/{run_id}/gates/{step}", body), as_json)


@runs_app.command("approve")
def approve_gate(
    run_id: str,
    step: Annotated[str, typer.Argument(help="The gate step")],
    comment: str | None = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Approve an approval gate of a run (you need one of its roles, and not to have started it)."""
    _decide(run_id, step, "approve", comment, url, token, as_json)


@runs_app.command("reject")
def reject_gate(
    run_id: str,
    step: Annotated[str, typer.Argument(help="The gate step")],
    comment: Annotated[str, typer.Option(help="Why (required)")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Reject an approval gate: the run fails at that step."""
    _decide(run_id, step, "reject", comment, url, token, as_json)


@runs_app.command("cancel")
def cancel_run(
    run_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit trail)")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: Output = False,
) -> None:
    """Cancel an unfinished run."""
    with connect(url, token) as client:
        _show_run(client.post(f"/runs/{run_id}/cancel", {"reason": reason}), as_json)


@runs_app.command("retry")
def retry_run(
    run_id: str, url: Url = DEFAULT_URL, token: Token = None, as_json: Output = False
) -> None:
    """Retry a failed run from its failed step."""
    with connect(url, token) as client:
        _show_run(client.post(f"/runs/{run_id}/retry", None), as_json)


# --- the library (local) ----------------------------------------------------


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
        does = s.action or (f"gate: {', '.join(s.gate.roles)}" if s.gate else f"wait {s.wait}")
        steps.add_row(
            str(n),
            s.name,
            does,
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

    Stops at the first error with one line naming the file and the path in it.
    """
    library = spec.load_library()
    checked = [loaded.source for loaded in library.values()]
    for path in files or []:
        if not path.is_file():
            raise Unprocessable(f"{path}: no such file")
        spec.parse(path.read_text(encoding="utf-8"), source=str(path))
        checked.append(str(path))
    typer.echo(f"ok: {len(checked)} runbook(s) valid ({', '.join(checked) or 'none'})")


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
def local_drivers(data_dir: Path, db: Database) -> Iterator[Registry]:
    """The local drivers for ``data_dir``, and this server's API on a free 127.0.0.1 port.

    The health checks of the embedded default call the built-in per-tenant probe
    of the server, so the test serves one over the throwaway database.
    Environment settings are ignored: a test must never reach a configured
    remote (a real Git remote, SMTP server or health URL).
    """
    import socket

    import uvicorn

    from tenantops.app import create_app
    from tenantops.config import Settings, WorkerSettings
    from tenantops.wiring import build_actions

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
        yield build_actions(settings, db)
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
            _status(s.status),
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
