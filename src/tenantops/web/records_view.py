"""What the ITIL records pages show, shaped from ``itil.service``'s answers (no query of its own).

Reads go through ``service.list_records``/``get`` as the viewer, so a tenant
owner sees their own tenant's records and any other is "not found", as in the
API. The forms offered follow the API's role table for its own routes
(``POST /api/v1/itil/records/{record}/transitions`` and ``…/notes``) narrowed
by the service's own rule for the record at hand — only governance or an admin
takes a change out of ``authorize``, never the person who opened it — so a
button is shown only where pressing it can succeed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from tenantops.auth.policy import API, may
from tenantops.auth.principal import Principal
from tenantops.errors import NotFound
from tenantops.itil import service as itil
from tenantops.itil import states
from tenantops.itil.schemas import NoteRead, RecordRead
from tenantops.itil.states import Kind
from tenantops.oncall import service as oncall
from tenantops.oncall.schemas import PageRead

LIST_ROUTE = ("GET", f"{API}/itil/records")
TRANSITION_ROUTE = ("POST", f"{API}/itil/records/{{record}}/transitions")
NOTE_ROUTE = ("POST", f"{API}/itil/records/{{record}}/notes")
KINDS = tuple(k.value for k in Kind)
# Every state any kind has, in the order a record meets them.
STATES = tuple(dict.fromkeys(s for kind in Kind for s in states.TABLES[kind]))
PRIORITIES = {1: "1 critical", 2: "2 high", 3: "3 moderate", 4: "4 low"}
TENANT_SHOWN = 10


def sees_records(principal: Principal) -> bool:
    """Whether the viewer may read records (the navigation offers ``/records``)."""
    return may(principal, *LIST_ROUTE)


@dataclass(frozen=True)
class Move:
    """A state the viewer may move the record to, and whether it needs a resolution."""

    state: str
    label: str
    needs_resolution: bool


@dataclass(frozen=True)
class RecordPage:
    """A record, its timeline, its problem, its on-call page, and the forms the viewer may use."""

    record: RecordRead
    timeline: list[NoteRead]
    problem: RecordRead | None
    moves: list[Move]
    move_refusal: str | None
    may_note: bool
    oncall_page: PageRead | None = None  # the page it opened (P1/P2 incidents), if shown


def label(state: str) -> str:
    """A state name as a person reads it: ``root_cause_analysis`` -> ``root cause analysis``."""
    return state.replace("_", " ")


def _moves(
    principal: Principal, record: RecordRead, allowed: list[str]
) -> tuple[list[Move], str | None]:
    """The moves offered to ``principal``, or why none is although the record may move."""
    if not allowed or not may(principal, *TRANSITION_ROUTE):
        return [], None
    kind = Kind(record.kind)
    if kind is Kind.CHANGE and record.state == states.AUTHORIZE:
        if not any(principal.has(r) for r in itil.AUTHORIZERS):
            return [], "Governance or an admin authorises this change."
        if principal.subject == record.opened_by:
            return [], (
                "You opened this change: a different person must authorise it "
                "(segregation of duties)."
            )
    elif not any(principal.has(r) for r in itil.WRITERS):
        return [], None
    moves = [Move(s, label(s), states.needs_resolution(kind, s)) for s in allowed]
    return moves, None


def build_record(
    session: Session, *, principal: Principal, ref: str, sees_pages: bool = False
) -> RecordPage:
    """The record ``ref`` (id or number) as ``principal`` may see it; NotFound otherwise.

    ``sees_pages`` (the caller's ``oncall_view.sees_pages``): the on-call page the
    record opened (``itil:<record id>``) is shown too, if it has one.
    """
    row = itil.get(session, principal=principal, ref=ref)
    record = RecordRead.model_validate(row)
    timeline = [NoteRead.model_validate(n) for n in itil.timeline(session, row)]
    allowed = itil.next_states(row)
    problem = None
    if record.problem_id:
        try:
            problem = RecordRead.model_validate(
                itil.get(session, principal=principal, ref=record.problem_id)
            )
        except NotFound:  # a platform problem a tenant owner may not read
            problem = None
    moves, refusal = _moves(principal, record, allowed)
    return RecordPage(
        record=record,
        timeline=timeline,
        problem=problem,
        moves=moves,
        move_refusal=refusal,
        may_note=may(principal, *NOTE_ROUTE) and any(principal.has(r) for r in itil.WRITERS),
        oncall_page=oncall.page_for_key(session, f"itil:{record.id}") if sees_pages else None,
    )


def tenant_records(
    session: Session, *, principal: Principal, tenant_id: str, limit: int = TENANT_SHOWN
) -> tuple[list[RecordRead], bool] | None:
    """A tenant's newest records and whether there are more; None if the viewer may not read."""
    if not sees_records(principal):
        return None
    rows, next_cursor = itil.list_records(
        session, principal=principal, tenant=tenant_id, limit=limit
    )
    return [RecordRead.model_validate(r) for r in rows], next_cursor is not None
