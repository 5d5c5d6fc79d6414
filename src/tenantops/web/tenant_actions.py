"""The lifecycle actions a tenant page offers, and taking one from a posted form.

Which actions a viewer gets is read from the tables the API enforces —
``auth.policy.allowed_roles`` for the routes, ``tenants.service.STEP_ROLES``
for recorded steps and ``tenants.lifecycle.allowed_events`` for the state —
never from a list of its own; taking one calls the service its API route calls.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from tenantops.approvals.schemas import ApprovalRequestRead
from tenantops.auth.policy import API, allowed_roles
from tenantops.auth.principal import Principal, Role
from tenantops.errors import Forbidden, NotFound, Unprocessable
from tenantops.tenants import service as tenants
from tenantops.tenants.lifecycle import TenantEvent, TenantState, allowed_events
from tenantops.tenants.models import Tenant
from tenantops.tenants.schemas import (
    STEP_EVENTS,
    LifecycleEventCreate,
    OffboardRequest,
    ReactivationRequestCreate,
    SuspendRequest,
)
from tenantops.web.pagekit import form_version

TENANT = f"{API}/tenants/{{tenant}}"


@dataclass(frozen=True)
class FormField:
    """One text input of an action's form."""

    name: str
    label: str
    required: bool = False


REASON = FormField("reason", "Reason", required=True)


@dataclass(frozen=True)
class TenantAction:
    """A lifecycle action a page can post: its event, its API route, its form.

    Who may take it is the API's: the roles of ``route`` in the policy table,
    narrowed by ``step_roles`` (``tenants.service.STEP_ROLES``) for a recorded step.
    """

    name: str
    label: str
    event: TenantEvent
    route: tuple[str, str]
    fields: tuple[FormField, ...]
    schema: type[BaseModel]
    step_roles: frozenset[Role] | None = None

    def roles(self) -> frozenset[Role]:
        roles = allowed_roles(*self.route)
        return roles if self.step_roles is None else roles & self.step_roles


STEP_LABELS = {
    TenantEvent.START_PROVISIONING: "Record: provisioning started",
    TenantEvent.PROVISIONED: "Record: provisioned",
    TenantEvent.PROVISIONING_FAILED: "Record: provisioning failed",
    TenantEvent.VERIFIED: "Record: verified",
    TenantEvent.VERIFICATION_FAILED: "Record: verification failed",
    TenantEvent.ARCHIVE: "Record: archived",
}

ACTIONS: dict[str, TenantAction] = {
    a.name: a
    for a in (
        TenantAction(
            "suspend",
            "Suspend",
            TenantEvent.SUSPEND,
            ("POST", f"{TENANT}/suspend"),
            (REASON, FormField("incident_ref", "Incident reference")),
            SuspendRequest,
        ),
        TenantAction(
            "request-reactivation",
            "Request reactivation",
            TenantEvent.REACTIVATE,
            ("POST", f"{TENANT}/reactivation-requests"),
            (REASON,),
            ReactivationRequestCreate,
        ),
        TenantAction(
            "offboard",
            "Offboard",
            TenantEvent.OFFBOARD,
            ("POST", f"{TENANT}/offboard"),
            (REASON, FormField("ticket_ref", "Ticket reference")),
            OffboardRequest,
        ),
        *(
            TenantAction(
                event.value,
                STEP_LABELS[event],
                event,
                ("POST", f"{TENANT}/lifecycle-events"),
                (FormField("note", "Note"), FormField("evidence_ref", "Evidence reference")),
                LifecycleEventCreate,
                tenants.STEP_ROLES[event],
            )
            for event in STEP_EVENTS
        ),
    )
}


def available_actions(
    principal: Principal,
    state: str,
    approvals: Sequence[ApprovalRequestRead],
    *,
    reactivating: bool = False,
) -> list[TenantAction]:
    """The actions ``principal`` may take on a tenant in ``state`` now.

    The state must allow the action's event (the lifecycle table) and the viewer
    must hold one of its roles (the API's). A reactivation already asked for
    waits for governance in the approvals inbox, and one approved is being
    carried out by its run (``reactivating``): neither is offered again.
    """
    events = set(allowed_events(TenantState(state)))
    pending = {a.kind for a in approvals if a.status == "pending"}
    busy = reactivating or "reactivation" in pending
    return [
        a
        for a in ACTIONS.values()
        if a.event in events
        and principal.roles & a.roles()
        and not (a.event is TenantEvent.REACTIVATE and busy)
    ]


def _payload(action: TenantAction, form: Mapping[str, str]) -> BaseModel:
    values: dict[str, Any] = {f.name: form.get(f.name, "").strip() or None for f in action.fields}
    if action.schema is LifecycleEventCreate:
        values["event"] = action.event.value
    values = {k: v for k, v in values.items() if v is not None}
    try:
        return action.schema.model_validate(values)
    except ValidationError as exc:
        labels = {f.name: f.label for f in action.fields}
        problems = []
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else ""
            problems.append(f"{labels.get(where, where)}: {error['msg']}")
        raise Unprocessable("; ".join(problems)) from exc


def role_words(roles: Collection[Role]) -> str:
    """The roles a refusal names: ``governance or security`` (``nobody`` for none)."""
    return " or ".join(sorted(r.value for r in roles)) or "nobody"


def perform(
    session: Session, *, principal: Principal, ref: str, name: str, form: Mapping[str, str]
) -> Tenant:
    """Take action ``name`` on tenant ``ref`` through the service its API route calls.

    Raises what the API would: ``NotFound`` for a tenant the viewer may not see,
    ``Forbidden`` without one of the route's roles, ``Unprocessable`` for a bad
    form, ``Conflict``/``InvalidTransition`` for the state, ``PreconditionFailed``
    when the tenant changed since the form was shown (its ``version``).
    """
    tenant = tenants.get_tenant(session, principal=principal, ref=ref)
    action = ACTIONS.get(name)
    if action is None:
        raise NotFound(f"no action {name!r}")
    roles = action.roles()
    if not principal.roles & roles:
        raise Forbidden(f"{action.label.lower()} needs the {role_words(roles)} role")
    version = form_version(form)
    data = _payload(action, form)
    if isinstance(data, SuspendRequest):
        return tenants.suspend_tenant(
            session, principal=principal, ref=tenant.id, data=data, if_match=version
        )
    if isinstance(data, OffboardRequest):
        return tenants.offboard_tenant(
            session, principal=principal, ref=tenant.id, data=data, if_match=version
        )
    if isinstance(data, LifecycleEventCreate):
        return tenants.record_step(
            session, principal=principal, ref=tenant.id, data=data, if_match=version
        )
    if isinstance(data, ReactivationRequestCreate):
        # The API takes no If-Match here (a request changes no field); the state decides.
        tenants.request_reactivation(session, principal=principal, ref=tenant.id, data=data)
        return tenants.get_tenant(session, principal=principal, ref=tenant.id)
    raise AssertionError(f"no service for {action.name}")  # pragma: no cover
