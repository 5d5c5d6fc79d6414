"""``tenantops runs`` against a real server, and ``tenantops runbooks`` on files.

The runs commands run through ``tenantops.cli.main`` in this process against a
``tenantops serve`` subprocess (SQLite store, in-process worker) on an
ephemeral 127.0.0.1 port; runs are started straight into its database.
``runbooks validate|schema|test`` need no server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tenantops.auth.principal import Principal, Role
from tenantops.cli import main
from tenantops.db import Database
from tenantops.logs import configure_logging
from tenantops.runbooks import engine, spec
from tenantops.runbooks.sandbox import GRANTED_INPUTS, STAGE_OF_RUNBOOK
from tenantops.runbooks.spec import parse
from tests.servers import mint_token, serve_process, tenantops_env

REPO = Path(__file__).resolve().parents[2]

GATED = parse("""
id: cli-gated
version: "1.0"
title: CLI gated
tenant: false
inputs: {who: {type: string}}
steps:
  - {name: prepare, action: noop, params: {greeting: "hi {{ inputs.who }}"}, evidence: [echo]}
  - {name: sign-off, gate: {roles: [governance]}}
  - {name: finish, action: noop, params: {done: true}}
""")

BROKEN = parse("""
id: cli-broken
version: "1.0"
title: CLI broken
tenant: false
sla: {within: 1h}
steps:
  - {name: first, action: noop}
  - {name: breaks, action: fail, params: {message: disk full}, retry: {attempts: 2, backoff: 1ms}}
""")

SAMPLE = """\
id: sample
version: "1.0"
title: Sample
tenant: false
steps:
  - {name: prepare, action: noop, params: {x: 1}}
  - {name: flaky, action: noop, params: {x: 2}, retry: {attempts: 3, backoff: 10s}}
  - {name: nap, wait: 30m}
  - {name: finish, action: noop, params: {prev: "{{ steps.flaky.echo.x }}"}}
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


class CLI:
    """``tenantops ARGS`` in this process, with what it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> Result:
        self.capsys.readouterr()
        # Logs go to the stderr of when logging was configured: make it this
        # call's captured one, not that of a test that has finished (and closed it).
        configure_logging("INFO", json=False)
        code = main(list(args))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.code == 0, result
        return result.out


@dataclass
class Server:
    url: str
    db: Database

    def token(self, subject: str, *roles: str) -> str:
        return mint_token(self.db, subject, *roles)

    def start(self, starter: str, who: str) -> str:
        with self.db.write() as session:
            actor = Principal(starter, frozenset({Role.OPS_ENGINEER}))
            return engine.start_run(session, loaded=GATED, actor=actor, inputs={"who": who}).id


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("runs-cli")
    env = tenantops_env(data_dir=str(tmp), bootstrap_admin="false", worker__poll_seconds="0.05")
    with serve_process(env, tmp / "server.log") as url:
        db = Database(f"sqlite:///{tmp / 'tenantops.db'}")
        yield Server(url=url, db=db)
        db.dispose()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CLI:
    monkeypatch.delenv("TENANTOPS_TOKEN", raising=False)
    return CLI(capsys)


def _json(cli: CLI, *args: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(cli.ok(*args, "--json"))
    return data


def test_runs_from_list_to_a_decided_gate_watched_to_the_end(
    server: Server, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    amy = server.token("cli-amy", "governance")
    gus = server.token("cli-gus", "governance")
    ops = server.token("cli-oli", "ops_engineer")
    auditor = server.token("cli-ada", "auditor")
    run_id = server.start("cli-amy", "world")
    other = server.start("cli-amy", "moon")

    listed = cli.ok("runs", "list", "--runbook", "cli-gated", "--token", auditor)
    header, *rows = [line.split() for line in listed.splitlines() if line.strip()]
    assert header[:4] == ["id", "runbook", "tenant", "status"]
    assert [r[0] for r in rows if r and r[0] in (run_id, other)] == [other, run_id]

    # The in-process worker reaches the gate (bounded poll).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = _json(cli, "runs", "show", run_id, "--token", auditor)
        if shown["status"] == "waiting":
            break
        time.sleep(0.1)
    assert shown["status"] == "waiting"
    table = cli.ok("runs", "show", run_id, "--token", auditor)
    (gate_row,) = [
        r for r in (line.split() for line in table.splitlines()) if r[:2] == ["2", "sign-off"]
    ]
    assert gate_row[:5] == ["2", "sign-off", "gate:", "governance", "waiting"]

    refused = cli("runs", "approve", run_id, "sign-off", "--token", amy)
    assert refused.code == 1
    assert refused.err.startswith("error: Segregation of duties:")
    assert len(refused.err.strip().splitlines()) == 1
    refused = cli("runs", "approve", run_id, "sign-off", "--token", ops)
    assert refused.code == 1
    assert "needs one of" in refused.err

    decided = _json(cli, "runs", "approve", run_id, "sign-off", "--comment", "ok", "--token", gus)
    steps = decided["steps"]
    assert isinstance(steps, list)
    assert steps[1]["decided_by"] == "cli-gus"

    watched = cli.ok("runs", "watch", run_id, "--token", auditor, "--interval", "0.1")
    assert watched.strip().splitlines()[-1].strip() == f"run {run_id} succeeded"
    assert "finish" in watched

    cancelled = _json(cli, "runs", "cancel", other, "--reason", "not needed", "--token", ops)
    assert cancelled["status"] == "cancelled"
    watched_cancelled = cli("runs", "watch", other, "--token", auditor)
    assert watched_cancelled.code == 1
    assert watched_cancelled.out.strip().endswith(f"run {other} cancelled")
    again = cli("runs", "retry", other, "--token", ops)
    assert again.code == 1
    assert "only a failed run can be retried" in again.err

    missing = cli("runs", "show", "0190aaaa-0000-7000-8000-000000000000", "--token", auditor)
    assert missing.code == 1
    assert missing.err.startswith("error: Not found: no run")


def _until_failed(cli: CLI, run_id: str, token: str, tries: int) -> dict[str, object]:
    """The run once its step ``breaks`` has failed for good after ``tries`` tries (bounded poll)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = _json(cli, "runs", "show", run_id, "--token", token)
        steps = shown["steps"]
        assert isinstance(steps, list)
        if shown["status"] == "failed" and steps[1]["attempt"] == tries:
            return shown
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not fail after {tries} tries: {shown}")


def test_a_failed_run_reads_as_failed_with_how_to_retry_and_a_retry_counts_a_new_round(
    server: Server, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    ops = server.token("cli-ops", "ops_engineer")
    with server.db.write() as session:
        actor = Principal("cli-amy", frozenset({Role.OPS_ENGINEER}))
        run_id = engine.start_run(session, loaded=BROKEN, actor=actor).id
    _until_failed(cli, run_id, ops, tries=2)

    # Failing before the deadline is no SLA met: the list says what the run page says.
    listed = cli.ok("runs", "list", "--runbook", "cli-broken", "--token", ops)
    (row,) = [line for line in listed.splitlines() if line.strip().startswith(run_id)]
    assert "ended (failed) before the deadline" in row
    assert " met" not in row

    shown = cli.ok("runs", "show", run_id, "--token", ops)
    assert "step breaks failed: disk full — gave up after 2 tries" in shown
    assert "ended (failed) before the deadline" in shown
    assert shown.strip().splitlines()[-1] == (
        f"retry from the failed step: tenantops runs retry {run_id}"
    )
    assert shown.count("tenantops runs retry") == 1
    breaks = next(
        line.split() for line in shown.splitlines() if line.split()[:2] == ["2", "breaks"]
    )
    assert breaks[4] == "2/2"

    watched = cli("runs", "watch", run_id, "--token", ops)
    assert watched.code == 1
    assert [line.strip() for line in watched.out.strip().splitlines()[-2:]] == [
        f"run {run_id} failed",
        f"retry from the failed step: tenantops runs retry {run_id}",
    ]
    assert "runs retry" not in cli.ok("runs", "show", run_id, "--json", "--token", ops)

    cli.ok("runs", "retry", run_id, "--json", "--token", ops)
    _until_failed(cli, run_id, ops, tries=4)
    shown = cli.ok("runs", "show", run_id, "--token", ops)
    breaks = next(
        line.split() for line in shown.splitlines() if line.split()[:2] == ["2", "breaks"]
    )
    assert breaks[4:7] == ["2/2", "(4", "in"]  # this round's tries, and every try
    first = next(line.split() for line in shown.splitlines() if line.split()[:2] == ["1", "first"])
    assert first[4] == "1/3"

    # Nobody will retry it: closed, it stays failed and says so instead of the retry hint.
    cli.ok("runs", "cancel", run_id, "--reason", "disk replaced", "--token", ops)
    shown = cli.ok("runs", "show", run_id, "--token", ops)
    assert shown.strip().splitlines()[-1] == "closed: disk replaced — it is not retried"
    assert "tenantops runs retry" not in shown
    listed = cli.ok("runs", "list", "--runbook", "cli-broken", "--token", ops)
    (row,) = [line for line in listed.splitlines() if line.strip().startswith(run_id)]
    assert "failed (closed)" in row
    refused = cli("runs", "retry", run_id, "--token", ops)
    assert refused.code == 1
    assert refused.err == (
        f"error: Conflict: run {run_id} was closed (disk replaced); it is not retried\n"
    )


def test_windows_set_list_and_a_run_waiting_for_one_then_delete(
    server: Server, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    ops = server.token("cli-win-oli", "ops_engineer")
    qa = server.token("cli-win-quinn", "qa")
    # Open only on the day after tomorrow (UTC): closed for the whole test, whenever it runs.
    opens = datetime.now(UTC).date() + timedelta(days=2)
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[opens.weekday()]
    common = ("--from", "00:00", "--to", "00:01", "--tz", "UTC", "--token")

    refused = cli("windows", "set", "cli-night", "--days", day, *common, qa)
    assert refused.code == 1
    assert len(refused.err.strip().splitlines()) == 1
    bad = cli("windows", "set", "cli-night", "--days", "someday", *common, ops)
    assert bad.code == 1
    assert "days" in bad.err
    assert len(bad.err.strip().splitlines()) == 1

    cli.ok("windows", "set", "cli-night", "--days", day, *common, ops, "--description", "test")
    listed = cli.ok("windows", "list", "--token", qa)
    (row,) = [line.split() for line in listed.splitlines() if "cli-night" in line]
    assert row[:6] == [
        "cli-night",
        day,
        "00:00-00:01",
        "UTC",
        "closed",
        str(opens),
    ]

    windowed = parse(
        "id: cli-windowed\nversion: '1.0'\ntitle: W\ntenant: false\nsteps:\n"
        "  - {name: change, action: noop, window: cli-night}\n"
    )
    with server.db.write() as session:
        actor = Principal("cli-win-oli", frozenset({Role.OPS_ENGINEER}))
        run_id = engine.start_run(session, loaded=windowed, actor=actor, inputs={}).id
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the server's worker holds the step (bounded poll)
        step = _json(cli, "runs", "show", run_id, "--token", qa)["steps"][0]  # type: ignore[index]
        if step["wake_at"] and step["wake_at"] > datetime.now(UTC).isoformat():
            break
        time.sleep(0.1)
    shown = cli.ok("runs", "show", run_id, "--token", qa)
    assert "window cli-night: due" in shown

    assert cli.ok("windows", "delete", "cli-night", "--token", ops).strip() == (
        "deleted maintenance window cli-night"
    )
    gone = cli("windows", "delete", "cli-night", "--token", ops)
    assert gone.code == 1
    assert gone.err.startswith("error: Not found: no maintenance window")
    # The held step is due at once and fails its run, saying how to define the window.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = _json(cli, "runs", "show", run_id, "--token", qa)
        if run["status"] == "failed":
            break
        time.sleep(0.1)
    assert run["status"] == "failed"
    assert "tenantops windows set cli-night" in str(run["error"])


# --- the library --------------------------------------------------------------


def test_validate_passes_the_shipped_library_and_names_the_first_error_of_a_file(
    cli: CLI, tmp_path: Path
) -> None:
    shipped = spec.load_library()
    out = cli.ok("runbooks", "validate")
    assert out.startswith(f"ok: {len(shipped)} runbook(s) valid")

    good = tmp_path / "sample.yaml"
    good.write_text(SAMPLE)
    assert "sample.yaml" in cli.ok("runbooks", "validate", str(good))

    broken = tmp_path / "broken.yaml"
    broken.write_text(SAMPLE.replace("attempts: 3", "attempts: lots"))
    result = cli("runbooks", "validate", str(good), str(broken))
    assert result.code == 1
    assert result.out == ""
    (line,) = result.err.strip().splitlines()
    assert line.startswith(f"error: {broken}: steps.1.retry.attempts:")

    both = tmp_path / "both.yaml"
    both.write_text(SAMPLE.replace("action: noop, params: {x: 1}", "action: noop, wait: 1s"))
    result = cli("runbooks", "validate", str(both))
    assert result.code == 1
    assert "needs exactly one of action, gate, wait" in result.err


def test_validate_refuses_a_gate_check_no_server_installs(cli: CLI, tmp_path: Path) -> None:
    gated = "  - {name: decide, gate: {roles: [security], check: %s}}\n"
    good = tmp_path / "checked.yaml"
    good.write_text(SAMPLE + gated % "access_review.decision")
    assert "checked.yaml" in cli.ok("runbooks", "validate", str(good))

    typo = tmp_path / "typo.yaml"
    typo.write_text(SAMPLE + gated % "access_review.decisions")
    result = cli("runbooks", "validate", str(typo))
    assert result.code == 1
    (line,) = result.err.strip().splitlines()
    assert line == (
        f"error: {typo}: steps.4.gate.check: no gate check 'access_review.decisions' is"
        " installed (known: access_review.decision, budget_review.decision)"
    )


def test_the_published_schema_is_the_one_the_validator_uses(cli: CLI) -> None:
    committed = (REPO / "docs" / "runbook.schema.json").read_text(encoding="utf-8")
    assert json.loads(committed) == spec.schema()
    assert cli.ok("runbooks", "schema") == committed


def test_runbooks_list_and_show(cli: CLI, tmp_path: Path) -> None:
    listed = json.loads(cli.ok("runbooks", "list", "--json"))
    assert sorted(r["id"] for r in listed) == sorted(spec.load_library())
    path = tmp_path / "sample.yaml"
    path.write_text(SAMPLE)
    shown = cli.ok("runbooks", "show", str(path))
    (flaky,) = [r for r in (line.split() for line in shown.splitlines()) if r[:2] == ["2", "flaky"]]
    assert flaky[:5] == ["2", "flaky", "noop", "3x", "10s"]
    assert "wait 30m" in shown


# --- runbooks test ------------------------------------------------------------


def _steps(out: str) -> dict[str, list[str]]:
    """Rows of the outcome table, by step name."""
    return {row[0]: row for row in (line.split() for line in out.splitlines()) if len(row) > 3}


def test_a_step_failing_twice_within_three_attempts_passes(cli: CLI, tmp_path: Path) -> None:
    path = tmp_path / "sample.yaml"
    path.write_text(SAMPLE)
    out = cli.ok("runbooks", "test", str(path), "--fail", "flaky:2", "--crash", "finish")
    rows = _steps(out)
    assert rows["flaky"][2:4] == ["succeeded", "failed,failed,succeeded"]
    assert rows["nap"][2] == "succeeded"  # a 30-minute timer, simulated
    assert rows["finish"][2:4] == ["succeeded", "lost,succeeded"]
    assert "refused (fenced)" in out
    assert out.strip().splitlines()[-1] == "PASS sample 1.0: run succeeded"


def test_a_windowed_step_waits_for_its_window_in_the_test_too(cli: CLI, tmp_path: Path) -> None:
    path = tmp_path / "windowed.yaml"
    path.write_text(SAMPLE.replace("params: {x: 2},", "params: {x: 2}, window: night,"))
    out = cli.ok("runbooks", "test", str(path), "--fail", "flaky:1")
    assert "maintenance window(s) night defined for the test as daily" in out
    assert _steps(out)["flaky"][2:4] == ["succeeded", "failed,succeeded"]
    assert out.strip().splitlines()[-1] == "PASS sample 1.0: run succeeded"
    shown = cli.ok("runbooks", "show", str(path))
    assert "noop (window night)" in shown
    assert "noop (window night)" in cli.ok("runbooks", "test", str(path), "--dry-run")


def test_failures_beyond_the_attempts_fail_the_test(cli: CLI, tmp_path: Path) -> None:
    path = tmp_path / "sample.yaml"
    path.write_text(SAMPLE)
    result = cli("runbooks", "test", str(path), "--fail", "flaky:3")
    assert result.code == 1
    rows = _steps(result.out)
    assert rows["flaky"][2:4] == ["failed", "failed,failed,failed"]
    assert rows["finish"][2] == "pending"
    assert "run failed: step flaky failed: injected failure 3/3" in result.out
    assert result.out.strip().splitlines()[-1] == "FAIL sample 1.0: run failed"


def test_a_fault_in_a_step_that_does_not_exist_is_refused(cli: CLI, tmp_path: Path) -> None:
    path = tmp_path / "sample.yaml"
    path.write_text(SAMPLE)
    result = cli("runbooks", "test", str(path), "--crash", "nope")
    assert result.code == 1
    assert result.err.strip() == "error: runbook sample has no step 'nope' to inject a fault into"
    result = cli("runbooks", "test", str(path), "--fail", "flaky")
    assert result.code == 2
    assert "STEP:N" in result.err


@pytest.mark.skipif(
    "tenant-onboarding" not in spec.load_library(), reason="no onboarding runbook shipped"
)
def test_onboarding_survives_a_failure_a_timeout_and_a_crash_on_the_local_drivers(
    cli: CLI,
) -> None:
    out = cli.ok(
        "runbooks", "test", "tenant-onboarding",
        "--fail", "gitops:2", "--timeout", "identity", "--crash", "secret-store",
    )  # fmt: skip
    rows = _steps(out)
    assert rows["gitops"][3] == "failed,failed,succeeded"
    assert rows["identity"][3] == "failed,succeeded"
    assert rows["secret-store"][3] == "lost,succeeded"
    assert out.strip().splitlines()[-1] == "PASS tenant-onboarding 1.2: run succeeded"


@pytest.mark.skipif(
    "tenant-onboarding" not in spec.load_library(), reason="no onboarding runbook shipped"
)
def test_a_dry_run_prints_the_plan_and_the_manifests_without_running(cli: CLI) -> None:
    out = cli.ok("runbooks", "test", "tenant-onboarding", "--dry-run")
    assert "dry run, nothing is done" in out
    assert "sample tenant: sample-tenant (approved)" in out
    assert '"ticket_ref": "RITM0000001"' in out  # params rendered for the sample tenant
    assert "kind: Namespace" in out
    assert "PASS" not in out


def _needs_an_example(runbook: spec.Runbook) -> list[str]:
    """Required inputs `runbooks test` cannot fill: no example, not the sample tenant,
    not what a service grants (the break-glass token), not a lifecycle runbook's (the
    tenant service starts those, and the harness takes the sample tenant there)."""
    if runbook.id in STAGE_OF_RUNBOOK:
        return []
    granted = GRANTED_INPUTS.get(runbook.id, frozenset())
    return [
        name
        for name, declared in runbook.inputs.items()
        if declared.required
        and declared.example is None
        and name != "tenant"
        and name not in granted
    ]


def test_every_shipped_runbook_can_be_tested_without_inputs() -> None:
    missing = {
        runbook_id: names
        for runbook_id, loaded in spec.load_library().items()
        if (names := _needs_an_example(loaded.runbook))
    }
    assert missing == {}, "required inputs without an example"


# The runbooks whose inputs are not just a tenant: their examples must work as given.
WITH_EXAMPLES = sorted(
    runbook_id
    for runbook_id, loaded in spec.load_library().items()
    if any(i.example is not None for i in loaded.runbook.inputs.values())
    or runbook_id in GRANTED_INPUTS
)


@pytest.mark.parametrize("runbook_id", WITH_EXAMPLES)
def test_a_shipped_runbook_passes_its_test_with_its_examples(cli: CLI, runbook_id: str) -> None:
    out = cli.ok("runbooks", "test", runbook_id)
    assert out.strip().splitlines()[-1].startswith(f"PASS {runbook_id} ")


def test_an_example_of_the_wrong_type_is_refused(cli: CLI, tmp_path: Path) -> None:
    path = tmp_path / "typed.yaml"
    typed = "tenant: false\ninputs: {n: {type: integer, example: x}}\n"
    path.write_text(SAMPLE.replace("tenant: false\n", typed))
    result = cli("runbooks", "validate", str(path))
    assert result.code == 1
    assert "example must be of type integer" in result.err


def test_an_unknown_tenant_stage_is_a_usage_error_before_anything_runs(cli: CLI) -> None:
    result = cli("runbooks", "test", "tenant-reactivation", "--tenant-state", "bogus")
    assert result.code == 2
    assert "'bogus' is none of requested, approved" in result.err
    assert len(result.err.strip().splitlines()) == 1
