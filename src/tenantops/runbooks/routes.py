"""JSON API of runs, the runbook library and maintenance windows: ``/api/v1/runs``,
``/api/v1/runbooks`` and ``/api/v1/maintenance-windows``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db, wake_worker
from tenantops.runbooks import service, spec, windows
from tenantops.runbooks.actions import GateChecks
from tenantops.runbooks.schemas import (
    CancelRequest,
    GateDecisionCreate,
    RunbookRead,
    RunbookSummary,
    RunPage,
    RunRead,
    RunStatus,
    WindowRead,
    WindowWrite,
)

router = APIRouter(
    prefix="/api/v1",
    route_class=GuardedRoute,
    tags=["runs"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 404, 422, 503),
)
CHANGES = problem_responses(400, 409)

RunId = Annotated[str, Path(min_length=1, max_length=36, description="The run's id")]
StepName = Annotated[str, Path(min_length=1, max_length=63, description="The gate step's name")]


@router.get("/runs", summary="List runbook runs", response_model=RunPage)
def list_runs(
    caller: Caller,
    db: Db,
    tenant: Annotated[str | None, Query(max_length=63, description="tenant id or name")] = None,
    runbook: Annotated[str | None, Query(max_length=63, description="runbook id")] = None,
    status: RunStatus | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RunPage:
    """Newest first; a tenant owner sees only the runs of their tenant."""
    with db.read() as session:
        return service.list_runs(
            session,
            principal=caller,
            tenant=tenant,
            runbook_id=runbook,
            status=status,
            cursor=cursor,
            limit=limit,
        )


@router.get(
    "/runs/{run_id}", summary="Read a run with its steps and evidence", response_model=RunRead
)
def get_run(run_id: RunId, caller: Caller, db: Db) -> RunRead:
    with db.read() as session:
        return service.read_run(session, principal=caller, run_id=run_id)


@router.post(
    "/runs/{run_id}/gates/{step}",
    summary="Approve or reject an approval gate of a run",
    response_model=RunRead,
    responses=CHANGES,
)
def decide_gate(
    run_id: RunId,
    step: StepName,
    data: GateDecisionCreate,
    request: Request,
    caller: Caller,
    db: Db,
) -> RunRead:
    """Needs one of the gate's roles; whoever started the run cannot decide its gates.

    A decision sent before the run reaches the gate is kept and applied when it does.
    An approval of a gate that names a check (e.g. the Access Review's decision) must
    pass it: otherwise a 422 names what to correct and nothing is recorded.
    """
    checks: GateChecks = request.app.state.gate_checks
    with db.write() as session:
        run = service.decide_gate(
            session, principal=caller, run_id=run_id, step=step, data=data, checks=checks
        )
    wake_worker(request)
    return run


@router.post(
    "/runs/{run_id}/cancel",
    summary="Cancel a run, or close a failed one",
    response_model=RunRead,
    responses=CHANGES,
)
def cancel_run(
    run_id: RunId, data: CancelRequest, request: Request, caller: Caller, db: Db
) -> RunRead:
    with db.write() as session:
        run = service.cancel_run(session, principal=caller, run_id=run_id, reason=data.reason)
    wake_worker(request)
    return run


@router.post(
    "/runs/{run_id}/retry",
    summary="Retry a failed run from its failed step",
    response_model=RunRead,
    responses=problem_responses(409),
)
def retry_run(run_id: RunId, request: Request, caller: Caller, db: Db) -> RunRead:
    with db.write() as session:
        run = service.retry_run(session, principal=caller, run_id=run_id)
    wake_worker(request)
    return run


@router.get(
    "/runbooks",
    summary="The runbook library",
    response_model=list[RunbookSummary],
    tags=["runbooks"],
)
def list_runbooks() -> list[RunbookSummary]:
    return [service.runbook_summary(r) for r in spec.load_library().values()]


@router.get(
    "/runbooks/{runbook_id}",
    summary="A runbook of the library, with its document",
    response_model=RunbookRead,
    tags=["runbooks"],
)
def get_runbook(
    runbook_id: Annotated[str, Path(min_length=1, max_length=63)],
) -> RunbookRead:
    return service.runbook_read(spec.get(spec.load_library(), runbook_id))


WindowName = Annotated[
    str, Path(pattern=spec.IDENT, max_length=63, description="The window's name, as steps use it")
]


@router.get(
    "/maintenance-windows",
    summary="The maintenance windows windowed steps wait for",
    response_model=list[WindowRead],
    tags=["runs"],
)
def list_windows(db: Db) -> list[WindowRead]:
    with db.read() as session:
        rows = windows.list_windows(session)
        return [WindowRead.model_validate(windows.as_dict(w)) for w in rows]


@router.get(
    "/maintenance-windows/{name}",
    summary="A maintenance window: open now, and its next opening",
    response_model=WindowRead,
    tags=["runs"],
)
def get_window(name: WindowName, db: Db) -> WindowRead:
    with db.read() as session:
        return WindowRead.model_validate(windows.as_dict(windows.get_window(session, name)))


@router.put(
    "/maintenance-windows/{name}",
    summary="Create or replace a maintenance window (audited)",
    response_model=WindowRead,
    tags=["runs"],
    responses=problem_responses(400),
)
def put_window(
    name: WindowName, data: WindowWrite, request: Request, caller: Caller, db: Db
) -> WindowRead:
    """Steps waiting for this window are checked against it again at once."""
    with db.write() as session:
        row = windows.put_window(
            session,
            principal=caller,
            name=name,
            days=list(data.days),
            start=data.start,
            end=data.end,
            timezone=data.timezone,
            description=data.description,
        )
        read = WindowRead.model_validate(windows.as_dict(row))
    wake_worker(request)
    return read


@router.delete(
    "/maintenance-windows/{name}",
    summary="Delete a maintenance window (audited)",
    status_code=204,
    tags=["runs"],
)
def delete_window(name: WindowName, request: Request, caller: Caller, db: Db) -> None:
    """The steps waiting for it fail at once, saying how to define it again."""
    with db.write() as session:
        windows.delete_window(session, principal=caller, name=name)
    wake_worker(request)
