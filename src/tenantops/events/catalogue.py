"""Every event type tenantops publishes: its topic, what it means, and its data schema.

The catalogue is closed: ``outbox.emit`` refuses a type that is not here, so
the AsyncAPI document generated from it (``/asyncapi.json``) names everything a
consumer can receive. A data schema only grows (new optional fields); a change
that would break a consumer gets a new ``schema_version``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SOURCE = "/tenantops"
TYPE_PREFIX = "io.tenantops."
SCHEMA_BASE = "https://tenantops.dev/schemas/events/"

Topic = Literal["tenant.lifecycle", "tenant.billing", "tenant.compliance", "tenant.security"]
TOPICS: tuple[Topic, ...] = (
    "tenant.lifecycle",
    "tenant.billing",
    "tenant.compliance",
    "tenant.security",
)
TOPIC_SUMMARIES: dict[Topic, str] = {
    "tenant.lifecycle": "A tenant's state changed, or a runbook run on it finished.",
    "tenant.billing": "Alerts on tenants (cost, quota, policy) and the FinOps actions taken.",
    "tenant.compliance": (
        "Approval decisions, SLA breaches and ITIL records: what an auditor follows."
    ),
    "tenant.security": (
        "Isolation and elevated access: suspensions, break-glass grants, secret rotation."
    ),
}


class EventData(BaseModel):
    """The part every event's data shares."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(1, description="Bumped only for a change that breaks consumers.")
    tenant_id: str | None = Field(None, description="The tenant the event is about.")
    tenant_name: str | None = Field(None, description="Its name, for humans reading the event.")
    actor: str = Field(description="Who made the change: a person, a token or system:engine.")


class TenantStateChanged(EventData):
    """A tenant moved from one lifecycle state to another."""

    from_state: str | None = Field(description="State before; null when the tenant was created.")
    to_state: str
    lifecycle_event: str | None = Field(
        description="The lifecycle event that moved it (approve, suspend, …); null on creation."
    )
    tier: str
    region: str
    reason: str | None = None
    ticket_ref: str | None = None
    run_id: str | None = Field(None, description="The runbook run this change started, if any.")


class ApprovalRecorded(EventData):
    """A governance or security decision on a tenant request."""

    request_id: str
    kind: str = Field(description="onboarding or reactivation")
    role: str
    decision: Literal["approve", "reject"]
    status: str = Field(description="The request's status after this decision.")
    comment: str | None = None
    risk_ref: str | None = None


class RunFinished(EventData):
    """A runbook run ended."""

    run_id: str
    runbook: str
    version: str
    status: Literal["succeeded", "failed", "cancelled"]
    error: str | None = None


class StepFinished(EventData):
    """One step of a runbook run ended (after its last attempt, if it failed)."""

    run_id: str
    runbook: str
    step: str
    status: Literal["succeeded", "failed"]
    attempt: int
    evidence: dict[str, object] = Field(default_factory=dict)
    error: str | None = None


class StepHeld(EventData):
    """A runbook step fell due outside its maintenance window and waits for it to open."""

    run_id: str
    runbook: str
    step: str
    window: str = Field(description="The maintenance window's name.")
    until: str = Field(description="RFC 3339 instant the window opens; the step starts then.")


class SlaBreached(EventData):
    """A run or one of its steps passed its SLA deadline while still open."""

    run_id: str
    runbook: str
    step: str | None = Field(description="The step, or null when the run's own SLA passed.")
    deadline: str = Field(description="RFC 3339 instant that passed.")


class PageChanged(EventData):
    """An on-call page was triggered, escalated, acknowledged, resolved or given up."""

    page_id: str
    key: str = Field(description="What the page is about: itil:<record id>, sla:<run>/<step>…")
    summary: str
    severity: Literal["critical", "high", "warning", "info"]
    policy: str = Field(description="The escalation policy the page follows.")
    status: Literal["triggered", "acknowledged", "resolved"]
    level: int | None = Field(None, description="The level told last (1-based); null: none yet.")
    round: int = Field(0, description="0 the first time through the levels, 1 the first repeat…")
    exhausted: bool = Field(False, description="Every level and repeat passed unanswered.")
    targets: list[str] = Field(default_factory=list, description="Who was told (addresses).")
    record_id: str | None = Field(None, description="The ITIL record it pages for, if any.")


class AccessChanged(EventData):
    """Access to a tenant was granted to a person or revoked: a group membership, or
    time-boxed elevated (break-glass) access."""

    grant_id: str = Field(description="The break-glass token id, or <group>/<member>.")
    subject: str = Field(description="Who holds (or held) the access.")
    reason: str | None = None
    incident_ref: str | None = None
    expires_at: str | None = Field(None, description="RFC 3339; when it ends by itself.")


class RateLimitChanged(EventData):
    """A tenant's request rate limit was set or lifted (the Cost Overrun measure)."""

    rate: float | None = Field(description="Requests per second allowed; null once lifted.")
    burst: int | None = Field(description="Requests allowed at once; null once lifted.")
    run_id: str | None = Field(None, description="The playbook run that changed it.")
    reason: str | None = None


class AlertNotified(EventData):
    """Alertmanager reported an alert on a tenant firing or resolved (stored once)."""

    alert_id: str
    alertname: str
    fingerprint: str = Field(
        description="Alertmanager's fingerprint: firing and resolved share it."
    )
    status: Literal["firing", "resolved"]
    severity: str | None = None
    summary: str | None = Field(None, description="The alert's summary annotation.")
    playbook: str | None = Field(None, description="The playbook the alert started or joined.")
    run_id: str | None = None
    dispatch_error: str | None = Field(None, description="Why no playbook could be started.")


class SecretRotation(EventData):
    """A tenant's secret fell due for rotation, or was rotated (metadata only, never a value)."""

    path: str = Field(description="The secret's path in the tenant's store (relative).")
    owner: str | None = Field(None, description="Who rotates it (an address or a team).")
    purpose: str | None = None
    rotation_days: int = Field(description="Its rotation cycle in days.")
    last_rotated_at: str = Field(description="RFC 3339; when it was last rotated.")
    due_at: str = Field(description="RFC 3339; when the next rotation is (or was) due.")
    status: Literal["ok", "due_soon", "overdue"]
    version: int | None = Field(None, description="The store's generation of the secret.")
    evidence: str | None = Field(None, description="A rotation's reference (ticket, run, CI job).")


class ItilRecordChanged(EventData):
    """An incident, change or problem record was opened, moved, assigned or linked."""

    record_id: str
    number: str = Field(description="INC0000042, CHG…, PRB…")
    kind: Literal["incident", "change", "problem"]
    state: str
    from_state: str | None = Field(None, description="State before; null when just opened.")
    priority: int = Field(description="1 critical … 4 low.")
    title: str
    assigned_to: str | None = None
    problem_id: str | None = Field(None, description="The problem it is linked to, if any.")
    run_id: str | None = Field(None, description="The runbook run that opened it, if any.")
    external_link: str | None = Field(None, description="The ticket in the ITSM tool it mirrors.")


@dataclass(frozen=True)
class EventType:
    """One kind of event: ``io.tenantops.<name>`` on ``topic``, data shaped by ``data``."""

    name: str
    topic: Topic
    summary: str
    data: type[EventData]

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.name

    @property
    def dataschema(self) -> str:
        return f"{SCHEMA_BASE}{self.name}/v1"


def _tenant_state(state: str, summary: str, topic: Topic = "tenant.lifecycle") -> EventType:
    return EventType(f"tenant.{state}", topic, summary, TenantStateChanged)


TENANT_REQUESTED = _tenant_state("requested", "A tenant was requested (onboarding starts).")
TENANT_APPROVED = _tenant_state("approved", "Both approvals are in; provisioning may start.")
TENANT_REJECTED = _tenant_state("rejected", "The tenant request was rejected.")
TENANT_PROVISIONING = _tenant_state("provisioning", "Provisioning of the tenant started.")
TENANT_PROVISIONING_FAILED = _tenant_state(
    "provisioning_failed", "Provisioning or verification failed; ops must act."
)
TENANT_VERIFYING = _tenant_state("verifying", "Provisioned; verification is running.")
TENANT_ACTIVE = _tenant_state("active", "The tenant is active (handed over, or reactivated).")
TENANT_SUSPENDED = _tenant_state(
    "suspended", "The tenant was suspended and is being isolated.", "tenant.security"
)
TENANT_OFFBOARDING = _tenant_state("offboarding", "Offboarding started: export, revoke, remove.")
TENANT_ARCHIVED = _tenant_state("archived", "Offboarding finished; the tenant is archived.")

APPROVAL_RECORDED = EventType(
    "tenant.approval.recorded",
    "tenant.compliance",
    "A governance or security decision on an onboarding or reactivation request.",
    ApprovalRecorded,
)
RUN_SUCCEEDED = EventType(
    "run.succeeded", "tenant.lifecycle", "A runbook run succeeded.", RunFinished
)
RUN_FAILED = EventType("run.failed", "tenant.lifecycle", "A runbook run failed.", RunFinished)
RUN_CANCELLED = EventType(
    "run.cancelled", "tenant.lifecycle", "A runbook run was cancelled.", RunFinished
)
STEP_SUCCEEDED = EventType(
    "run.step.succeeded",
    "tenant.lifecycle",
    "A runbook step succeeded, with its evidence.",
    StepFinished,
)
STEP_FAILED = EventType(
    "run.step.failed", "tenant.lifecycle", "A runbook step failed for good.", StepFinished
)
STEP_HELD = EventType(
    "run.step.held",
    "tenant.lifecycle",
    "A runbook step waits for its maintenance window to open.",
    StepHeld,
)
SLA_BREACHED = EventType(
    "run.sla_breached", "tenant.compliance", "A run or step passed its SLA deadline.", SlaBreached
)
PAGE_TRIGGERED = EventType(
    "oncall.page.triggered",
    "tenant.compliance",
    "On-call was paged (an incident, an SLA breach); the first level is told within seconds.",
    PageChanged,
)
PAGE_ESCALATED = EventType(
    "oncall.page.escalated",
    "tenant.compliance",
    "A page's level was told: the first, or the next after nobody acknowledged in time.",
    PageChanged,
)
PAGE_ACKNOWLEDGED = EventType(
    "oncall.page.acknowledged",
    "tenant.compliance",
    "Someone acknowledged a page; it escalates no further.",
    PageChanged,
)
PAGE_RESOLVED = EventType(
    "oncall.page.resolved", "tenant.compliance", "A page was resolved (closed).", PageChanged
)
PAGE_EXHAUSTED = EventType(
    "oncall.page.exhausted",
    "tenant.compliance",
    "Every level of a page's policy was told, repeats included, and nobody acknowledged.",
    PageChanged,
)
ACCESS_GRANTED = EventType(
    "tenant.access.granted",
    "tenant.security",
    "Access was granted: a group membership, or time-boxed break-glass access.",
    AccessChanged,
)
ACCESS_REVOKED = EventType(
    "tenant.access.revoked",
    "tenant.security",
    "Access was revoked: a membership removed, or break-glass access ended.",
    AccessChanged,
)

RATE_LIMIT_APPLIED = EventType(
    "tenant.rate_limit.applied",
    "tenant.billing",
    "A rate limit was set on the tenant's requests (e.g. after a cost overrun).",
    RateLimitChanged,
)
RATE_LIMIT_LIFTED = EventType(
    "tenant.rate_limit.lifted",
    "tenant.billing",
    "The tenant's rate limit was lifted.",
    RateLimitChanged,
)

ALERT_FIRED = EventType(
    "tenant.alert.fired",
    "tenant.billing",
    "Alertmanager reported a tenant alert firing (cost, quota or policy); its playbook started.",
    AlertNotified,
)
ALERT_RESOLVED = EventType(
    "tenant.alert.resolved",
    "tenant.billing",
    "A tenant alert resolved; the playbook waiting on it was signalled.",
    AlertNotified,
)

SECRET_ROTATION_DUE = EventType(
    "secret.rotation.due",
    "tenant.security",
    "A tenant's secret is due for rotation soon (announced once per due date).",
    SecretRotation,
)
SECRET_ROTATION_OVERDUE = EventType(
    "secret.rotation.overdue",
    "tenant.security",
    "A tenant's secret is past its rotation date (announced once per due date).",
    SecretRotation,
)
SECRET_ROTATED = EventType(
    "secret.rotated",
    "tenant.security",
    "A rotation of a tenant's secret was recorded; its next due date follows.",
    SecretRotation,
)

ITIL_RECORD_OPENED = EventType(
    "itil.record.opened",
    "tenant.compliance",
    "An incident, change or problem record was opened (for a tenant, or the platform).",
    ItilRecordChanged,
)
ITIL_RECORD_TRANSITIONED = EventType(
    "itil.record.transitioned",
    "tenant.compliance",
    "An ITIL record moved to another state (resolved, authorised, closed, ...).",
    ItilRecordChanged,
)
ITIL_RECORD_UPDATED = EventType(
    "itil.record.updated",
    "tenant.compliance",
    "An ITIL record was assigned, or linked to the problem behind it.",
    ItilRecordChanged,
)

CATALOGUE: dict[str, EventType] = {
    e.type: e
    for e in (
        TENANT_REQUESTED,
        TENANT_APPROVED,
        TENANT_REJECTED,
        TENANT_PROVISIONING,
        TENANT_PROVISIONING_FAILED,
        TENANT_VERIFYING,
        TENANT_ACTIVE,
        TENANT_SUSPENDED,
        TENANT_OFFBOARDING,
        TENANT_ARCHIVED,
        APPROVAL_RECORDED,
        RUN_SUCCEEDED,
        RUN_FAILED,
        RUN_CANCELLED,
        STEP_SUCCEEDED,
        STEP_FAILED,
        STEP_HELD,
        SLA_BREACHED,
        PAGE_TRIGGERED,
        PAGE_ESCALATED,
        PAGE_ACKNOWLEDGED,
        PAGE_RESOLVED,
        PAGE_EXHAUSTED,
        ACCESS_GRANTED,
        ACCESS_REVOKED,
        RATE_LIMIT_APPLIED,
        RATE_LIMIT_LIFTED,
        ALERT_FIRED,
        ALERT_RESOLVED,
        SECRET_ROTATION_DUE,
        SECRET_ROTATION_OVERDUE,
        SECRET_ROTATED,
        ITIL_RECORD_OPENED,
        ITIL_RECORD_TRANSITIONED,
        ITIL_RECORD_UPDATED,
    )
}

TENANT_STATES: dict[str, EventType] = {
    e.name.removeprefix("tenant."): e for e in CATALOGUE.values() if e.data is TenantStateChanged
}
