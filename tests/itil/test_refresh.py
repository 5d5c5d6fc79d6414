"""Mirror rows follow their ServiceNow tickets at each refresh turn, though no runbook
step touches them (ServiceNow's recorded exchanges replayed locally; both stores)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from structlog.testing import capture_logs

from tenantops.audit import service as audit
from tenantops.auth.principal import SYSTEM
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.itsm.database import MirroredItsm
from tenantops.drivers.itsm.port import Ticket, TicketKind
from tenantops.drivers.itsm.servicenow import ServiceNowItsm
from tenantops.itil import mirror, refresh, service
from tenantops.itil.models import ItilRecord
from tenantops.itil.states import Kind
from tests.conftest import Clock
from tests.drivers.test_argocd import Replay, Seen, replay, request_problems  # noqa: F401
from tests.drivers.test_itsm import PASSWORD, SYS_ID, ex, open_incident, settings
from tests.itil.helpers import OPS, make_tenant

pytestmark = pytest.mark.usefixtures("clock")

SYSTEM_NAME = "servicenow"
EVERY = timedelta(minutes=5)
AGAIN = refresh.again_after(EVERY, timedelta(seconds=15))
WAIT = 10.0  # a generous bound for a thread, never an assertion on timing


def sys_id(n: int) -> str:
    return f"{n:032x}"


def answered(exchange: dict[str, Any], ticket: str, **result: str) -> dict[str, Any]:
    """A recorded exchange of ticket ``SYS_ID``, for ticket ``ticket`` (and ``result``)."""
    made = copy.deepcopy(exchange)
    made["request"]["path"] = made["request"]["path"].replace(SYS_ID, ticket)
    body = made["response"]["body"]
    if isinstance(body, dict) and isinstance(body.get("result"), dict):
        body["result"].update(sys_id=ticket, **result)
    return made


def got(ticket: str, state: str, version: int = 1) -> dict[str, Any]:
    """``GET`` of one incident, answered with ``state`` at ``sys_mod_count`` ``version``."""
    return answered(ex("get_incident"), ticket, state=state, sys_mod_count=str(version))


def unstamped(exchange: dict[str, Any]) -> dict[str, Any]:
    """``exchange`` answered without ``sys_mod_count`` (a field ACL hides it)."""
    made = copy.deepcopy(exchange)
    del made["response"]["body"]["result"]["sys_mod_count"]
    return made


def not_found(ticket: str) -> dict[str, Any]:
    return answered(ex("not_found"), ticket)


def unavailable(ticket: str) -> dict[str, Any]:
    """The instance's recorded 503 (an upgrade), on the ``GET`` of one incident."""
    made = copy.deepcopy(ex("unavailable"))
    made["request"] = got(ticket, "1")["request"]
    return made


@pytest.fixture
def itsm(replay: Replay, db: Database) -> Iterator[MirroredItsm]:  # noqa: F811
    make_tenant(db, "acme")
    mirrored = MirroredItsm(ServiceNowItsm(settings(replay.url)), db, system=SYSTEM_NAME)
    yield mirrored
    mirrored.close()


def mirror_row(db: Database, n: int, state: str = "1", version: int | None = None) -> str:
    """The mirror row of incident ``sys_id(n)`` as a runbook step leaves it (the answer
    stamped ``version``); its id."""
    with db.write() as session:
        return mirror.mirror(
            session,
            actor=SYSTEM,
            kind=Kind.INCIDENT,
            system=SYSTEM_NAME,
            external_id=sys_id(n),
            external_number=f"INC{10000 + n:07d}",
            link="",
            state=state,
            tenant="acme",
            title=f"ticket {n}",
            version=version,
        ).id


def turn(
    db: Database,
    itsm: MirroredItsm,
    *,
    limit: int = refresh.BATCH,
    stopping: Callable[[], bool] = lambda: False,
) -> refresh.Turn:
    return refresh.refresh_mirrors(
        db, itsm.state_of, system=SYSTEM_NAME, again_after=AGAIN, limit=limit, stopping=stopping
    )


def state_and_notes(db: Database, record_id: str) -> tuple[str, list[str]]:
    with db.read() as session:
        record = service.get(session, principal=OPS, ref=record_id)
        return record.state, [f"{n.author}: {n.text}" for n in service.timeline(session, record)]


def asked(replay: Replay) -> list[str]:  # noqa: F811
    """The tickets asked for, in order (the last part of each path)."""
    return [seen.path.rsplit("/", 1)[-1] for seen in replay.seen if seen.method == "GET"]


def test_a_ticket_resolved_in_servicenow_is_resolved_here_at_the_next_turn_then_closed_and_left(
    db: Database,
    itsm: MirroredItsm,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    replay.script(ex("lookup_incident_none"), ex("create_incident"))
    ticket = open_incident(itsm)
    with db.read() as session:
        ((row,), _) = service.list_records(session, principal=OPS, tenant="acme")
        record_id = row.id
    assert state_and_notes(db, record_id)[0] == "new"

    # Someone resolves it in ServiceNow; no runbook step touches it again.
    clock.advance(EVERY)
    replay.script(got(ticket.id, "6"))
    assert turn(db, itsm) == refresh.Turn(asked=1, moved=1)
    state, notes = state_and_notes(db, record_id)
    assert state == "resolved"
    assert notes[-1] == "system:itsm-refresh: new -> resolved (in servicenow)"
    with db.read() as session:
        assert service.get(session, principal=OPS, ref=record_id).resolved_at == clock.now
        assert audit.verify(session).ok

    # Resolved is not the end there: the next turn asks again, and sees it closed.
    clock.advance(EVERY)
    replay.script(got(ticket.id, "7"))
    assert turn(db, itsm).moved == 1
    assert state_and_notes(db, record_id)[0] == "closed"

    # A closed ticket is not asked for again, however many turns go by.
    for _ in range(3):
        clock.advance(EVERY)
        assert turn(db, itsm) == refresh.Turn()
    assert asked(replay)[-2:] == [ticket.id, ticket.id]
    replay.assert_done()


def test_a_ticket_the_step_mirrored_lately_waits_and_an_unchanged_one_writes_nothing(
    db: Database,
    itsm: MirroredItsm,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    record_id = mirror_row(db, 1, state="2")
    clock.advance(AGAIN / 2)
    assert turn(db, itsm) == refresh.Turn()  # just mirrored by its step: not due yet
    clock.advance(EVERY)
    replay.script(got(sys_id(1), "2"))
    assert turn(db, itsm) == refresh.Turn(asked=1)
    assert state_and_notes(db, record_id) == (
        "in_progress",
        ["system:tenantops: new -> in_progress (in servicenow)"],
    )
    replay.assert_done()


def test_an_outage_changes_no_row_and_the_next_turn_catches_up_with_the_failed_one_last(
    db: Database,
    itsm: MirroredItsm,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    rows = []
    for n in (1, 2, 3):
        rows.append(mirror_row(db, n))
        clock.advance(minutes=1)
    before = [state_and_notes(db, r) for r in rows]
    clock.advance(EVERY)
    replay.script(unavailable(sys_id(1)))
    with capture_logs() as logs:
        done = turn(db, itsm)
    assert (done.asked, done.moved) == (0, 0)
    assert done.error is not None
    assert "HTTP 503" in done.error
    assert [state_and_notes(db, r) for r in rows] == before
    assert [entry["event"] for entry in logs] == [
        "mirror refresh ends for this turn: the tool did not answer"
    ]
    assert PASSWORD not in repr(logs)

    clock.advance(EVERY)
    replay.script(got(sys_id(2), "2"), got(sys_id(3), "6"), got(sys_id(1), "2"))
    assert turn(db, itsm) == refresh.Turn(asked=3, moved=3)
    assert asked(replay) == [sys_id(1), sys_id(2), sys_id(3), sys_id(1)]
    assert [state_and_notes(db, r)[0] for r in rows] == ["in_progress", "in_progress", "resolved"]
    replay.assert_done()


def test_turns_ask_a_bounded_batch_oldest_refreshed_first_and_stop_between_tickets(
    db: Database,
    itsm: MirroredItsm,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    for n in range(1, 6):
        mirror_row(db, n)
        clock.advance(minutes=1)
    mirror_row(db, 1, state="2")  # a runbook step mirrored ticket 1 again: it was just seen

    def turns(*batches: tuple[int, ...], stop_after: int | None = None) -> None:
        for tickets in batches:
            clock.advance(EVERY)
            replay.script(*(got(sys_id(n), "2") for n in tickets))
            # The limit alone ends a turn, unless the worker is to stop after some tickets.
            stop = None if stop_after is None else len(replay.seen) + stop_after
            done = turn(
                db,
                itsm,
                limit=2,
                stopping=lambda stop=stop: stop is not None and len(replay.seen) >= stop,
            )
            assert done.asked == len(tickets)
            replay.assert_done()

    turns((2, 3), (4, 5))
    # The worker stops after ticket 1: ticket 2, next in line, is neither claimed nor asked...
    turns((1,), stop_after=1)
    # ... and comes first at the next turn; every ticket had its turn, ordered by when it
    # was last seen.
    turns((2, 3), (4, 5), (1, 2))
    assert asked(replay) == [sys_id(n) for n in (2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2)]


def test_a_ticket_gone_from_servicenow_is_noted_once_and_keeps_its_state(
    db: Database,
    itsm: MirroredItsm,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    gone = mirror_row(db, 1, state="2")
    clock.advance(minutes=1)
    other = mirror_row(db, 2)
    for first in (True, False):
        clock.advance(EVERY)
        replay.script(not_found(sys_id(1)), got(sys_id(2), "2"))
        with capture_logs() as logs:
            turn(db, itsm)
        replay.assert_done()
        warnings = [entry["event"] for entry in logs if entry["log_level"] == "warning"]
        if first:
            assert warnings == ["mirrored ticket not found; its row keeps its last state"]
        else:
            assert warnings == []
    state, notes = state_and_notes(db, gone)
    assert state == "in_progress"
    assert [n for n in notes if "has no ticket" in n] == [
        f"system:itsm-refresh: servicenow has no ticket {sys_id(1)} (any more); "
        "the state here is the last one servicenow reported"
    ]
    assert state_and_notes(db, other)[0] == "in_progress"  # the turn went on past it


def test_a_runbook_step_that_mirrors_the_ticket_during_the_ask_has_the_last_word(
    db: Database,
    itsm: MirroredItsm,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    record_id = mirror_row(db, 1, version=0)
    clock.advance(EVERY)
    replay.script(got(sys_id(1), "2", version=1))

    def look_while_a_step_resolves_it(kind: Kind, external_id: str) -> mirror.Answer | None:
        answer = itsm.state_of(kind, external_id)  # in progress, when it was asked
        clock.advance(seconds=1)
        mirror_row(db, 1, state="6", version=2)  # the step's update: resolved, a moment later
        return answer

    done = refresh.refresh_mirrors(
        db, look_while_a_step_resolves_it, system=SYSTEM_NAME, again_after=AGAIN
    )
    assert (done.asked, done.moved) == (1, 0)
    state, notes = state_and_notes(db, record_id)
    assert state == "resolved"
    assert [n for n in notes if "->" in n] == ["system:tenantops: new -> resolved (in servicenow)"]
    replay.assert_done()


def answer_in_any_order(replay: Replay) -> None:  # noqa: F811
    """Let ``replay`` answer each request with the first scripted exchange it fits: two
    refreshers' requests interleave in no set order."""

    def answer(seen: Seen) -> dict[str, Any]:
        with replay.lock:
            replay.seen.append(seen)
            for exchange in list(replay.queue):
                if not request_problems(exchange["request"], seen):
                    replay.queue.remove(exchange)
                    response: dict[str, Any] = exchange["response"]
                    return response
            replay.problems.append(f"unexpected {seen.method} {seen.path}")
            return {"status": 400, "headers": {}, "body": {"error": "not scripted"}}

    replay.answer = answer  # type: ignore[method-assign]


def test_two_refreshers_at_once_ask_for_each_ticket_once(
    db: Database,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    make_tenant(db, "acme")
    rows = [mirror_row(db, n) for n in range(1, 13)]
    clock.advance(EVERY)
    answer_in_any_order(replay)
    replay.script(*(got(sys_id(n), "6") for n in range(1, 13)))
    clients = [
        MirroredItsm(ServiceNowItsm(settings(replay.url)), db, system=SYSTEM_NAME) for _ in range(2)
    ]
    barrier = threading.Barrier(len(clients))
    turns: list[refresh.Turn] = []
    errors: list[BaseException] = []

    def refresher(client: MirroredItsm) -> None:
        try:
            barrier.wait()
            turns.append(turn(db, client))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=refresher, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    assert errors == []
    assert sorted(asked(replay)) == [sys_id(n) for n in range(1, 13)]
    assert sum(t.asked for t in turns) == sum(t.moved for t in turns) == 12
    replay.assert_done()
    for record_id in rows:
        state, notes = state_and_notes(db, record_id)
        assert state == "resolved"
        assert len([n for n in notes if "-> resolved" in n]) == 1
    with db.read() as session:
        assert audit.verify(session).ok


def due_order(db: Database, rows: list[str]) -> list[int]:
    """The tickets of ``rows`` (``sys_id(index + 1)``) in the order a turn takes them:
    never asked first, then oldest ``refreshed_at``, ties by id."""
    with db.read() as session:
        query = select(ItilRecord.id, ItilRecord.refreshed_at).where(ItilRecord.id.in_(rows))
        found = {row.id: row.refreshed_at for row in session.execute(query)}
    key = {
        record_id: (found[record_id] is not None, found[record_id] or 0, record_id)
        for record_id in rows
    }
    return [rows.index(record_id) + 1 for record_id in sorted(rows, key=lambda r: key[r])]


def test_a_claim_lost_to_another_refresher_uses_no_slot_and_the_next_page_is_read(
    db: Database,
    itsm: MirroredItsm,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    # Ten open rows mirrored at one instant (ties, ordered by id); six of them from before
    # the refresh existed, never asked (NULL first: the keyset crosses from NULL to stamped).
    rows = [mirror_row(db, n) for n in range(1, 11)]
    with db.write() as session:
        session.execute(
            update(ItilRecord).where(ItilRecord.id.in_(rows[:6])).values(refreshed_at=None)
        )
    order = due_order(db, rows)
    clock.advance(EVERY)
    other = MirroredItsm(ServiceNowItsm(settings(replay.url)), db, system=SYSTEM_NAME)
    theirs: list[refresh.Turn] = []

    def look_while_another_worker_takes_its_turn(kind: Kind, external_id: str) -> str | None:
        if not theirs:  # this refresher read the first page and holds its first row; the
            theirs.append(turn(db, other, limit=4))  # other takes the next four meanwhile
        return itsm.state_of(kind, external_id)

    first, rest = order[0], order[1:]
    # The other worker asks for 2..5 of the order, this one for 1, loses 2..4, and reads on
    # past them: 6..8, four claims won as the other won four.
    replay.script(*(got(sys_id(n), "2") for n in [*rest[:4], first, *rest[4:7]]))
    ours = refresh.refresh_mirrors(
        db,
        look_while_another_worker_takes_its_turn,
        system=SYSTEM_NAME,
        again_after=AGAIN,
        limit=4,
    )
    other.close()
    assert theirs == [refresh.Turn(asked=4, moved=4)]
    assert ours == refresh.Turn(asked=4, moved=4)
    replay.assert_done()
    assert asked(replay) == [sys_id(n) for n in [*rest[:4], first, *rest[4:7]]]
    states = {n: state_and_notes(db, rows[n - 1])[0] for n in order}
    assert [n for n in order if states[n] == "in_progress"] == order[:8]
    assert [states[n] for n in order[8:]] == ["new", "new"]  # for the next turn


def test_two_refreshers_each_ask_for_a_full_turn_when_there_are_more_rows_than_a_turn(
    db: Database,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    make_tenant(db, "acme")
    for n in range(1, 13):
        mirror_row(db, n)
    clock.advance(EVERY)
    answer_in_any_order(replay)
    replay.script(*(got(sys_id(n), "6") for n in range(1, 13)))
    clients = [
        MirroredItsm(ServiceNowItsm(settings(replay.url)), db, system=SYSTEM_NAME) for _ in range(2)
    ]
    barrier = threading.Barrier(len(clients))
    turns: list[refresh.Turn] = []
    errors: list[BaseException] = []

    def refresher(client: MirroredItsm) -> None:
        try:
            barrier.wait()  # both read the same first page of due rows
            turns.append(turn(db, client, limit=5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=refresher, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    assert errors == []
    assert [t.asked for t in turns] == [5, 5]  # a claim lost to the other used no slot
    assert replay.problems == []
    assert len(set(asked(replay))) == len(asked(replay)) == 10  # each ticket asked once
    assert len(replay.queue) == 2  # two rows left for the next turn


class RefreshMeanwhile:
    """The ServiceNow adapter of a runbook step whose mirror write comes late: ``meanwhile``
    runs after the tool answered the step's request and before its mirror transaction."""

    def __init__(self, inner: ServiceNowItsm, meanwhile: Callable[[], None]) -> None:
        self.inner = inner
        self.meanwhile = meanwhile

    def update(self, ticket: Ticket, **kwargs: Any) -> Ticket:
        updated = self.inner.update(ticket, **kwargs)
        self.meanwhile()
        return updated

    def close(self) -> None:
        self.inner.close()


def patched(ticket: str, state: str, version: int) -> dict[str, Any]:
    """A step's ``PATCH`` of one incident to ``state``, answered with it at ``sys_mod_count``
    ``version``."""
    made = answered(
        ex("update_incident_state_only"), ticket, state=state, sys_mod_count=str(version)
    )
    made["request"]["body"] = {"state": state}
    return made


def step_update(itsm: MirroredItsm, n: int, state: str) -> Ticket:
    ticket = Ticket(TicketKind.INCIDENT, sys_id(n), f"INC{10000 + n:07d}", "1", "acme", "")
    return itsm.update(ticket, idempotency_key="run-7f3a/step-5", state=state)


def test_a_step_answer_older_than_the_refresh_does_not_reopen_the_ticket(
    db: Database,
    itsm: MirroredItsm,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    record_id = mirror_row(db, 1, state="2", version=1)
    clock.advance(EVERY)

    def person_resolves_it_and_the_refresh_sees_it() -> None:
        clock.advance(seconds=1)
        replay.script(got(sys_id(1), "6", version=3))
        assert turn(db, itsm) == refresh.Turn(asked=1, moved=1)

    step = MirroredItsm(
        RefreshMeanwhile(
            ServiceNowItsm(settings(replay.url)), person_resolves_it_and_the_refresh_sees_it
        ),
        db,
        system=SYSTEM_NAME,
    )
    replay.script(patched(sys_id(1), "2", version=2))
    try:
        assert step_update(step, 1, "2").state == "2"  # the tool told the step: in progress
    finally:
        step.close()
    replay.assert_done()
    state, notes = state_and_notes(db, record_id)
    assert state == "resolved"  # not moved back by the step's older answer
    assert [n for n in notes if "->" in n] == [
        "system:tenantops: new -> in_progress (in servicenow)",
        "system:itsm-refresh: in_progress -> resolved (in servicenow)",
    ]
    with db.read() as session:
        assert audit.verify(session).ok


def test_a_step_request_sent_after_the_refresh_asked_has_the_last_word_though_it_lands_last(
    db: Database,
    itsm: MirroredItsm,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    record_id = mirror_row(db, 1, version=0)
    clock.advance(EVERY)
    sent, recorded = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def wait_for_the_refresh_to_record() -> None:
        sent.set()
        recorded.wait(WAIT)

    step = MirroredItsm(
        RefreshMeanwhile(ServiceNowItsm(settings(replay.url)), wait_for_the_refresh_to_record),
        db,
        system=SYSTEM_NAME,
    )

    def step_resolves() -> None:
        try:
            step_update(step, 1, "6")
        except BaseException as exc:
            errors.append(exc)

    resolving = threading.Thread(target=step_resolves)

    def look_then_a_step_resolves_it(kind: Kind, external_id: str) -> mirror.Answer | None:
        answer = itsm.state_of(kind, external_id)  # in progress, when it was asked
        clock.advance(seconds=1)
        resolving.start()  # the step's request goes out after the refresh's
        assert sent.wait(WAIT)
        clock.advance(seconds=1)  # ... and the refresh records before the step does
        return answer

    replay.script(got(sys_id(1), "2", version=1), patched(sys_id(1), "6", version=2))
    done = refresh.refresh_mirrors(
        db, look_then_a_step_resolves_it, system=SYSTEM_NAME, again_after=AGAIN
    )
    recorded.set()
    resolving.join(WAIT)
    step.close()
    assert errors == []
    assert done == refresh.Turn(asked=1, moved=1)
    replay.assert_done()
    state, notes = state_and_notes(db, record_id)
    assert state == "resolved"  # the step's answer is the newer one
    assert [n for n in notes if "->" in n] == [
        "system:itsm-refresh: new -> in_progress (in servicenow)",
        "system:tenantops: in_progress -> resolved (in servicenow)",
    ]


class InFlight:
    """The ServiceNow adapter of a runbook step whose request is slow to apply: ``meanwhile``
    runs after the step sent its request and before the tool answers it."""

    def __init__(self, inner: ServiceNowItsm, meanwhile: Callable[[], None]) -> None:
        self.inner = inner
        self.meanwhile = meanwhile

    def update(self, ticket: Ticket, **kwargs: Any) -> Ticket:
        self.meanwhile()
        return self.inner.update(ticket, **kwargs)

    def close(self) -> None:
        self.inner.close()


def test_a_step_resolve_in_flight_while_the_refresh_reads_the_older_state_is_applied(
    db: Database,
    itsm: MirroredItsm,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    """A step's resolve (PATCH) is sent; a refresh claims the row later and its GET is
    answered before the PATCH applies ("in progress"), then the PATCH answers "resolved".
    The step's request went out first, yet its answer is the newer one: the tool's
    version stamp says so, and the row ends resolved (not "in progress" till the next
    turn, with on-call paged for a resolved incident meanwhile)."""
    record_id = mirror_row(db, 1, version=0)
    clock.advance(EVERY)

    def the_refresh_reads_it_before_the_patch_applies() -> None:
        clock.advance(seconds=1)  # the claim is later than the step's request
        assert turn(db, itsm) == refresh.Turn(asked=1, moved=1)

    step = MirroredItsm(
        InFlight(
            ServiceNowItsm(settings(replay.url)), the_refresh_reads_it_before_the_patch_applies
        ),
        db,
        system=SYSTEM_NAME,
    )
    replay.script(got(sys_id(1), "2", version=1), patched(sys_id(1), "6", version=2))
    try:
        assert step_update(step, 1, "6").state == "6"
    finally:
        step.close()
    replay.assert_done()
    state, notes = state_and_notes(db, record_id)
    assert state == "resolved"
    assert [n for n in notes if "->" in n] == [
        "system:itsm-refresh: new -> in_progress (in servicenow)",
        "system:tenantops: in_progress -> resolved (in servicenow)",
    ]
    with db.read() as session:
        assert audit.verify(session).ok


def test_answers_without_a_version_stamp_still_mirror(
    db: Database,
    itsm: MirroredItsm,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    """An instance whose field ACL hides ``sys_mod_count`` (or a row mirrored before the
    stamp was kept): no order is known, so every answer is applied, as they were."""
    record_id = mirror_row(db, 1, version=1)
    clock.advance(EVERY)
    replay.script(unstamped(got(sys_id(1), "2")))
    assert turn(db, itsm) == refresh.Turn(asked=1, moved=1)
    assert state_and_notes(db, record_id)[0] == "in_progress"

    replay.script(unstamped(patched(sys_id(1), "6", version=2)))
    assert step_update(itsm, 1, "6").version is None
    replay.assert_done()
    state, notes = state_and_notes(db, record_id)
    assert state == "resolved"
    assert [n for n in notes if "->" in n] == [
        "system:itsm-refresh: new -> in_progress (in servicenow)",
        "system:tenantops: in_progress -> resolved (in servicenow)",
    ]
    other = mirror_row(db, 2, state="2")  # a first answer without a stamp opens the row
    assert state_and_notes(db, other)[0] == "in_progress"


def test_the_interval_is_a_servicenow_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTOPS_SERVICENOW__USERNAME", "u")
    monkeypatch.setenv("TENANTOPS_SERVICENOW__REFRESH_SECONDS", "60")
    snow = Settings(data_dir=tmp_path).servicenow
    assert snow is not None
    assert snow.refresh_seconds == 60
    assert refresh.again_after(timedelta(seconds=60), timedelta(seconds=15)) == timedelta(
        seconds=30
    )
    # However short the interval, a claim outlasts one request.
    assert refresh.again_after(timedelta(seconds=10), timedelta(seconds=15)) == timedelta(
        seconds=30
    )
