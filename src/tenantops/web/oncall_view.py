"""What the on-call pages show, shaped from the on-call service's answers (no query of its own).

Who may see and answer is read from the API's role table for the API's own
routes (``GET /api/v1/oncall``, ``GET …/pages``, ``POST …/pages/{page}/acknowledge``
and ``…/resolve``), so the pages never show more than the API would. The on-call
service does not scope pages by tenant (its API is for staff only), so a
tenant-scoped principal is refused here even if it also holds a staff role.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from tenantops.auth.policy import API, may
from tenantops.auth.principal import Principal
from tenantops.oncall import service as oncall
from tenantops.oncall.document import OncallDocument
from tenantops.oncall.schemas import ConfigRead, PageRead, ShiftRead

OVERVIEW_ROUTE = ("GET", f"{API}/oncall")
PAGES_ROUTE = ("GET", f"{API}/oncall/pages")
PAGE_ROUTE = ("GET", f"{API}/oncall/pages/{{page}}")
ACKNOWLEDGE_ROUTE = ("POST", f"{API}/oncall/pages/{{page}}/acknowledge")
RESOLVE_ROUTE = ("POST", f"{API}/oncall/pages/{{page}}/resolve")
OPEN_SHOWN = 100
RESOLVED_SHOWN = 20


def sees_pages(principal: Principal) -> bool:
    """Whether the viewer may read pages: the API's readers, never a tenant-scoped one."""
    return not principal.tenant_scoped and may(principal, *PAGES_ROUTE)


def sees_oncall(principal: Principal) -> bool:
    """Whether the navigation offers ``/oncall`` to the viewer."""
    return not principal.tenant_scoped and (
        may(principal, *PAGES_ROUTE) or may(principal, *OVERVIEW_ROUTE)
    )


def answers_pages(principal: Principal) -> bool:
    """Whether the viewer may acknowledge and resolve pages (the API's responders)."""
    return (
        sees_pages(principal)
        and may(principal, *ACKNOWLEDGE_ROUTE)
        and may(principal, *RESOLVE_ROUTE)
    )


@dataclass(frozen=True)
class LevelView:
    """One level of a policy: who is told, and how long they have before the next."""

    number: int
    targets: list[str]
    after: str


@dataclass(frozen=True)
class PolicyView:
    name: str
    levels: list[LevelView]
    repeat: int
    is_default: bool


@dataclass(frozen=True)
class RouteView:
    """A route of the document in words: what it matches, the policy it picks."""

    matches: str
    policy: str


@dataclass(frozen=True)
class ConfigView:
    """The on-call document in force, as the page lists it."""

    config: ConfigRead
    policies: list[PolicyView]
    routes: list[RouteView]


@dataclass(frozen=True)
class OncallPage:
    """Everything ``/oncall`` shows; a section is None when the viewer may not see it."""

    at: datetime
    config: ConfigView | None
    shifts: list[ShiftRead] | None
    open_pages: list[PageRead] | None
    more_open: bool
    resolved: list[PageRead] | None
    may_answer: bool


def config_view(config: ConfigRead) -> ConfigView:
    """Policies and routes of the applied document (the built-in default when none was)."""
    doc = OncallDocument.model_validate(config.document)
    policies = [
        PolicyView(
            name=name,
            levels=[
                LevelView(number=i + 1, targets=list(level.targets), after=level.after)
                for i, level in enumerate(policy.levels)
            ],
            repeat=policy.repeat,
            is_default=name == doc.default,
        )
        for name, policy in sorted(doc.policies.items())
    ]
    routes = []
    for route in doc.routes:
        wanted = [
            f"{field} {' or '.join(values)}"
            for field, values in route.when.model_dump().items()
            if values is not None
        ]
        routes.append(RouteView(matches="; ".join(wanted) or "any page", policy=route.policy))
    return ConfigView(config=config, policies=policies, routes=routes)


def build_page(session: Session, *, principal: Principal) -> OncallPage:
    """The on-call page as ``principal`` may see it."""
    config = shifts = None
    now = oncall.on_call_at(session)
    if may(principal, *OVERVIEW_ROUTE) and not principal.tenant_scoped:
        config = config_view(oncall.current_config(session))
        shifts = now.shifts
    open_pages = resolved = None
    more_open = False
    if sees_pages(principal):
        listed = oncall.list_pages(session, open_only=True, limit=OPEN_SHOWN, principal=principal)
        open_pages, more_open = listed.items, listed.next_cursor is not None
        resolved = oncall.list_pages(
            session, status=oncall.RESOLVED, limit=RESOLVED_SHOWN, principal=principal
        ).items
    return OncallPage(
        at=now.at,
        config=config,
        shifts=shifts,
        open_pages=open_pages,
        more_open=more_open,
        resolved=resolved,
        may_answer=answers_pages(principal),
    )


def tenant_open_pages(
    session: Session, *, principal: Principal, tenant_id: str, limit: int = 20
) -> list[PageRead] | None:
    """A tenant's open pages for its page; None when the viewer may not read pages."""
    if not sees_pages(principal):
        return None
    return list(
        oncall.list_pages(
            session, open_only=True, tenant=tenant_id, limit=limit, principal=principal
        ).items
    )


def level_text(page: PageRead) -> str:
    """Where a page's escalation stands, in words: ``level 2 of 2, round 2``."""
    if page.level is None:
        return f"not yet told (of {page.levels})"
    text = f"level {page.level} of {page.levels}"
    return text + (f", round {page.round + 1}" if page.round else "")


def next_text(page: PageRead) -> str:
    """What happens next to a page unless someone answers it."""
    if page.status == oncall.RESOLVED:
        return "resolved"
    if page.status == oncall.ACKNOWLEDGED:
        return f"acknowledged by {page.acknowledged_by or 'someone'}: no further escalation"
    if page.exhausted:
        return "every level was told: nobody left to escalate to"
    return ""
