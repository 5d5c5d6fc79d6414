"""JSON API of the ITIL records: ``/api/v1/itil/records``.

Reads are scoped in the service (a tenant owner sees their own tenant's
records only; someone else's is a 404). Changes answer the record with its
``ETag``; send it back as ``If-Match`` to refuse a change to a record that
moved since it was read (412).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.itil import service
from tenantops.itil.models import ItilRecord
from tenantops.itil.schemas import (
    AssignCreate,
    LinkCreate,
    NoteCreate,
    NoteRead,
    RecordDetail,
    RecordOpen,
    RecordPage,
    RecordRead,
    TransitionCreate,
)
from tenantops.itil.states import Kind
from tenantops.kit.etag import etag, parse_if_match
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db

router = APIRouter(
    prefix="/api/v1/itil",
    route_class=GuardedRoute,
    tags=["itil"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 404, 422, 503),
)
# A body that cannot be decoded at all is a 400; a record that moved, 409/412.
CHANGES = problem_responses(400, 409, 412)

RecordRef = Annotated[
    str,
    Path(min_length=1, max_length=40, description="The record's id or number (INC0000042)"),
]
IfMatch = Annotated[
    str | None,
    Header(
        description="ETag of the record as last read; the change fails with 412 if it moved",
        json_schema_extra={"pattern": r'^\s*(\*|(W/)?"[0-9]{1,18}")\s*$'},
        examples=['"3"'],
    ),
]


def _read(record: ItilRecord, *, replayed: bool = False) -> RecordRead:
    read = RecordRead.model_validate(record)
    return read.model_copy(update={"replayed": replayed})


def _answer(response: Response, record: ItilRecord) -> RecordRead:
    response.headers["ETag"] = etag(record.version)
    return _read(record)


@router.get(
    "/records",
    summary="ITIL records (incidents, changes, problems), newest first",
    response_model=RecordPage,
)
def list_records(
    db: Db,
    caller: Caller,
    kind: Kind | None = None,
    state: Annotated[str | None, Query(max_length=32)] = None,
    tenant: Annotated[
        str | None, Query(min_length=1, max_length=63, description="Tenant id or name")
    ] = None,
    open_only: Annotated[
        bool, Query(description="Only records not yet resolved, closed or cancelled")
    ] = False,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=service.LISTED_AT_MOST)] = 50,
) -> RecordPage:
    """A tenant owner sees the records of their own tenant only."""
    with db.read() as session:
        rows, next_cursor = service.list_records(
            session,
            principal=caller,
            kind=kind,
            state=state,
            tenant=tenant,
            open_only=open_only,
            cursor=cursor,
            limit=limit,
        )
        return RecordPage(items=[_read(r) for r in rows], next_cursor=next_cursor)


@router.post(
    "/records",
    summary="Open an incident, change or problem (audited; P1/P2 incidents page on-call)",
    response_model=RecordRead,
    status_code=201,
    responses=CHANGES,
)
def open_record(data: RecordOpen, db: Db, caller: Caller, response: Response) -> RecordRead:
    """With ``correlation_id`` the same call twice opens one record (``replayed``: true)."""
    with db.write() as session:
        opened = service.open_record(
            session,
            kind=data.kind,
            title=data.title,
            description=data.description,
            priority=data.priority,
            actor=caller,
            tenant=data.tenant,
            correlation_id=data.correlation_id,
            fields=data.fields,
            problem=data.problem,
        )
        response.headers["ETag"] = etag(opened.record.version)
        return _read(opened.record, replayed=opened.replayed)


@router.get(
    "/records/{record}",
    summary="One record with its timeline and the states it may move to",
    response_model=RecordDetail,
)
def get_record(record: RecordRef, db: Db, caller: Caller, response: Response) -> RecordDetail:
    with db.read() as session:
        row = service.get(session, principal=caller, ref=record)
        response.headers["ETag"] = etag(row.version)
        return RecordDetail.model_validate(
            {
                **_read(row).model_dump(),
                "timeline": [NoteRead.model_validate(n) for n in service.timeline(session, row)],
                "next_states": service.next_states(row),
            }
        )


@router.post(
    "/records/{record}/transitions",
    summary="Move a record to another state (422 names the states allowed)",
    response_model=RecordRead,
    responses=CHANGES,
)
def transition(
    record: RecordRef,
    data: TransitionCreate,
    db: Db,
    caller: Caller,
    response: Response,
    if_match: IfMatch = None,
) -> RecordRead:
    """Leaving a change's ``authorize`` takes governance or admin, not its opener."""
    with db.write() as session:
        row = service.transition(
            session,
            actor=caller,
            ref=record,
            to=data.state,
            resolution=data.resolution,
            note=data.note,
            expected_version=parse_if_match(if_match, noun="record"),
        )
        return _answer(response, row)


@router.post(
    "/records/{record}/notes",
    summary="Add a work note (idempotent with key)",
    response_model=NoteRead,
    status_code=201,
    responses=CHANGES,
)
def add_note(record: RecordRef, data: NoteCreate, db: Db, caller: Caller) -> NoteRead:
    with db.write() as session:
        note = service.add_note(session, actor=caller, ref=record, text=data.text, key=data.key)
        return NoteRead.model_validate(note)


@router.put(
    "/records/{record}/assignment",
    summary="Assign the record to a person or group (null: unassigned)",
    response_model=RecordRead,
    responses=CHANGES,
)
def assign(
    record: RecordRef,
    data: AssignCreate,
    db: Db,
    caller: Caller,
    response: Response,
    if_match: IfMatch = None,
) -> RecordRead:
    with db.write() as session:
        row = service.assign(
            session,
            actor=caller,
            ref=record,
            assigned_to=data.assigned_to,
            expected_version=parse_if_match(if_match, noun="record"),
        )
        return _answer(response, row)


@router.put(
    "/records/{record}/problem",
    summary="Link an incident or change to the problem behind it",
    response_model=RecordRead,
    responses=CHANGES,
)
def link_problem(
    record: RecordRef,
    data: LinkCreate,
    db: Db,
    caller: Caller,
    response: Response,
    if_match: IfMatch = None,
) -> RecordRead:
    with db.write() as session:
        row = service.link_problem(
            session,
            actor=caller,
            ref=record,
            problem=data.problem,
            expected_version=parse_if_match(if_match, noun="record"),
        )
        return _answer(response, row)
