"""The checklists a tenant page can start (Access Review, Budget Review), and starting one.

Who may start one is the API's: the roles of its ``POST`` route in
``auth.policy``. Starting one calls the function that route calls
(``accessreview.service.start_access_review``,
``finops.actions.start_budget_review``), so the one-open-review rule (409),
the tenant scope and the actor recorded on the run are the API's. The page
reads the open reviews through ``runbooks.service`` as the viewer, to link to
an open run instead of offering a start that would be refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from tenantops.accessreview import service as accessreview
from tenantops.auth.policy import allowed_roles
from tenantops.auth.principal import Principal, Role
from tenantops.errors import Forbidden, NotFound, Unprocessable
from tenantops.finops import actions as finops
from tenantops.finops.costs import Month
from tenantops.kit.clock import as_utc
from tenantops.runbooks import engine
from tenantops.runbooks.models import Run
from tenantops.tenants import service as tenants
from tenantops.web.tenant_actions import TENANT, role_words

OPEN_SHOWN = 12  # open reviews linked per checklist; one per month at most for budgets


@dataclass(frozen=True)
class Checklist:
    """A checklist a tenant page can start: its runbook, its API route, its words."""

    name: str
    title: str
    runbook_id: str
    route: tuple[str, str]
    completes: str  # who ticks its gates, for the message after starting

    @property
    def label(self) -> str:
        return f"Start {self.title.lower()}"

    def roles(self) -> frozenset[Role]:
        return allowed_roles(*self.route)


ACCESS_REVIEW = Checklist(
    "access-review",
    "Access review",
    accessreview.RUNBOOK,
    ("POST", f"{TENANT}/access-reviews"),
    "security",
)
BUDGET_REVIEW = Checklist(
    "budget-review",
    "Budget review",
    finops.REVIEW_RUNBOOK,
    ("POST", f"{TENANT}/budget-reviews"),
    "finance",
)
CHECKLISTS: dict[str, Checklist] = {c.name: c for c in (ACCESS_REVIEW, BUDGET_REVIEW)}


@dataclass(frozen=True)
class OpenReview:
    """An unfinished run of a checklist; ``month`` for a budget review."""

    run_id: str
    month: str | None
    started_by: str
    created_at: datetime


@dataclass(frozen=True)
class ChecklistView:
    """A checklist as the page shows it to one viewer.

    ``allowed``: the viewer holds one of the route's roles. ``month``: the
    budget review's default month (the current one), or ``""`` when that
    month's review is open, so the form asks for another month.
    """

    checklist: Checklist
    allowed: bool
    open_runs: list[OpenReview]
    month: str = ""

    @property
    def needs(self) -> str:
        return " or ".join(sorted(r.value.replace("_", " ") for r in self.checklist.roles()))

    @property
    def offered(self) -> bool:
        """Whether the form is shown: the role, and no open review it would collide with.

        An access review is one per tenant; a budget review one per tenant and
        month, so its form stays for another month while one is open.
        """
        if not self.allowed:
            return False
        return self.checklist is BUDGET_REVIEW or not self.open_runs


def _open_reviews(session: Session, *, tenant_id: str, checklist: Checklist) -> list[OpenReview]:
    """The checklist's unfinished runs of the tenant, oldest first (the page already
    checked the viewer may see the tenant, and with it its runs)."""
    found = engine.open_runs(
        session, tenant_id=tenant_id, runbook_id=checklist.runbook_id, lock=False
    )
    return [
        OpenReview(
            run.id,
            str((run.inputs or {}).get("month") or "") or None
            if checklist is BUDGET_REVIEW
            else None,
            run.started_by,
            as_utc(run.created_at),
        )
        for run in sorted(found, key=lambda r: (r.created_at, r.id))[:OPEN_SHOWN]
    ]


def checklist_views(
    session: Session, *, principal: Principal, tenant_id: str
) -> list[ChecklistView]:
    """Both checklists as ``principal`` sees them on the page of tenant ``tenant_id``."""
    views = []
    for checklist in CHECKLISTS.values():
        open_runs = _open_reviews(session, tenant_id=tenant_id, checklist=checklist)
        month = ""
        if checklist is BUDGET_REVIEW:
            current = Month.parse(None).label
            month = "" if any(r.month == current for r in open_runs) else current
        allowed = bool(principal.roles & checklist.roles())
        views.append(ChecklistView(checklist, allowed, open_runs, month))
    return views


def _text(form: Mapping[str, str], name: str) -> str | None:
    return form.get(name, "").strip() or None


def start(
    session: Session, *, principal: Principal, ref: str, name: str, form: Mapping[str, str]
) -> Run:
    """Start checklist ``name`` of tenant ``ref`` as ``principal`` with the posted form.

    Raises what the API would: ``NotFound`` for a tenant the viewer may not see,
    ``Forbidden`` without one of the route's roles, ``Unprocessable`` for a bad
    reason or month, ``Conflict`` while the same review is open.
    """
    tenant = tenants.get_tenant(session, principal=principal, ref=ref)
    checklist = CHECKLISTS.get(name)
    if checklist is None:
        raise NotFound(f"no checklist {name!r}")
    roles = checklist.roles()
    if not principal.roles & roles:
        raise Forbidden(f"{checklist.title}s are started by the {role_words(roles)} role")
    if checklist is ACCESS_REVIEW:
        reason = _text(form, "reason")
        if reason is not None and len(reason) > accessreview.MAX_REASON:
            raise Unprocessable(
                f"Reason: at most {accessreview.MAX_REASON} characters", param="reason"
            )
        return accessreview.start_access_review(
            session, principal=principal, ref=tenant.id, reason=reason
        )
    # The service refuses a month that is not one (422, param month), as for the API.
    month = _text(form, "month")
    return finops.start_budget_review(session, principal=principal, ref=tenant.id, month=month)


def started_message(checklist: Checklist, run: Run) -> str:
    """What the run's page says once: what was started and who completes it."""
    month = (run.inputs or {}).get("month")
    what = f"{checklist.title} of {month}" if month else checklist.title
    return (
        f"{what} started. Another {checklist.completes} user works through its gates "
        "(you cannot tick them yourself)."
    )
