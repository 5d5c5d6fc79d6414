"""Runbook actions and the gate check of the Access Review checklist.

- ``access_review.snapshot``: the tenant's identity group (through the
  identity port), its bound API tokens, web users and break-glass grants, and
  the access bound to no tenant (``platform``), read in a read-only transaction
  of its own; a re-run reads them again and rewrites the file. The full
  snapshot names people, so it goes to a canonical-JSON file (``TenantFiles``,
  kind ``access-reviews``) served by ``GET /tenants/{tenant}/access-reviews/{run}/snapshot``
  to security, governance, auditors and admins only. Output (readable by every
  role): ``counts``, ``findings`` (a summary naming nobody), ``digest`` (SHA-256
  of the file) and ``snapshot`` (that API path); evidence: the counts, the
  findings summary and the digest.
- gate check ``access_review.decision`` (named by the ``decide`` gate): a
  security user's approval is refused (422, nothing recorded) unless its
  comment is a decision that can be carried out — the grammar of
  ``accessreview.decision``, every item in the reviewed snapshot file, each
  token and user one row now — so a typo is corrected at the gate.
- ``access_review.revoke`` (param ``digest``): carries out the ``decide``
  gate's decision (grammar in ``accessreview.decision``, ADR 0040). Every item
  is checked again, as the gate check did, against the reviewed snapshot file
  (its SHA-256 must be ``digest``) and against the tokens and users as they
  are now before anything is revoked; a decision that can no longer be carried
  out whole (the file or the rows changed since) fails the step, not
  retriably, naming each bad item. Members leave the group through the
  identity port (in ``run``, one idempotency key per member); tokens, web users
  and break-glass grants are revoked in ``apply``. Output and evidence:
  ``outcome``, ``decided_by``, ``revoked`` and ``already`` (``kind:identifier``;
  a token by its prefix). ``keep``, or no comment, revokes nothing.
- ``access_review.record`` (params ``digest``, ``counts``, optional
  ``revocation``): the gate decisions as an ``access_review.recorded`` audit
  entry naming who decided.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from tenantops.accessreview import revocation, service
from tenantops.accessreview.decision import Decision, DecisionError, Item
from tenantops.accessreview.revocation import Decider
from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.db import Database
from tenantops.drivers.errors import DriverError
from tenantops.drivers.identity.port import IdentityProvider
from tenantops.errors import AppError, NotFound
from tenantops.kit.clock import utcnow
from tenantops.runbooks import checklists
from tenantops.runbooks.actions import (
    ActionContext,
    FunctionAction,
    GateCheck,
    Registry,
    StepFailed,
    StepResult,
)
from tenantops.runbooks.models import Run
from tenantops.tenants.actions import TenantFiles

if TYPE_CHECKING:
    from tenantops.config import Settings


def _tenant(ctx: ActionContext) -> dict[str, Any]:
    tenant = ctx.inputs.get("tenant")
    if ctx.tenant_id is None or not isinstance(tenant, dict) or not tenant.get("name"):
        raise StepFailed(f"{ctx.step_name}: needs a run against a tenant", retriable=False)
    return {**tenant, "id": ctx.tenant_id}


def approver(
    session: Session, ctx: ActionContext, tenant: dict[str, Any], gate: dict[str, Any]
) -> Decider:
    """Who approved the ``decide`` gate: roles and tenant binding from the engine's audit entry.

    None found, or one that does not record the approver's tenant (fail closed):
    the approver holds no role beyond the gate's and counts as bound to a tenant.
    """
    at = gate.get("at")
    since = datetime.fromisoformat(str(at)) if at else None
    entries = audit.entries_about(
        session, tenant_id=tenant["id"], action="run.gate.signal", since=since
    )
    subject = str(gate["by"])
    for entry in entries:
        detail = entry.detail or {}
        if (
            detail.get("run_id") == ctx.run_id
            and detail.get("step") == "decide"
            and detail.get("decision") == "approve"
            and entry.actor == subject
        ):
            scoped = "approver_tenant" not in detail or detail["approver_tenant"] is not None
            return Decider(subject, frozenset(entry.actor_roles or ()), tenant_scoped=scoped)
    return Decider(subject, frozenset({str(gate.get("role") or "")}))


def access_review_checks(settings: Settings) -> dict[str, GateCheck]:
    """``access_review.decision``: the ``decide`` gate's comment, checked before it is recorded."""
    files = TenantFiles(settings.data_dir)

    def reviewed_digest(session: Session, run: Run) -> str | None:
        """The digest the snapshot step recorded; None before it has (or in another runbook)."""
        if run.runbook_id != service.RUNBOOK or run.tenant_id is None:
            return None
        try:
            step = checklists.finished_step(
                session,
                run_id=run.id,
                tenant_id=run.tenant_id,
                runbook_id=service.RUNBOOK,
                step="snapshot",
                what="access review",
            )
        except NotFound:
            return None
        return str((step.output or {}).get("digest") or "") or None

    def decision_check(
        session: Session,
        *,
        run: Run,
        step_name: str,
        decision: str,
        comment: str | None,
        principal: Principal,
    ) -> None:
        """What the ``revoke`` step would refuse, refused now: grammar, snapshot, rows, who."""
        _decision, items = revocation.decided_items(
            comment,
            snapshot=files.path(service.KIND, run.tenant_id, run.id),
            digest=reviewed_digest(session, run),
        )
        tenant = run.inputs.get("tenant")
        if items and isinstance(tenant, dict):
            revocation.check_current(
                session,
                items=items,
                tenant={**tenant, "id": run.tenant_id},
                decider=Decider(
                    principal.subject,
                    frozenset(principal.role_names()),
                    tenant_scoped=principal.tenant_scoped,
                ),
            )

    return {"access_review.decision": decision_check}


def access_review_actions(
    settings: Settings, db: Database, *, identity: IdentityProvider
) -> Registry:
    """The Access Review actions, reading groups from ``identity`` (the configured adapter)."""
    files = TenantFiles(settings.data_dir)

    def snapshot_run(ctx: ActionContext) -> StepResult:
        tenant = _tenant(ctx)
        try:
            group = identity.get_group(tenant_id=tenant["id"])
        except DriverError as exc:
            raise StepFailed(str(exc), retriable=exc.retriable) from exc
        # Read-only: a re-run after a crash takes the snapshot again, nothing is written.
        with db.read() as session:
            snapshot = service.take_snapshot(session, tenant=tenant, group=group, now=utcnow())
        # The names go to the file only; the run (readable by every role) keeps figures.
        _path, digest = files.write(service.KIND, ctx, snapshot)
        evidence = {**snapshot["counts"], "findings": snapshot["summary"], "digest": digest}
        output = {
            "counts": snapshot["counts"],
            "findings": snapshot["summary"],
            "digest": digest,
            "snapshot": service.snapshot_api_path(tenant["id"], ctx.run_id),
        }
        return StepResult(output=output, evidence=evidence)

    def decided(ctx: ActionContext, tenant: dict[str, Any]) -> tuple[Decision, list[Item], Decider]:
        """The ``decide`` gate's decision, its items checked again, and who gave it.

        Its gate check accepted it; the snapshot file or the tokens and users
        may have changed since, and then the step fails for good. The decider's
        roles and tenant binding are those the engine's audit entry of the approval
        recorded.
        """
        with db.read() as session:
            gate = checklists.gate_decisions(session, ctx.run_id).get("decide")
            if gate is None or not gate.get("by"):
                raise StepFailed(
                    f"{ctx.step_name}: the decide gate has no decision", retriable=False
                )
            decider = approver(session, ctx, tenant, gate)
        try:
            decision, items = revocation.decided_items(
                str(gate.get("comment") or ""),
                snapshot=files.path(service.KIND, tenant["id"], ctx.run_id),
                digest=str(ctx.params.get("digest") or ""),
            )
            if items:
                with db.read() as session:
                    revocation.check_current(session, items=items, tenant=tenant, decider=decider)
        except DecisionError as exc:
            raise StepFailed(f"{ctx.step_name}: {exc}", retriable=False) from None
        return decision, items, decider

    def partial(
        ctx: ActionContext, tenant: dict[str, Any], decider: Decider, removed: list[str], error: str
    ) -> None:
        """``access_review.revoke_partial``: members left the group, then the step failed.

        Written in a transaction of its own before the step fails (on any error,
        not only the identity provider's), one entry per failed attempt that
        removed someone (a retry removes them again, changing
        nothing, and writes its own entry if it fails too): the removal is never
        without a trail, whether or not a retry follows.
        """
        with db.write() as session:
            audit.record(
                session,
                # The decider's roles as the approval recorded them, as access_review.revoked.
                actor=decider.principal(),
                action="access_review.revoke_partial",
                tenant_id=tenant["id"],
                changes={},
                detail={
                    "run_id": ctx.run_id,
                    "step": ctx.step_name,
                    "attempt": ctx.attempt,
                    "decided_by": decider.subject,
                    "removed": removed,
                    "error": error,
                },
            )

    def revoke_run(ctx: ActionContext) -> StepResult:
        tenant = _tenant(ctx)
        decision, items, decider = decided(ctx, tenant)
        done: dict[str, Any] = {
            "outcome": decision.outcome,
            "decided_by": decider.subject,
            "revoked": [],
            "already": [],
        }
        if decision.outcome != "revoke":
            return StepResult(output=dict(done), evidence=dict(done))
        members = [i.ident for i in items if i.base == "member"]
        removed: list[str] = []
        group = None
        try:
            state = identity.get_group(tenant_id=tenant["id"]) if members else None
            for subject in members if state is not None else []:
                # One key per member, the same on every attempt: a re-run changes nothing.
                key = hashlib.sha256(subject.encode()).hexdigest()[:16]
                state = identity.remove_member(
                    tenant_id=tenant["id"],
                    subject=subject,
                    idempotency_key=f"{ctx.idempotency_key}/member/{key}",
                )
                removed.append(f"member:{subject}")
            group = state.group if state is not None else None
        except DriverError as exc:
            if removed:
                partial(ctx, tenant, decider, removed, str(exc))
                raise StepFailed(
                    f"{exc} (already out of the group: {', '.join(removed)}; nothing else"
                    " was revoked)",
                    retriable=exc.retriable,
                ) from exc
            raise StepFailed(str(exc), retriable=exc.retriable) from exc
        except Exception as exc:
            # Any other failure (a bug, a lost connection) after a removal: the trail first.
            if removed:
                partial(ctx, tenant, decider, removed, f"{type(exc).__name__}: {exc}")
            raise
        # What apply revokes, kept in the output: a batch that rolls back calls apply again.
        planned = {
            "items": [str(i) for i in items],
            "reason": decision.reason,
            "group": group,
            "decider_roles": sorted(decider.roles),
            "decider_tenant_scoped": decider.tenant_scoped,
        }
        return StepResult(output={**done, **planned}, evidence=dict(done))

    def revoke_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        if result.output.get("outcome") != "revoke":
            return  # keep, or no decision: nothing to revoke
        items = [Item(*str(i).split(":", 1)) for i in result.output["items"]]
        group = result.output.get("group")
        try:
            done = revocation.revoke(
                session,
                items=items,
                tenant=_tenant(ctx),
                run_id=ctx.run_id,
                decider=Decider(
                    str(result.output["decided_by"]),
                    frozenset(str(r) for r in result.output.get("decider_roles") or []),
                    # Absent (a result planned before it was kept): bound, fail closed.
                    tenant_scoped=result.output.get("decider_tenant_scoped", True) is not False,
                ),
                reason=str(result.output.get("reason") or ""),
                group=str(group) if group else None,
            )
        except AppError as exc:  # a DecisionError, or a NotFound/Conflict from a service
            # This transaction rolls back; the engine's run.failed audit entry keeps
            # this message, so members already out of the group are named in the trail.
            gone = [str(i) for i in items if i.base == "member"] if group else []
            left = f" ({', '.join(gone)} already left group {group})" if gone else ""
            raise StepFailed(f"{ctx.step_name}: {exc}{left}", retriable=False) from None
        result.output.update(done)
        result.evidence.update(done)

    def record_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        tenant = _tenant(ctx)
        counts = ctx.params.get("counts")
        revoked = ctx.params.get("revocation")
        recorded = service.record_outcome(
            session,
            run_id=ctx.run_id,
            tenant_id=tenant["id"],
            digest_of_snapshot=str(ctx.params.get("digest") or "") or None,
            counts=counts if isinstance(counts, dict) else {},
            fallback_actor=ctx.actor,
            revocation=revoked if isinstance(revoked, dict) else None,
        )
        result.output.update(recorded)
        result.evidence.update(recorded)

    return {
        "access_review.snapshot": FunctionAction(snapshot_run),
        "access_review.revoke": FunctionAction(revoke_run, revoke_apply),
        "access_review.record": FunctionAction(lambda _ctx: StepResult(), record_apply),
    }
