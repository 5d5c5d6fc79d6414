"""Runs announce their outcome: every step, the run's end, cancellation, SLA breaches.

The worker records plain steps on the set-based batch path and everything else
step by step; a run must be announced the same whichever path finished it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tenantops.db import Database
from tenantops.runbooks import engine
from tenantops.runbooks.actions import ActionContext, FunctionAction, StepResult
from tests.conftest import Clock
from tests.events.test_outbox import events
from tests.runbooks.test_engine import AMY, drain, runbook, start, worker


def announced(db: Database, run_id: str) -> list[tuple[str, str | None]]:
    return [
        (e.type.removeprefix("io.tenantops."), e.data.get("step"))
        for e in events(db)
        if e.data.get("run_id") == run_id
    ]


def test_a_run_of_plain_steps_announces_each_step_then_its_success(db: Database) -> None:
    loaded = runbook("".join(f"  - {{name: s{i}, action: noop}}\n" for i in range(3)))
    runs = [start(db, loaded) for _ in range(4)]  # several at once: the batch path
    drain(worker(db, concurrency=8))
    for run_id in runs:
        assert announced(db, run_id) == [
            ("run.step.succeeded", "s0"),
            ("run.step.succeeded", "s1"),
            ("run.step.succeeded", "s2"),
            ("run.succeeded", None),
        ]
    done = next(e for e in events(db) if e.type.endswith("run.succeeded"))
    assert done.topic == "tenant.lifecycle"
    assert done.data["runbook"] == "t"
    assert done.data["version"] == "1.0"


def test_a_step_by_step_run_is_announced_the_same(db: Database) -> None:
    """A step with an ``apply`` hook is recorded by ``engine.complete``, not the batch path."""
    applied: list[str] = []

    def noted(session: Any, ctx: ActionContext, result: StepResult) -> None:
        applied.append(ctx.step_name)

    hooked = {"hooked": FunctionAction(lambda ctx: StepResult(), noted)}
    loaded = runbook("  - {name: one, action: hooked}\n  - {name: two, action: hooked}\n")
    run_id = start(db, loaded)
    drain(worker(db, hooked))
    assert applied == ["one", "two"]
    assert announced(db, run_id) == [
        ("run.step.succeeded", "one"),
        ("run.step.succeeded", "two"),
        ("run.succeeded", None),
    ]


def test_a_failed_run_announces_the_step_that_failed_it(db: Database) -> None:
    loaded = runbook(
        "  - name: one\n    action: fail\n    params: {message: quota exceeded, retriable: false}\n"
        "  - {name: two, action: noop}\n"
    )
    run_id = start(db, loaded)
    drain(worker(db))
    assert announced(db, run_id) == [("run.step.failed", "one"), ("run.failed", None)]
    failed = next(e for e in events(db) if e.type.endswith("run.step.failed"))
    assert failed.data["error"] == "quota exceeded"


def test_cancel_and_sla_breach_are_announced(db: Database, clock: Clock) -> None:
    gated = runbook(
        "  - {name: wait, gate: {roles: [governance]}, sla: {within: 1h, after: start}}\n"
    )
    breached = start(db, gated)
    cancelled = start(db, gated)
    clock.advance(hours=2)
    with db.write() as s:
        engine.check_deadlines(s)
        engine.cancel(s, run_id=cancelled, principal=AMY, reason="not needed")
    assert announced(db, breached) == [("run.sla_breached", "wait")]
    assert ("run.cancelled", None) in announced(db, cancelled)
    [gone] = [e for e in events(db) if e.type.endswith("run.cancelled")]
    assert gone.data["actor"] == AMY.subject
    assert gone.data["error"] == "not needed"


def test_a_membership_granted_and_removed_by_a_runbook_is_announced(
    db: Database, tmp_path: Path
) -> None:
    from tenantops.config import Settings
    from tenantops.drivers.actions import driver_actions

    loaded = runbook(
        "  - {name: group, action: identity.create_group}\n"
        "  - {name: grant, action: identity.add_member,"
        " params: {subject: Dana@Acme.example, permission: write, reason: on call}}\n"
        "  - {name: ungrant, action: identity.remove_member,"
        " params: {subject: dana@acme.example}}\n",
        extra="inputs:\n  tenant: {type: object}\n",
    )
    tenant = {
        "id": "0193a0c4-5b6e-7d2f-9a10-2b3c4d5e6f70",
        "name": "acme",
        "business_owner": "owner@acme.example",
        "contacts": [],
    }
    run_id = start(db, loaded, tenant=tenant)
    drain(worker(db, driver_actions(Settings(data_dir=tmp_path), db)))
    access = [e for e in events(db) if ".access." in e.type]
    assert [(e.type.rsplit(".", 1)[1], e.data["subject"]) for e in access] == [
        ("granted", "dana@acme.example"),
        ("revoked", "dana@acme.example"),
    ]
    assert access[0].topic == "tenant.security"
    assert access[0].data["tenant_name"] == "acme"
    assert access[0].data["reason"] == "on call"
    assert access[0].data["grant_id"].endswith("/dana@acme.example")
    assert ("run.succeeded", None) in announced(db, run_id)


def test_a_rate_limit_set_and_lifted_by_a_playbook_is_announced_on_billing(
    db: Database, tmp_path: Path
) -> None:
    from tenantops.config import Settings
    from tenantops.drivers.actions import driver_actions

    loaded = runbook(
        "  - {name: limit, action: access.set_rate_limit,"
        " params: {rate: 2.5, burst: 10, reason: cost overrun}}\n"
        "  - {name: lift, action: access.lift_rate_limit}\n",
        extra="inputs:\n  tenant: {type: object}\n",
    )
    tenant = {"id": "0193a0c4-5b6e-7d2f-9a10-2b3c4d5e6f71", "name": "acme"}
    run_id = start(db, loaded, tenant=tenant)
    drain(worker(db, driver_actions(Settings(data_dir=tmp_path), db)))
    limits = [e for e in events(db) if ".rate_limit." in e.type]
    assert [(e.type.rsplit(".", 1)[1], e.data["rate"], e.data["burst"]) for e in limits] == [
        ("applied", 2.5, 10),
        ("lifted", None, None),
    ]
    assert {e.topic for e in limits} == {"tenant.billing"}
    assert limits[0].data["run_id"] == run_id
    assert limits[0].data["reason"] == "cost overrun"
