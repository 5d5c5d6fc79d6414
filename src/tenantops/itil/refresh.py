"""Mirror refresh: a mirror row follows its ticket though no runbook step touches it.

A person who resolves a ticket in the ITSM tool tells no runbook; without this
its mirror row would stay "in progress" here for good. The worker runs
``refresh_mirrors`` every ``TENANTOPS_SERVICENOW__REFRESH_SECONDS`` (a
``Periodic`` job the composition root installs only when a tool is configured;
decision 0043). A turn reads a bounded batch of the open mirror rows — not
closed or cancelled: a resolved ticket may still be reopened or closed there —
oldest ``refreshed_at`` first (never asked: first), so no row starves however
many there are, and takes each in three parts:

1. **Claim** (one short transaction): a conditional UPDATE moves the row's
   ``refreshed_at`` from the value read to now. Only one refresher wins a row;
   the others pass on to the next. A row asked less than ``again_after`` ago is
   not due, and ``again_after`` outlasts one request, so a second worker never
   asks for a ticket the first is still waiting on.
2. **Ask** (no transaction held): the tool for the ticket's state now.
3. **Record** (one transaction): ``itil.mirror.follow`` — the move on the
   timeline, audited, its event and on-call hooks, as a runbook step's update
   records it — but only if the row is still as claimed (``refreshed_at`` and
   ``version``); otherwise a runbook step (or a refresher that took over a claim
   that outlived its request) mirrored the ticket later, and its answer stands.

A ticket the tool does not have (any more) is noted once on the row's timeline
(``mirror.gone``) and logged once; the row keeps its last state and is asked
again in its turn. Any other failure — the tool down, rate-limited, refusing the
credentials — ends the turn: logged without a traceback (which could show a
client's locals), nothing written but the failed row's claim. That row goes to
the back, so a ticket the tool always fails on cannot hold up the others; the
rest keep their places for the next turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.db import Database
from tenantops.itil import mirror, repository, states
from tenantops.itil.models import ItilRecord
from tenantops.itil.states import Kind
from tenantops.kit.clock import as_utc, utcnow

log = structlog.get_logger("tenantops.itil")

REFRESHER = Principal(subject="system:itsm-refresh", via="system")
# Tickets one turn asks for at most. The worker's periodic jobs share one thread (the
# on-call escalator waits behind a turn), so a turn is bounded; oldest first, every
# row has its turn. Each is claimed on its own, just before its ticket is asked.
BATCH = 50
# Besides one request's timeout, a claim covers the claim's and the record's writes.
MARGIN = timedelta(seconds=15)

# The tool's state of a ticket now (our name or the tool's code); None: no such ticket.
Look = Callable[[Kind, str], str | None]
Outcome = Literal["moved", "same", "gone", "still gone", "stale"]


def again_after(every: timedelta, request: timedelta) -> timedelta:
    """How long a refreshed row is not due: half the interval (a turn that starts a
    little early still asks the rows the last one did), and longer than one request
    can take, so a claim never lapses while its answer is on the way."""
    return max(every / 2, request + MARGIN)


@dataclass(frozen=True)
class Claim:
    """One mirror row this refresher holds: the ticket to ask for and the fence."""

    record_id: str
    number: str
    kind: Kind
    external_id: str
    at: datetime
    version: int


@dataclass
class Turn:
    """What one turn did; ``error`` says why it ended early."""

    asked: int = 0
    moved: int = 0
    gone: int = 0
    error: str | None = None


def due(
    session: Session, *, system: str, before: datetime, limit: int
) -> Sequence[tuple[str, datetime | None]]:
    """Open mirror rows of ``system`` last asked before ``before`` (or never), oldest first:
    their ids and ``refreshed_at`` as read (the claim's condition)."""
    query = (
        select(ItilRecord.id, ItilRecord.refreshed_at)
        .where(
            ItilRecord.external_system == system,
            ItilRecord.external_id.is_not(None),
            ItilRecord.state.not_in(sorted(states.TERMINAL)),
            or_(ItilRecord.refreshed_at.is_(None), ItilRecord.refreshed_at < before),
        )
        .order_by(ItilRecord.refreshed_at.asc().nulls_first(), ItilRecord.id)
        .limit(limit)
    )
    return [(row.id, row.refreshed_at) for row in session.execute(query)]


def take(session: Session, record_id: str, *, was: datetime | None, now: datetime) -> Claim | None:
    """Claim a row read with ``refreshed_at`` ``was``: a conditional UPDATE, so of two
    refreshers only one wins it (None: another did, or the row is closed meanwhile)."""
    unchanged = ItilRecord.refreshed_at.is_(None) if was is None else ItilRecord.refreshed_at == was
    result = session.execute(
        update(ItilRecord)
        .where(
            ItilRecord.id == record_id,
            unchanged,
            ItilRecord.state.not_in(sorted(states.TERMINAL)),
        )
        .values(refreshed_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    row = session.execute(
        select(
            ItilRecord.number, ItilRecord.kind, ItilRecord.external_id, ItilRecord.version
        ).where(ItilRecord.id == record_id)
    ).one()
    return Claim(
        record_id=record_id,
        number=row.number,
        kind=Kind(row.kind),
        external_id=row.external_id or "",
        at=now,
        version=row.version,
    )


def record(
    session: Session, claim: Claim, state: str | None, *, actor: Principal, system: str
) -> Outcome:
    """Write what the tool said of a claimed row: ``moved``, ``same``, ``gone`` (first
    noticed), ``still gone``, or ``stale`` when the row changed since the claim."""
    row = repository.get(session, claim.record_id, for_update=True)
    if (
        row is None
        or row.version != claim.version
        or row.refreshed_at is None
        or as_utc(row.refreshed_at) != claim.at
    ):
        return "stale"
    if state is None:
        return "gone" if mirror.gone(session, row, actor=actor, system=system) else "still gone"
    before = row.state
    if not mirror.follow(session, row, actor=actor, state=state, system=system):
        return "same"
    log.info("mirror row follows its ticket", number=row.number, before=before, after=row.state)
    return "moved"


def refresh_mirrors(
    db: Database,
    look: Look,
    *,
    system: str,
    again_after: timedelta,
    actor: Principal = REFRESHER,
    clock: Callable[[], datetime] = utcnow,
    limit: int = BATCH,
    stopping: Callable[[], bool] = lambda: False,
) -> Turn:
    """One turn: ask ``look`` for up to ``limit`` due mirror rows of ``system``,
    oldest-refreshed first, and bring each row up to date (see the module).

    Ends between two tickets once ``stopping()`` says the worker is stopping (the
    rows not yet claimed keep their places), and at the first failure to ask.
    """
    turn = Turn()
    now = clock()
    with db.read() as session:
        rows = due(session, system=system, before=now - again_after, limit=limit)
    for record_id, was in rows:
        if stopping():
            break
        with db.write() as session:
            claim = take(session, record_id, was=was, now=clock())
        if claim is None:
            continue  # another worker has it, or it was closed meanwhile
        try:
            state = look(claim.kind, claim.external_id)
        except Exception as exc:
            # No traceback: a rendered one may show the client's locals (its credentials).
            turn.error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "mirror refresh ends for this turn: the tool did not answer",
                system=system,
                number=claim.number,
                error=turn.error,
                asked=turn.asked,
            )
            break
        turn.asked += 1
        with db.write() as session:
            outcome = record(session, claim, state, actor=actor, system=system)
        if outcome == "moved":
            turn.moved += 1
        elif outcome == "gone":
            turn.gone += 1
            log.warning(
                "mirrored ticket not found; its row keeps its last state",
                system=system,
                number=claim.number,
                external_id=claim.external_id,
            )
    return turn
