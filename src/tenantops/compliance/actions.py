"""Runbook actions of the Compliance Evidence Collection checklist.

- ``compliance.collect_evidence`` (params ``period``; empty: the last quarter
  ended when the run started; a period not over at the run's start fails the
  step for good): writes the tenant's evidence bundle for the period as
  canonical JSON under ``<data dir>/compliance/<tenant>/<run>.<sha256[:16]>.json``,
  a name given by the content; output and evidence ``period, bundle`` (that path
  relative to the data directory, never the server's absolute path: anyone may
  read a run's output), ``digest`` (SHA-256 of the file's bytes), the chain
  verdict and counts. It reads in the run phase, over one consistent snapshot
  and outside the step's write transaction, so a long trail holds no write lock.
  Each attempt writes its own file (``collected_at`` differs), so a late attempt
  (a timeout, a lost lease) cannot overwrite the bundle whose digest the step
  recorded: the recorded name always holds the recorded bytes.
- ``compliance.record_signoff``: checks the recorded bundle on disk still has
  the collected digest, then writes one audit entry
  (``compliance.evidence.signed_off``) naming the auditor who signed off, with
  the digest and every gate's decision.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal, Role
from tenantops.compliance import bundle, periods
from tenantops.db import Database
from tenantops.errors import AppError
from tenantops.kit.canonical import canonical_json
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.files import write_atomic
from tenantops.runbooks import checklists, engine
from tenantops.runbooks.actions import (
    ActionContext,
    FunctionAction,
    Registry,
    StepFailed,
    StepResult,
)

if TYPE_CHECKING:
    from tenantops.config import Settings

KIND = "compliance"  # the bundles' folder under the data directory
SIGNED_OFF = "compliance.evidence.signed_off"


def bundle_name(tenant_id: str, run_id: str, digest: str) -> str:
    """Where a bundle of ``digest`` lives, relative to the data directory (``/``-separated)."""
    return str(PurePosixPath(KIND, tenant_id, f"{run_id}.{digest[:16]}.json"))


def bundle_path(data_dir: Path, tenant_id: str, run_id: str, recorded: object) -> Path | None:
    """The file a collect step recorded as its ``bundle``; None if it names no bundle of the run.

    Only a name of the run's own form is followed, never a path elsewhere.
    """
    if not isinstance(recorded, str):
        return None
    wanted = re.compile(re.escape(bundle_name(tenant_id, run_id, "")[:-5]) + r"[0-9a-f]{16}\.json")
    return data_dir / recorded if wanted.fullmatch(recorded) else None


def period_of(ctx: ActionContext, started: datetime) -> periods.Period:
    """The step's ``period`` param, else the last quarter ended by ``started``.

    A period not over when the run started fails the step for good: its bundle
    would be incomplete and signed off as if it were the period's evidence.
    """
    text = str(ctx.params.get("period") or "")
    try:
        return (
            periods.ended(periods.parse(text), started) if text else periods.last_quarter(started)
        )
    except AppError as exc:
        raise StepFailed(f"{ctx.step_name}: {exc.detail}", retriable=False) from None


def compliance_actions(settings: Settings, db: Database) -> Registry:
    """The checklist's actions, bound to the data directory and the database."""
    data_dir = settings.data_dir

    def collect_run(ctx: ActionContext) -> StepResult:
        if ctx.tenant_id is None:
            raise StepFailed(
                "compliance.collect_evidence needs a run against a tenant", retriable=False
            )
        with audit.snapshot(db) as session:
            started = as_utc(engine.get_run(session, ctx.run_id).created_at)
            period = period_of(ctx, started)
            document = bundle.build(
                session,
                tenant_id=ctx.tenant_id,
                period=period,
                run_id=ctx.run_id,
                collected_at=utcnow(),
            )
        body = canonical_json(document).encode()
        digest = hashlib.sha256(body).hexdigest()
        name = bundle_name(ctx.tenant_id, ctx.run_id, digest)
        write_atomic(data_dir / name, body)
        chain = document["audit"]["chain"]
        figures = {
            "period": period.label,
            "bundle": name,
            "digest": digest,
            "chain_ok": chain["ok"],
            "chain_reason": chain["reason"],
            "audit_entries": len(document["audit"]["entries"]),
            "runs": len(document["runs"]),
            "approvals": len(document["approvals"]),
            "sla_breaches": len(document["sla_breaches"]),
            "break_glass": len(document["break_glass"]),
            "gitops_commits": len(document["gitops_commits"]),
            "secrets": len(document["secrets"]),
        }
        base = settings.notify.dashboard_url.rstrip("/")
        link = f"{base}/api/v1/tenants/{ctx.tenant_id}/compliance-evidence/{ctx.run_id}/bundle"
        return StepResult(output={**figures, "link": link}, evidence=figures)

    def record_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        if ctx.tenant_id is None:
            raise StepFailed(
                "compliance.record_signoff needs a run against a tenant", retriable=False
            )
        collected = next(
            (r.evidence or {} for r in engine.steps_of(session, ctx.run_id) if r.name == "collect"),
            {},
        )
        digest = collected.get("digest")
        path = bundle_path(data_dir, ctx.tenant_id, ctx.run_id, collected.get("bundle"))
        if not digest or path is None or not path.is_file():
            raise StepFailed(f"{ctx.step_name}: the run has no evidence bundle", retriable=False)
        found = hashlib.sha256(path.read_bytes()).hexdigest()
        if found != digest:
            # Signed off against a bundle that has since changed: nobody signs that.
            raise StepFailed(
                f"{ctx.step_name}: bundle {path.name} has SHA-256 {found}, "
                f"not the {digest} collected",
                retriable=False,
            )
        gates = checklists.gate_decisions(session, ctx.run_id)
        sign_off = gates.get("sign-off") or (list(gates.values())[-1] if gates else {})
        signer = str(sign_off.get("by") or ctx.actor)
        detail = {
            "run_id": ctx.run_id,
            "period": collected.get("period"),
            "bundle": collected.get("bundle"),
            "digest": digest,
            "chain_ok": collected.get("chain_ok"),
            "signed_off_by": signer,
            "sign_off": sign_off.get("comment"),
            "findings": gates.get("findings", {}).get("comment"),
            "gates": gates,
        }
        entry = audit.record(
            session,
            # The trail names the auditor who signed off; the engine only carried it out.
            actor=Principal(subject=signer, roles=frozenset({Role.AUDITOR}), via="runbook"),
            action=SIGNED_OFF,
            tenant_id=ctx.tenant_id,
            changes={},
            detail=detail,
        )
        figures = {"audit_seq": entry.seq, "digest": digest, "signed_off_by": signer}
        result.output.update(figures)
        result.evidence.update(figures)

    def nothing(ctx: ActionContext) -> StepResult:
        return StepResult()

    return {
        "compliance.collect_evidence": FunctionAction(collect_run),
        "compliance.record_signoff": FunctionAction(nothing, record_apply),
    }
