"""Runbook actions of the identity, secrets, access, notify and health drivers.

Each action reads the tenant snapshot from ``ctx.inputs["tenant"]`` (the
TenantRead fields), calls its driver with the step's idempotency key — so a
step run again after a crash returns the recorded effect instead of repeating
it — and turns a ``DriverError`` into ``StepFailed`` with the same verdict on
retrying. ``driver_actions`` binds them to the configured adapters; only
``tenantops.wiring`` calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.access.local import LocalQueueAccess
from tenantops.drivers.access.port import AccessState, QueueAccess, RateLimit
from tenantops.drivers.access.redis import RedisQueueAccess
from tenantops.drivers.argocd.local import LocalArgoCD
from tenantops.drivers.argocd.port import ArgoCD, app_name
from tenantops.drivers.argocd.rest import ArgoCDRest
from tenantops.drivers.errors import DriverError
from tenantops.drivers.health.local import HttpHealth
from tenantops.drivers.health.port import CheckResult, HealthChecker
from tenantops.drivers.identity.entra import EntraIdentity
from tenantops.drivers.identity.keycloak import KeycloakIdentity
from tenantops.drivers.identity.local import LocalIdentity
from tenantops.drivers.identity.port import Grant, GroupState, IdentityProvider, Permission
from tenantops.drivers.itsm.database import DatabaseItsm, MirroredItsm
from tenantops.drivers.itsm.port import Itsm, Ticket, TicketKind
from tenantops.drivers.itsm.servicenow import ServiceNowItsm
from tenantops.drivers.notify.local import OutboxNotifier
from tenantops.drivers.notify.port import Notifier, OutgoingMessage, Transport
from tenantops.drivers.notify.render import render
from tenantops.drivers.notify.routing import RoutingTransport, is_recipient
from tenantops.drivers.notify.smtp import SmtpTransport
from tenantops.drivers.secrets.local import LocalSecrets
from tenantops.drivers.secrets.port import PathSpec, SecretStore, StoreState
from tenantops.drivers.secrets.vault import VaultSecretStore
from tenantops.events import catalogue, outbox
from tenantops.finops import ledger
from tenantops.finops.ledger import LedgerKind
from tenantops.runbooks.actions import (
    ActionContext,
    FunctionAction,
    Registry,
    StepFailed,
    StepResult,
    skipped,
)

DEFAULT_SECRET_PATHS = ("app/config", "app/database", "app/queue")
STAKEHOLDERS = (
    "tenant_owner",
    "contacts",
    "legal",
    "finance",
    "governance",
    "security",
    "oncall",
    "auditor",
)


@dataclass(frozen=True)
class Drivers:
    """The adapters the actions call."""

    identity: IdentityProvider
    secrets: SecretStore
    access: QueueAccess
    notifier: Notifier
    health: HealthChecker
    argocd: ArgoCD
    itsm: Itsm
    channels: RoutingTransport | None = None


def health_url_template(settings: Settings) -> str:
    """The configured per-tenant URL, or this server's built-in probe."""
    if settings.health.base_url:
        return settings.health.base_url
    return f"{settings.own_url()}/probe/tenants/{{tenant}}"


def local_drivers(settings: Settings, db: Database) -> Drivers:
    """The configured adapters: the embedded defaults, Redis for queue access if chosen,
    SMTP delivery if ``settings.smtp.host`` is set."""
    identity = identity_provider(settings, db)
    smtp = settings.smtp
    email = SmtpTransport(smtp) if smtp.host else None
    # Channel recipients (slack:…, teams:…, webhook:…, pagerduty:…) go through the
    # routing transport, which hands plain addresses to SMTP.
    channels = (
        RoutingTransport(settings.channels, smtp=email) if settings.channels.configured() else None
    )
    transport: Transport | None = channels or email
    return Drivers(
        identity=identity,
        secrets=secret_store(settings, db),
        access=queue_access(settings, db),
        notifier=OutboxNotifier(
            db,
            transport,
            sender=smtp.sender,
            attempts=smtp.attempts,
            backoff_seconds=smtp.backoff_seconds,
        ),
        health=HttpHealth(
            db,
            url_template=health_url_template(settings),
            identity=identity,
            timeout_seconds=settings.health.timeout_seconds,
        ),
        argocd=_argocd(settings),
        itsm=itsm_adapter(settings, db),
        channels=channels,
    )


def itsm_adapter(settings: Settings, db: Database) -> Itsm:
    """ServiceNow (each ticket mirrored into the ITIL records) when configured, else the
    ITIL records themselves (``tenantops itil``)."""
    if settings.servicenow:
        return MirroredItsm(ServiceNowItsm(settings.servicenow), db, system="servicenow")
    return DatabaseItsm(db)


def identity_provider(settings: Settings, db: Database) -> IdentityProvider:
    """The configured identity adapter (``TENANTOPS_IDENTITY__ADAPTER``)."""
    adapter = settings.identity.adapter
    if adapter == "keycloak":
        return KeycloakIdentity(db, settings.identity.keycloak)
    if adapter == "entra":
        return EntraIdentity(db, settings.identity.entra)
    return LocalIdentity(db)


def secret_store(settings: Settings, db: Database) -> SecretStore:
    """The configured secret-store adapter (``TENANTOPS_SECRETS__ADAPTER``)."""
    if settings.secrets.adapter == "vault":
        return VaultSecretStore(db, settings.secrets.vault)
    return LocalSecrets(db)


def queue_access(settings: Settings, db: Database) -> QueueAccess:
    """The configured queue-access adapter (``TENANTOPS_ACCESS__ADAPTER``)."""
    if settings.access.adapter == "redis":
        return RedisQueueAccess(db, settings.access.redis)
    return LocalQueueAccess(db)


def _argocd(settings: Settings) -> ArgoCD:
    """Argo CD's REST API when configured; else the no-cluster stand-in, which reports the
    GitOps head as synced and says so (``observed_by``) in every state it returns."""
    from tenantops.provisioning.actions import gitops_repo  # provisioning builds on drivers

    if settings.argocd is not None:
        # Whether a deployed revision holds the step's commit is the GitOps history's to say.
        return ArgoCDRest(settings.argocd, contains=gitops_repo(settings).contains)
    return LocalArgoCD(gitops_repo(settings))


# Helpers --------------------------------------------------------------------------------


def _tenant(ctx: ActionContext) -> dict[str, Any]:
    tenant = ctx.inputs.get("tenant")
    if not isinstance(tenant, dict) or not tenant.get("name"):
        raise StepFailed(
            f"{ctx.step_name}: the run has no tenant snapshot in inputs.tenant", retriable=False
        )
    tenant_id = ctx.tenant_id or tenant.get("id")
    if not tenant_id:
        raise StepFailed(f"{ctx.step_name}: the tenant snapshot has no id", retriable=False)
    return {**tenant, "id": str(tenant_id)}


def _guarded(
    fn: Callable[[ActionContext], StepResult],
    apply: Callable[[Session, ActionContext, StepResult], None] | None = None,
) -> FunctionAction:
    """``fn`` as an action whose driver errors become ``StepFailed``."""

    def run(ctx: ActionContext) -> StepResult:
        try:
            return fn(ctx)
        except DriverError as exc:
            raise StepFailed(str(exc), retriable=exc.retriable) from exc

    return FunctionAction(run, apply)


def _announce_membership(granted: bool) -> Callable[[Session, ActionContext, StepResult], None]:
    """``tenant.access.granted``/``revoked`` for a group membership, with the step's record."""

    def apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        tenant = ctx.inputs.get("tenant") if isinstance(ctx.inputs.get("tenant"), dict) else {}
        subject = str(ctx.params.get("subject") or "").lower()
        outbox.emit(
            session,
            catalogue.ACCESS_GRANTED if granted else catalogue.ACCESS_REVOKED,
            catalogue.AccessChanged(
                tenant_id=ctx.tenant_id,
                tenant_name=tenant.get("name") if tenant else None,
                actor=ctx.actor,
                grant_id=f"{result.output.get('group', 'group')}/{subject}",
                subject=subject,
                reason=str(ctx.params.get("reason") or "") or None,
            ),
        )

    return apply


def _announce_rate_limit(applied: bool) -> Callable[[Session, ActionContext, StepResult], None]:
    """``tenant.rate_limit.applied``/``lifted``, in the transaction that records the step."""

    def apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        tenant = ctx.inputs.get("tenant") if isinstance(ctx.inputs.get("tenant"), dict) else {}
        limit = result.output.get("rate_limit") if applied else None
        if ctx.tenant_id is not None:  # a measure on the tenant: booked in its FinOps ledger
            ledger.append(
                session,
                ctx.tenant_id,
                LedgerKind.RATE_LIMIT,
                actor=Principal(subject=ctx.actor, via="system"),
                ref=ctx.run_id,
                data={
                    "action": "applied" if applied else "lifted",
                    "rate_limit": limit if isinstance(limit, dict) else None,
                    "reason": str(ctx.params.get("reason") or "") or None,
                    "step": ctx.step_name,
                },
            )
        outbox.emit(
            session,
            catalogue.RATE_LIMIT_APPLIED if applied else catalogue.RATE_LIMIT_LIFTED,
            catalogue.RateLimitChanged(
                tenant_id=ctx.tenant_id,
                tenant_name=tenant.get("name") if tenant else None,
                actor=ctx.actor,
                rate=float(limit["rate"]) if isinstance(limit, dict) else None,
                burst=int(limit["burst"]) if isinstance(limit, dict) else None,
                run_id=ctx.run_id,
                reason=str(ctx.params.get("reason") or "") or None,
            ),
        )

    return apply


def _number(ctx: ActionContext, name: str, kind: type[float] | type[int]) -> float:
    value = ctx.params.get(name)
    try:
        number = kind(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StepFailed(
            f"{ctx.step_name}: param {name!r} must be a number, not {value!r}", retriable=False
        ) from None
    return number


def _strings(value: object) -> dict[str, str]:
    """A ``fields`` param as strings (an absent or non-mapping one is empty)."""
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _group_result(state: GroupState) -> StepResult:
    return StepResult(
        output=state.as_dict(),
        evidence={
            "group": state.group,
            "enabled": state.enabled,
            "members": [f"{g.subject}:{g.permission.value}" for g in state.members],
        },
    )


def _store_result(state: StoreState) -> StepResult:
    return StepResult(
        output=state.as_dict(),
        evidence={
            "store": state.store_ref,
            "status": state.status,
            "paths": {p.path: p.status for p in state.paths},
        },
    )


def _access_result(state: AccessState) -> StepResult:
    out = state.as_dict()
    return StepResult(
        output=out,
        evidence={"queues_paused": state.queues_paused, "rate_limit": out["rate_limit"]},
    )


def _check_result(result: CheckResult) -> StepResult:
    evidence: dict[str, Any] = {"passed": result.passed, "url": result.url}
    if result.status is not None:
        evidence["status"] = result.status
    if result.latency_ms is not None:
        evidence["latency_ms"] = result.latency_ms
    evidence.update(result.detail)
    return StepResult(output=result.as_dict(), evidence=evidence)


def recipients(to: object, tenant: dict[str, Any] | None, settings: Settings) -> tuple[str, str]:
    """``(audience, addresses)``: a stakeholder role resolved, or addresses as given.

    Returns the addresses comma-joined; raises ``StepFailed`` when nobody is left.
    """
    audience = "direct"
    if isinstance(to, str) and to in STAKEHOLDERS:
        audience = to
        if to in ("tenant_owner", "contacts"):
            if tenant is None:
                raise StepFailed(f"'to: {to}' needs a run against a tenant", retriable=False)
            found = (
                [tenant.get("business_owner")] if to == "tenant_owner" else tenant.get("contacts")
            )
            addresses = [str(a) for a in (found or []) if a]
        else:
            addresses = list(getattr(settings.notify, to))
    elif isinstance(to, str):
        addresses = [a.strip() for a in to.split(",") if a.strip()]
    elif isinstance(to, Sequence):
        addresses = [str(a).strip() for a in to if str(a).strip()]
    else:
        raise StepFailed(
            f"'to' must be a list of addresses or one of {STAKEHOLDERS}", retriable=False
        )
    bad = [a for a in addresses if not is_recipient(a)]
    if bad:
        raise StepFailed(
            f"not e-mail addresses or <channel>:<name> recipients: {bad}", retriable=False
        )
    if not addresses:
        hint = f" (set TENANTOPS_NOTIFY__{audience.upper()})" if audience in STAKEHOLDERS else ""
        raise StepFailed(f"no recipient for 'to: {to}'{hint}", retriable=False)
    return audience, ",".join(dict.fromkeys(addresses))


# Actions --------------------------------------------------------------------------------


def driver_actions(settings: Settings, db: Database, *, drivers: Drivers | None = None) -> Registry:
    """Every driver action, bound to ``drivers`` (default: the local adapters of ``settings``)."""
    d = drivers or local_drivers(settings, db)

    def create_group(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        grants = [Grant(str(t["business_owner"]), Permission.WRITE)]
        owner = str(t["business_owner"]).lower()
        grants += [
            Grant(str(c), Permission.READ)
            for c in t.get("contacts") or []
            if str(c).lower() != owner
        ]
        state = d.identity.create_group(
            tenant_id=t["id"],
            tenant_name=t["name"],
            grants=grants,
            idempotency_key=ctx.idempotency_key,
        )
        return _group_result(state)

    def add_member(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        try:
            permission = Permission(str(ctx.params.get("permission", "read")))
        except ValueError:
            raise StepFailed(
                f"permission must be one of {[p.value for p in Permission]}", retriable=False
            ) from None
        subject = str(ctx.params.get("subject") or "")
        state = d.identity.add_member(
            tenant_id=t["id"], grant=Grant(subject, permission), idempotency_key=ctx.idempotency_key
        )
        return _group_result(state)

    def remove_member(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        state = d.identity.remove_member(
            tenant_id=t["id"],
            subject=str(ctx.params.get("subject") or ""),
            idempotency_key=ctx.idempotency_key,
        )
        return _group_result(state)

    def disable_access(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        return _group_result(
            d.identity.disable_access(tenant_id=t["id"], idempotency_key=ctx.idempotency_key)
        )

    def enable_access(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        return _group_result(
            d.identity.enable_access(tenant_id=t["id"], idempotency_key=ctx.idempotency_key)
        )

    def create_store(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        paths = ctx.params.get("paths") or DEFAULT_SECRET_PATHS
        if isinstance(paths, str) or not isinstance(paths, Sequence):
            raise StepFailed("param 'paths' must be a list of secret paths", retriable=False)
        meta = {
            "owner": str(t["business_owner"]),
            "classification": str(t.get("compliance_classification", "")),
        }
        state = d.secrets.create_store(
            tenant_id=t["id"],
            tenant_name=t["name"],
            paths=[PathSpec(str(p), meta) for p in paths],
            idempotency_key=ctx.idempotency_key,
        )
        return _store_result(state)

    def revoke(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        return _store_result(
            d.secrets.revoke(tenant_id=t["id"], idempotency_key=ctx.idempotency_key)
        )

    def restore(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        return _store_result(
            d.secrets.restore(tenant_id=t["id"], idempotency_key=ctx.idempotency_key)
        )

    def pause_queues(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        return _access_result(
            d.access.pause_queues(
                tenant_id=t["id"], tenant_name=t["name"], idempotency_key=ctx.idempotency_key
            )
        )

    def resume_queues(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        return _access_result(
            d.access.resume_queues(
                tenant_id=t["id"], tenant_name=t["name"], idempotency_key=ctx.idempotency_key
            )
        )

    def set_rate_limit(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        limit = RateLimit(rate=_number(ctx, "rate", float), burst=int(_number(ctx, "burst", int)))
        return _access_result(
            d.access.set_rate_limit(
                tenant_id=t["id"],
                tenant_name=t["name"],
                limit=limit,
                idempotency_key=ctx.idempotency_key,
            )
        )

    def lift_rate_limit(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        return _access_result(
            d.access.lift_rate_limit(
                tenant_id=t["id"], tenant_name=t["name"], idempotency_key=ctx.idempotency_key
            )
        )

    def send(ctx: ActionContext) -> StepResult:
        template = ctx.params.get("template")
        if not isinstance(template, str) or not template:
            raise StepFailed("notify.send needs a 'template'", retriable=False)
        variables = ctx.params.get("vars") or {}
        if not isinstance(variables, dict):
            raise StepFailed("param 'vars' must be a mapping", retriable=False)
        return deliver(ctx, template, ctx.params.get("to"), variables)

    def deliver(
        ctx: ActionContext, template: str, to: object, variables: dict[str, Any]
    ) -> StepResult:
        raw = ctx.inputs.get("tenant")
        tenant = _tenant(ctx) if isinstance(raw, dict) else None
        audience, addresses = recipients(to, tenant, settings)
        subject, body = render(
            template,
            audience=audience,
            context={
                "tenant": tenant,
                "vars": variables,
                "run_id": ctx.run_id,
                "dashboard_url": settings.notify.dashboard_url.rstrip("/"),
            },
        )
        delivery = d.notifier.send(
            OutgoingMessage(
                to=tuple(addresses.split(",")),
                subject=subject,
                body=body,
                template=template,
                audience=audience,
                tenant_id=tenant["id"] if tenant else None,
                tenant_name=tenant["name"] if tenant else None,
                run_id=ctx.run_id,
            ),
            idempotency_key=ctx.idempotency_key,
        )
        return StepResult(
            output={"message_id": delivery.message_id, "status": delivery.status},
            evidence={
                "message_id": delivery.message_id,
                "status": delivery.status,
                "attempts": delivery.attempts,
                "template": template,
                "audience": audience,
                "to": addresses.split(","),
                "subject": subject,
            },
        )

    def check(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        return _check_result(
            d.health.check(
                tenant_id=t["id"], tenant_name=t["name"], idempotency_key=ctx.idempotency_key
            )
        )

    def synthetic(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        return _check_result(
            d.health.synthetic(
                tenant_id=t["id"], tenant_name=t["name"], idempotency_key=ctx.idempotency_key
            )
        )

    def review(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        return _check_result(
            d.health.review_access(
                tenant_id=t["id"],
                owner=str(t["business_owner"]),
                contacts=[str(c) for c in t.get("contacts") or []],
                idempotency_key=ctx.idempotency_key,
            )
        )

    def sync_wait(ctx: ActionContext) -> StepResult:
        """Sync the tenant's Application to its target and wait until it is Synced and
        Healthy — at ``revision`` (the step's GitOps commit) or a later commit holding it;
        its state and sync history are the evidence.

        The sync itself names no revision: pinning the commit would roll back, for a
        while, whatever was committed on top of it since."""
        t = _tenant(ctx)
        app = app_name(str(t["name"]))
        revision = str(ctx.params.get("revision") or "") or None
        timeout = _number(ctx, "timeout", float) if "timeout" in ctx.params else None
        try:
            d.argocd.sync(app)
        except DriverError as exc:
            if exc.status != 404:
                raise
            # Right after the GitOps commit the root app may not have created it yet.
            raise StepFailed(
                f"argocd: Application {app} does not exist yet; the root app creates it on "
                f"its next sync ({exc})",
                retriable=True,
            ) from exc
        state = d.argocd.wait(
            app,
            timeout=timeout or (settings.argocd.wait_seconds if settings.argocd else 60.0),
            revision=revision,
            resync=True,
        )
        return StepResult(output=state.as_dict(), evidence=state.as_dict())

    def ticket_open(ctx: ActionContext) -> StepResult:
        t = _tenant(ctx)
        try:
            kind = TicketKind(str(ctx.params.get("kind") or "incident"))
        except ValueError:
            kinds = [k.value for k in TicketKind]
            raise StepFailed(
                f"{ctx.step_name}: kind must be one of {kinds}", retriable=False
            ) from None
        ticket = d.itsm.open(
            kind,
            tenant=str(t["name"]),
            short_description=str(ctx.params.get("short_description") or ctx.step_name),
            description=str(ctx.params.get("description") or ""),
            idempotency_key=ctx.idempotency_key,
            fields=_strings(ctx.params.get("fields")),
        )
        return StepResult(output=ticket.as_dict(), evidence=ticket.as_dict())

    def ticket_update(ctx: ActionContext) -> StepResult:
        given = ctx.params.get("ticket")
        if not isinstance(given, dict):
            raise StepFailed(
                f"{ctx.step_name}: param 'ticket' must be the output of an itsm.open step",
                retriable=False,
            )
        ticket = d.itsm.update(
            Ticket.from_dict(given),
            idempotency_key=ctx.idempotency_key,
            state=str(ctx.params["state"]) if ctx.params.get("state") else None,
            work_notes=str(ctx.params["work_notes"]) if ctx.params.get("work_notes") else None,
            fields=_strings(ctx.params.get("fields")),
        )
        return StepResult(output=ticket.as_dict(), evidence=ticket.as_dict())

    def page(ctx: ActionContext) -> StepResult:
        """PagerDuty Events v2: trigger, acknowledge or resolve one alert.

        The dedup key defaults to ``tenantops/<tenant or platform>/<incident>``, so
        a playbook's trigger and its later resolve name the same alert; PagerDuty
        deduplicates by it, so a step run again changes nothing.
        """
        p = ctx.params
        action = str(p.get("action") or "trigger")
        service = str(p.get("service") or "default")
        if d.channels is None or not d.channels.has_pagerduty(service):
            # The embedded default has no PagerDuty: on-call still hears of it, by message.
            why = (
                f"no PagerDuty service {service!r} (TENANTOPS_CHANNELS__PAGERDUTY__"
                f"{service.upper()}__ROUTING_KEY)"
            )
            if action != "trigger":
                return skipped(f"{why}: nothing to {action}")
            if not p.get("summary"):
                raise StepFailed(f"{ctx.step_name}: a trigger needs a summary", retriable=False)
            given = p.get("details")
            extra = dict(given) if isinstance(given, dict) else {}
            sent = deliver(
                ctx, "page", p.get("to") or "oncall", {"summary": p["summary"], "details": extra}
            )
            fallback = {**sent.evidence, "paged_by": "notification", "reason": why}
            return StepResult(output={**sent.output, **fallback}, evidence=fallback)
        pd = d.channels.pagerduty(service)
        incident = str(p.get("incident") or ctx.step_name)
        key = str(p.get("dedup_key") or f"tenantops/{ctx.tenant_id or 'platform'}/{incident}")
        if action == "trigger":
            if not p.get("summary"):
                raise StepFailed(f"{ctx.step_name}: a trigger needs a summary", retriable=False)
            given = p.get("details")
            details: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
            key = pd.trigger(
                summary=str(p["summary"]),
                source=str(p.get("source") or pd.source),
                severity=str(p.get("severity") or pd.severity),
                dedup_key=key,
                custom_details={"run_id": ctx.run_id, "tenant_id": ctx.tenant_id, **details},
            )
        elif action == "acknowledge":
            key = pd.acknowledge(key)
        elif action == "resolve":
            key = pd.resolve(key)
        else:
            raise StepFailed(
                f"{ctx.step_name}: action must be trigger, acknowledge or resolve, not {action!r}",
                retriable=False,
            )
        result = {"service": service, "action": action, "dedup_key": key, "paged_by": "pagerduty"}
        return StepResult(output=result, evidence=result)

    table: dict[str, Callable[[ActionContext], StepResult]] = {
        "identity.create_group": create_group,
        "identity.add_member": add_member,
        "identity.remove_member": remove_member,
        "identity.disable_access": disable_access,
        "identity.enable_access": enable_access,
        "secrets.create_store": create_store,
        "secrets.revoke": revoke,
        "secrets.restore": restore,
        "access.pause_queues": pause_queues,
        "access.resume_queues": resume_queues,
        "access.set_rate_limit": set_rate_limit,
        "access.lift_rate_limit": lift_rate_limit,
        "notify.send": send,
        "notify.page": page,
        "argocd.sync_wait": sync_wait,
        "itsm.open": ticket_open,
        "itsm.update": ticket_update,
        "health.check": check,
        "health.synthetic": synthetic,
        "access.review": review,
    }
    announced = {
        "identity.add_member": _announce_membership(granted=True),
        "identity.remove_member": _announce_membership(granted=False),
        "access.set_rate_limit": _announce_rate_limit(applied=True),
        "access.lift_rate_limit": _announce_rate_limit(applied=False),
    }
    return {name: _guarded(fn, announced.get(name)) for name, fn in table.items()}
