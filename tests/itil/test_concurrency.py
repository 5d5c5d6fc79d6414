"""Opening records from many threads at once, on real PostgreSQL (and SQLite): every record
gets its own number, no gaps, no error; one correlation id opened by many is one record."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from tenantops.audit import service as audit
from tenantops.db import Database
from tenantops.itil import service
from tenantops.itil.models import ItilRecord
from tenantops.itil.states import Kind
from tests.itil.helpers import OPS

THREADS = 8
EACH = 3


def _run(db: Database, work: list[tuple[Kind, str | None]]) -> list[BaseException]:
    barrier = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def open_one(kind: Kind, key: str | None) -> None:
        try:
            barrier.wait()
            with db.write() as session:
                service.open_record(
                    session,
                    kind=kind,
                    title="concurrent",
                    description="",
                    priority=3,
                    actor=OPS,
                    correlation_id=key,
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=w) for w in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.usefixtures("clock")
def test_concurrent_opens_take_consecutive_numbers_per_kind(db: Database) -> None:
    for _ in range(EACH):
        work: list[tuple[Kind, str | None]] = [
            (Kind.INCIDENT if n % 2 else Kind.CHANGE, None) for n in range(THREADS)
        ]
        assert _run(db, work) == []
    with db.read() as session:
        rows = session.execute(select(ItilRecord.kind, ItilRecord.seq, ItilRecord.number)).all()
        assert audit.verify(session).ok
    for kind, prefix in ((Kind.INCIDENT, "INC"), (Kind.CHANGE, "CHG")):
        seqs = sorted(seq for k, seq, _ in rows if k == kind.value)
        assert seqs == list(range(1, THREADS // 2 * EACH + 1))
        assert {n for k, _, n in rows if k == kind.value} == {f"{prefix}{s:07d}" for s in seqs}


@pytest.mark.usefixtures("clock")
def test_one_correlation_id_opened_by_many_at_once_is_one_record(db: Database) -> None:
    assert _run(db, [(Kind.INCIDENT, "run-1/incident")] * THREADS) == []
    with db.read() as session:
        rows = session.scalars(select(ItilRecord)).all()
        assert [r.number for r in rows] == ["INC0000001"]
