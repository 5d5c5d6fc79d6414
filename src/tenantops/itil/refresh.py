"""Mirror refresh: a mirror row follows its ticket though no runbook step touches it.

A person who resolves a ticket in the ITSM tool tells no runbook; without this
its mirror row would stay "in progress" here for good. The worker runs
``refresh_mirrors`` every ``TENANTOPS_SERVICENOW__REFRESH_SECONDS`` (a
``Periodic`` job the composition root installs only when a tool is configured;
decision 0043). A turn claims a bounded number of the open mirror rows — not
closed or cancelled: a resolved ticket may still be reopened or closed there —
oldest ``refreshed_at`` first (never asked: first), so no row starves however
many there are. It reads the due rows a page at a time (keyset on
``(refreshed_at, id)``) and takes each in three parts:

1. **Claim** (one short transaction): a conditional UPDATE moves the row's
   ``refreshed_at`` from the value read to now. Only one refresher wins a row;
   the others pass on to the next, and a row lost so counts against no one's
   limit: each worker added asks for a turn's worth more. A row asked less than
   ``again_after`` ago is not due, and ``again_after`` outlasts one request, so
   a second worker never asks for a ticket the first is still waiting on.
2. **Ask** (no transaction held): the tool for the ticket's state now.
3. **Record** (one transaction, the row locked): ``itil.mirror.follow`` — the
   move on the timeline, audited, its event and on-call hooks, as a runbook
   step's update records it — unless the row holds a newer version of the
   ticket: the tool's version stamp of the answer (``sys_mod_count``) is lower
   than the row's (``itil.mirror.older``), so a runbook step mirrored a later
   update meanwhile and its answer stands, whichever request was sent first.
   Without a stamp on either side (and for "no such ticket") the claim is the
   fence: the row must still be as claimed (``refreshed_at`` and ``version``).

A ticket the tool does not have (any more) is noted once on the row's timeline
(``mirror.gone``) and logged once; the row keeps its last state and is asked
again in its turn. Any other failure — the tool down, rate-limited, refusing the
credentials — ends the turn: logged without a traceback (which could show a
client's locals), nothing written but the failed row's claim. That row goes to
the back, so a ticket the tool always fails on cannot hold up the others; the
rest keep their places for the next turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import structlog
from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.db import Database
from tenantops.itil import mirror, repository
from tenantops.itil.states import Kind
from tenantops.kit.clock import as_utc, utcnow

log = structlog.get_logger("tenantops.itil")

REFRESHER = Principal(subject="system:itsm-refresh", via="system")
# Tickets one turn asks for at most (claims won). The job has a thread of its own, so
# no other job waits on a turn; bounded so a turn ends and leaves the rest to the other
# workers. Oldest first, every row has its turn. Each is claimed on its own, just
# before its ticket is asked.
BATCH = 50
# Besides one request's timeout, a claim covers the claim's and the record's writes.
MARGIN = timedelta(seconds=15)

# The tool's state of a ticket now (our name or the tool's code) and its version stamp;
# None: no such ticket.
Look = Callable[[Kind, str], mirror.Answer | None]
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


def take(session: Session, record_id: str, *, was: datetime | None, now: datetime) -> Claim | None:
    """Claim a row read with ``refreshed_at`` ``was``: of two refreshers only one wins it
    (None: another did, or the row is closed meanwhile)."""
    row = repository.claim_mirror(session, record_id, was=was, now=now)
    if row is None:
        return None
    return Claim(
        record_id=record_id,
        number=row.number,
        kind=Kind(row.kind),
        external_id=row.external_id or "",
        at=now,
        version=row.version,
    )


def record(
    session: Session,
    claim: Claim,
    answer: mirror.Answer | None,
    *,
    actor: Principal,
    system: str,
) -> Outcome:
    """Write what the tool said of a claimed row: ``moved``, ``same``, ``gone`` (first
    noticed), ``still gone``, or ``stale`` when the row holds a newer answer (see the
    module)."""
    row = repository.get(session, claim.record_id, for_update=True)
    if row is None:
        return "stale"
    version = None if answer is None else answer.version
    if version is not None and row.external_version is not None:
        if mirror.older(row, version):
            return "stale"
    elif (
        row.version != claim.version
        or row.refreshed_at is None
        or as_utc(row.refreshed_at) != claim.at
    ):
        return "stale"
    if answer is None:
        first = mirror.gone(session, row, actor=actor, system=system)
        return "gone" if first else "still gone"
    before = row.state
    moved = mirror.follow(
        session, row, actor=actor, state=answer.state, system=system, version=answer.version
    )
    if not moved:
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
    """One turn: claim up to ``limit`` due mirror rows of ``system``, oldest-refreshed
    first, and bring each up to date (see the module).

    ``limit`` counts claims won: a row another refresher took does not use a slot,
    so each worker added asks for ``limit`` more tickets a turn. When a page of due
    rows runs out the next is read (keyset on ``(refreshed_at, id)``), until
    ``limit`` claims are won or no row is due. Ends between two tickets once
    ``stopping()`` says the worker is stopping (the rows not yet claimed keep their
    places), and at the first failure to ask.
    """
    turn = Turn()
    before = clock() - again_after
    after: repository.Due | None = None
    won = 0
    while won < limit:
        wanted = limit - won
        with db.read() as session:
            rows = repository.due_mirrors(
                session, system=system, before=before, after=after, limit=wanted
            )
        for record_id, was in rows:
            if stopping():
                return turn
            with db.write() as session:
                claim = take(session, record_id, was=was, now=clock())
            if claim is None:
                continue  # another refresher has it, or it was closed meanwhile
            won += 1
            if not _ask_and_record(db, look, claim, turn, actor=actor, system=system):
                return turn
        if len(rows) < wanted:
            break  # no further row is due
        after = rows[-1]
    return turn


def _ask_and_record(
    db: Database, look: Look, claim: Claim, turn: Turn, *, actor: Principal, system: str
) -> bool:
    """Ask the tool for a claimed row's ticket and record the answer, counted in ``turn``;
    False when the tool did not answer (the turn ends)."""
    try:
        answer = look(claim.kind, claim.external_id)
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
        return False
    turn.asked += 1
    with db.write() as session:
        outcome = record(session, claim, answer, actor=actor, system=system)
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
    return True
