"""``record_many`` appends the chain ``record`` would, and is fail-closed like it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.errors import AuditUnavailable
from tenantops.runbooks import engine
from tenantops.runbooks.models import Run
from tenantops.runbooks.spec import parse
from tests.audit.helpers import count, entries, failing_audit, head
from tests.conftest import wipe

Freeze = Callable[[datetime], None]
T0 = datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
AMY = Principal("amy", frozenset({Role.OPS_ENGINEER, Role.GOVERNANCE}))
SYSTEM = Principal("system:engine", via="system")

NEW = [
    audit.NewEntry(actor=AMY, action="a.one", tenant_id=None, changes={}, detail={"n": 1}),
    audit.NewEntry(
        actor=SYSTEM,
        action="a.two",
        tenant_id="t-1",
        changes={"state": {"before": "x", "after": "y"}},
    ),
    audit.NewEntry(actor=AMY, action="a.three", tenant_id=None, changes={}, detail={"at": T0}),
]


def content(db: Database) -> list[tuple[Any, ...]]:
    """What each entry says, without its random id and the hashes that cover it."""
    return [
        (e.seq, e.at, e.actor, e.actor_roles, e.action, e.tenant_id, e.changes, e.detail)
        for e in entries(db)
    ]


def test_record_many_writes_what_repeated_record_writes(db: Database, fake_clock: Freeze) -> None:
    fake_clock(T0)
    with db.write() as s:
        audit.record(s, actor=AMY, action="before", tenant_id=None, changes={})
    with db.write() as s:
        for new in NEW:
            audit.record(
                s,
                actor=new.actor,
                action=new.action,
                tenant_id=new.tenant_id,
                changes=new.changes,
                detail=new.detail,
            )
    one_by_one = content(db)

    wipe(db)
    with db.write() as s:
        audit.record(s, actor=AMY, action="before", tenant_id=None, changes={})
    with db.write() as s:
        audit.record_many(s, NEW)
    assert content(db) == one_by_one
    with audit.snapshot(db) as s:
        assert audit.verify(s) == audit.VerifyResult(True, 4)


def test_record_and_record_many_share_one_chain_in_one_transaction(db: Database) -> None:
    with db.write() as s:
        audit.record(s, actor=AMY, action="first", tenant_id=None, changes={})
        audit.record_many(s, NEW)
        audit.record(s, actor=AMY, action="last", tenant_id=None, changes={})
        audit.record_many(s, [])
    trail = entries(db)
    assert [e.action for e in trail] == ["first", "a.one", "a.two", "a.three", "last"]
    assert [e.prev_hash for e in trail[1:]] == [e.hash for e in trail[:-1]]
    assert head(db) == (5, trail[-1].hash)
    with audit.snapshot(db) as s:
        assert audit.verify(s).ok


def test_a_refused_batch_rolls_back_the_change_it_records(db: Database) -> None:
    loaded = parse(
        "id: t\nversion: '1.0'\ntitle: T\ntenant: false\nsteps:\n  - {name: a, action: noop}\n"
    )
    before = count(db), head(db)

    def start_and_record() -> None:
        with db.write() as s:
            engine.start_run(s, loaded=loaded, actor=AMY, audited=False)
            audit.record_many(s, NEW)

    with failing_audit(db), pytest.raises(AuditUnavailable):
        start_and_record()
    assert (count(db), head(db)) == before
    with db.read() as s:
        assert s.execute(select(func.count()).select_from(Run)).scalar_one() == 0
