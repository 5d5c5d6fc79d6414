"""The escalator: tell each due page's next level, until someone acknowledges or it runs out.

``escalate_due`` is one sweep; the worker runs it every few seconds
(``TENANTOPS_ONCALL__SWEEP_SECONDS``), and any number of workers may run it at
once. A sweep takes one page at a time, reading its clock afresh for each take
and each record, in three parts:

1. **Claim** (one transaction): the earliest due page, locked with ``FOR UPDATE
   SKIP LOCKED`` on PostgreSQL (SQLite has one writer), taken by a conditional
   UPDATE on its ``version`` that also pushes ``next_at`` out by the claim: at
   least ``CLAIM``, and longer than the step's messages can take at worst (the
   notifier's attempts × timeout + backoffs, per message, as the composition
   root computes it). Only one sweep wins a page's step. Before taking it the
   sweep looks at the outbox: if a message of the step is still ``pending`` and
   younger than the claim, another sweep is delivering it right now (its claim
   lapsed only on paper), so the page is left alone until that message's claim
   would be over (``next_at`` moves, ``version`` does not: the other sweep
   records its step as usual).
2. **Send** (no transaction held): the level's targets through the ``notify.send``
   action, one message per part (the rotations' and literal recipients together,
   each ``role:`` group apart), each with an idempotency key of page, round, level
   and part. A sweep that dies here leaves the claim to lapse; the next one sends
   the same keys again: the outbox hands back the messages already delivered or
   stored, and delivers again only one still ``pending`` past the claim, whose
   sender is presumed dead (at least once, never twice while the sender lives).
3. **Record** (one transaction): the step's timeline entry, audit entry and
   event; the next step is due ``after`` the level's wait, counted from the
   record. If the page was acknowledged meanwhile, only the timeline learns who
   was told.

Out of levels and repeats, the page is marked exhausted (``next_at`` NULL,
status still ``triggered``) and the last level is told nobody answered. A
failed send does not stop the escalation: it is on the timeline
(``notify_failed``) and the next level is told when the wait is over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy.orm import Session

from tenantops.db import Database
from tenantops.errors import NotFound
from tenantops.kit.clock import as_utc, utcnow
from tenantops.oncall import repository, service
from tenantops.oncall.document import OncallDocument, Policy
from tenantops.oncall.models import Page
from tenantops.oncall.rotations import shift_at
from tenantops.runbooks.actions import Action, ActionContext
from tenantops.tenants import service as tenants

log = structlog.get_logger("tenantops.oncall")

# The least a claimed step is this sweep's before another may take it over.
CLAIM = timedelta(seconds=60)
# Besides its messages' worst case, a claim covers the step's reads and writes.
MARGIN = timedelta(seconds=15)
BATCH = 100
TEMPLATE = "oncall_page"


class Queued(Protocol):
    """What the outbox holds under one idempotency key (``OutboxNotifier.queued``)."""

    @property
    def pending(self) -> bool: ...

    @property
    def created_at(self) -> datetime: ...


# The outbox message of an idempotency key, if any.
Outbox = Callable[[str], Queued | None]


def claim_length(delivery: timedelta, messages: int) -> timedelta:
    """How long a step of ``messages`` messages is claimed: longer than they can take
    at worst (``delivery`` each, one after the other), and at least ``CLAIM``."""
    return max(CLAIM, delivery * max(messages, 1) + MARGIN)


def message_keys(
    page_id: str, *, where: str, recipients: tuple[str, ...], roles: tuple[str, ...]
) -> list[tuple[str, str]]:
    """The step's parts and their idempotency keys, in the order they are sent."""
    parts = (["direct"] if recipients else []) + list(roles)
    return [(part, f"oncall:{page_id}/{where}/{part}") for part in parts]


def next_step(policy: Policy, level: int, round_: int) -> tuple[int, int] | None:
    """The (level, round) told after (``level``, ``round_``); None when none is left.

    ``level`` -1 is a page nobody was told of yet.
    """
    if level + 1 < len(policy.levels):
        return level + 1, round_
    if round_ < policy.repeat:
        return 0, round_ + 1
    return None


@dataclass(frozen=True)
class Step:
    """One claimed step of one page: whom to tell, and how to record it."""

    page_id: str
    version: int
    key: str
    summary: str
    severity: str
    policy: str
    tenant_id: str | None
    tenant: dict[str, Any] | None
    level: int  # 0-based: the level told (for the exhaustion notice, the last level)
    round: int
    levels: int
    repeat: int
    exhausted: bool
    first: bool
    wait: timedelta
    recipients: tuple[str, ...]  # rotations' members on call now, and literal recipients
    roles: tuple[str, ...]


def _recipients(
    doc: OncallDocument, targets: list[str], now: datetime
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    people: list[str] = []
    roles: list[str] = []
    for target in targets:
        kind, _, rest = target.partition(":")
        if kind == "rotation":
            people.append(shift_at(doc.rotations[rest].spec(rest), now).member)
        elif kind == "role":
            roles.append(rest)
        else:
            people.append(target)
    return tuple(dict.fromkeys(people)), tuple(dict.fromkeys(roles))


def _snapshot(session: Session, tenant_id: str | None) -> dict[str, Any] | None:
    """What a message shows of the tenant (read through the tenants service)."""
    if tenant_id is None:
        return None
    try:
        t = tenants.get_tenant(session, principal=service.ESCALATOR, ref=tenant_id)
    except NotFound:
        return None
    return {
        "id": t.id,
        "name": t.name,
        "display_name": t.display_name,
        "tier": t.tier,
        "region": t.region,
        "compliance_classification": t.compliance_classification,
        "business_owner": t.business_owner,
        "contacts": list(t.contacts or []),
    }


def _in_flight(
    keys: list[str], outbox: Outbox, now: datetime, length: timedelta
) -> datetime | None:
    """When the step's messages another sweep is still delivering stop being its
    (their creation plus the claim); None when none is ``pending`` within that."""
    until = None
    for key in keys:
        queued = outbox(key)
        if queued is None or not queued.pending:
            continue
        lapses = as_utc(queued.created_at) + length
        if now < lapses:
            until = lapses if until is None else max(until, lapses)
    return until


def _plan(
    session: Session,
    page: Page,
    now: datetime,
    *,
    delivery: timedelta = timedelta(0),
    outbox: Outbox | None = None,
) -> Step | None:
    """Take ``page``'s next step; None if another sweep has it or is still sending it."""
    doc = service.document_of(session, page.config_version)
    policy = doc.policies.get(page.policy) or doc.policies[doc.default]
    step = next_step(policy, page.level, page.round)
    level, round_ = step if step is not None else (len(policy.levels) - 1, page.round)
    recipients, roles = _recipients(doc, policy.levels[level].targets, now)
    where = "exhausted" if step is None else f"{round_}/{level}"
    keys = [k for _, k in message_keys(page.id, where=where, recipients=recipients, roles=roles)]
    length = claim_length(delivery, len(keys))
    if outbox is not None:
        until = _in_flight(keys, outbox, now, length)
        if until is not None:
            log.info("page still being sent by another sweep", page_id=page.id, until=until)
            repository.defer(session, page, version=page.version, next_at=until)
            return None
    if not repository.take(session, page, version=page.version, next_at=now + length, now=now):
        return None
    return Step(
        page_id=page.id,
        version=page.version + 1,
        key=page.key,
        summary=page.summary,
        severity=page.severity,
        policy=page.policy,
        tenant_id=page.tenant_id,
        tenant=_snapshot(session, page.tenant_id),
        level=level,
        round=round_,
        levels=len(policy.levels),
        repeat=policy.repeat,
        exhausted=step is None,
        first=page.level == service.NOT_YET,
        wait=policy.levels[level].wait,
        recipients=recipients,
        roles=roles,
    )


def claim(
    session: Session,
    now: datetime,
    limit: int = BATCH,
    *,
    delivery: timedelta = timedelta(0),
    outbox: Outbox | None = None,
) -> list[Step]:
    """Take up to ``limit`` due pages' next steps (see the module's part 1).

    A page another sweep is still sending is passed over (its ``next_at`` moves
    past that sweep's claim) and the next due page is looked at.
    """
    steps: list[Step] = []
    seen: set[str] = set()
    while len(steps) < limit:
        pages = [p for p in repository.due(session, now, limit - len(steps)) if p.id not in seen]
        if not pages:
            break
        for page in pages:
            seen.add(page.id)
            planned = _plan(session, page, now, delivery=delivery, outbox=outbox)
            if planned is not None:
                steps.append(planned)
    return steps


def _minutes(wait: timedelta) -> str:
    seconds = int(wait.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _variables(step: Step) -> dict[str, Any]:
    return {
        "summary": step.summary,
        "severity": step.severity,
        "key": step.key,
        "page_id": step.page_id,
        "policy": step.policy,
        "level": step.level + 1,
        "levels": step.levels,
        "round": step.round,
        "rounds": step.repeat + 1,
        "exhausted": step.exhausted,
        "last": step.round == step.repeat and step.level == step.levels - 1,
        "after": _minutes(step.wait),
        "ack_command": f"tenantops oncall ack {step.page_id}",
        "ack_path": f"/api/v1/oncall/pages/{step.page_id}/acknowledge",
        "resolve_command": f"tenantops oncall resolve {step.page_id}",
    }


@dataclass
class Told:
    """What the sends of one step did: who has the message, which parts failed and why."""

    to: list[str]
    failures: list[str]


def send_step(step: Step, send: Action) -> Told:
    """Tell the step's targets, one message per part, each with its idempotency key."""
    where = "exhausted" if step.exhausted else f"{step.round}/{step.level}"
    told = Told(to=[], failures=[])
    for part, key in message_keys(
        step.page_id, where=where, recipients=step.recipients, roles=step.roles
    ):
        to: object = list(step.recipients) if part == "direct" else part
        ctx = ActionContext(
            run_id=step.page_id,
            step_name="oncall-page",
            tenant_id=step.tenant_id,
            params={"template": TEMPLATE, "to": to, "vars": _variables(step)},
            idempotency_key=key,
            attempt=1,
            actor=service.ESCALATOR.subject,
            inputs={"tenant": step.tenant} if step.tenant is not None else {},
        )
        try:
            result = send.run(ctx)
        except Exception as exc:  # a notifier outage must not stop the escalation
            log.warning("page not delivered", page_id=step.page_id, part=part, error=str(exc))
            told.failures.append(f"{part}: {exc}")
            continue
        told.to += [str(a) for a in result.evidence.get("to", []) if str(a) not in told.to]
    return told


def record(session: Session, step: Step, told: Told, now: datetime) -> None:
    """Write what a step did; move the page on unless someone answered meanwhile."""
    page = repository.by_id(session, step.page_id, for_update=True)
    if page is None:  # pragma: no cover - pages are never deleted
        return
    if told.failures:
        service.record_change(
            session,
            page,
            event="notify_failed",
            actor=service.ESCALATOR,
            level=step.level,
            detail="; ".join(told.failures)[:2000],
        )
    still_ours = page.version == step.version and page.status == service.TRIGGERED
    if not still_ours:
        if told.to:  # answered while the messages went out: the timeline says who has one
            service.record_change(
                session,
                page,
                event="told",
                actor=service.ESCALATOR,
                level=step.level,
                targets=told.to,
                detail="sent while the page was being answered",
            )
        return
    before = {"level": page.level, "round": page.round}
    page.version += 1
    page.updated_at = now
    if step.exhausted:
        page.next_at = None
        event = "exhausted"
    else:
        page.level, page.round = step.level, step.round
        page.next_at = now + step.wait
        event = "notified" if step.first else "escalated"
    service.record_change(
        session,
        page,
        event=event,
        actor=service.ESCALATOR,
        level=step.level,
        targets=told.to,
        detail=None if page.next_at is None else f"next due {as_utc(page.next_at).isoformat()}",
        changes={
            "escalation": {"before": before, "after": {"level": page.level, "round": page.round}}
        },
    )


def escalate_due(
    db: Database,
    send: Action,
    *,
    outbox: Outbox,
    delivery: timedelta = timedelta(0),
    clock: Callable[[], datetime] = utcnow,
    limit: int = BATCH,
    stopping: Callable[[], bool] = lambda: False,
) -> int:
    """One sweep: claim a due page's step, tell its targets, record it, and on to the
    next due page (at most ``limit``); how many steps were taken.

    One page per claim, each take and each record at ``clock()`` read then: a
    claim need only outlast one page's messages (``delivery`` at worst each, see
    ``claim_length``), never a whole batch's, and a page's next level is due its
    wait after it was recorded, not after the sweep began. ``outbox`` tells
    what the notification outbox holds under a key, so a message another sweep
    is still delivering is not delivered again. The sweep ends before its next
    claim once ``stopping()`` says the worker is stopping: a page not yet
    claimed waits for the next worker, not for a claim to lapse.
    """
    taken = 0
    while taken < limit and not stopping():
        with db.write() as session:
            steps = claim(session, clock(), 1, delivery=delivery, outbox=outbox)
        if not steps:
            break
        for step in steps:
            told = send_step(step, send)
            with db.write() as session:
                record(session, step, told, clock())
        taken += len(steps)
    return taken
