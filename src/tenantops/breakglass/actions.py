"""Runbook action of the break-glass runbook: revoke the grant's token."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tenantops.auth import tokens
from tenantops.auth.principal import Principal, Role
from tenantops.breakglass import service as breakglass
from tenantops.kit.clock import as_utc
from tenantops.runbooks import engine
from tenantops.runbooks.actions import ActionContext, FunctionAction, Registry, StepResult

ENGINE = Principal(subject="system:runbook-engine", roles=frozenset({Role.ADMIN}), via="system")


def _nothing(ctx: ActionContext) -> StepResult:
    return StepResult()


def _revoke(session: Session, ctx: ActionContext, result: StepResult) -> None:
    # Revoking twice is harmless, so a re-run step changes nothing. The end is announced
    # once: not again if an access review's early end announced it, but here if the
    # token was revoked without a word (``tenantops tokens revoke``). The engine locked
    # the run before this apply, as revoke_early does, so the two take turns.
    # Whether the end was announced is read first, before revoke_token_once locks the
    # audit head: the run lock keeps revoke_early from announcing in between.
    token_id = str(ctx.params["token_id"])
    opened = as_utc(engine.get_run(session, ctx.run_id).created_at)
    told = breakglass.announced(session, grant_id=token_id, tenant_id=ctx.tenant_id, since=opened)
    row, changed = tokens.revoke_token_once(session, actor=ENGINE, token_id=token_id)
    revoked_at = as_utc(row.revoked_at).isoformat() if row.revoked_at else None
    result.output.update(token_id=row.id, revoked_at=revoked_at, early=not changed)
    result.evidence.update(token_id=row.id, subject=row.subject, revoked_at=revoked_at)
    if told:
        return
    breakglass.announce_end(
        session,
        inputs=ctx.inputs,
        tenant_id=ctx.tenant_id,
        actor=ENGINE,
        token=row,
        reason=str(ctx.inputs.get("reason") or "") or None,
    )


def breakglass_actions() -> Registry:
    return {"auth.revoke_token": FunctionAction(_nothing, _revoke)}
