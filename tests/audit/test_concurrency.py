"""Concurrent writers keep one unbroken chain: the head row lock serialises appends."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from tenantops.audit import service as audit
from tenantops.auth import tokens
from tenantops.auth.models import ApiToken
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tests.audit.helpers import entries, head

WORKERS = 8
WRITES = 20


def test_concurrent_audited_writes_leave_a_valid_contiguous_chain(db: Database) -> None:
    start = threading.Barrier(WORKERS)

    def work(worker: int) -> None:
        actor = Principal(f"worker-{worker}", frozenset({Role.ADMIN}))
        start.wait()
        for n in range(WRITES):
            with db.write() as session:
                if n % 4 == 0:
                    # A real domain write with its entry …
                    tokens.create_token(
                        session,
                        actor=actor,
                        subject=f"bot-{worker}-{n}",
                        roles=[Role.QA],
                        tenant_id=None,
                        ttl=None,
                    )
                else:
                    # … or two entries in one transaction.
                    for part in ("a", "b"):
                        audit.record(
                            session,
                            actor=actor,
                            action=f"test.write.{part}",
                            tenant_id=None,
                            changes={"n": {"before": n, "after": n + 1}},
                            detail={"worker": worker, "n": n},
                        )

    with ThreadPoolExecutor(WORKERS) as pool:
        for future in [pool.submit(work, w) for w in range(WORKERS)]:
            future.result()  # re-raises a worker's failure, e.g. AuditUnavailable

    per_worker = WRITES // 4 + 2 * (WRITES - WRITES // 4)
    total = WORKERS * per_worker
    rows = entries(db)
    assert [e.seq for e in rows] == list(range(1, total + 1))
    assert all(e.prev_hash == p.hash for p, e in itertools.pairwise(rows))
    assert head(db) == (total, rows[-1].hash)
    assert Counter(e.actor for e in rows) == {f"worker-{w}": per_worker for w in range(WORKERS)}
    # The two entries of one transaction are adjacent: nobody appended in between.
    for first, second in itertools.pairwise(rows):
        if first.action == "test.write.a":
            assert second.action == "test.write.b"
            assert second.detail == first.detail
    with audit.snapshot(db) as session:
        assert audit.verify(session) == audit.VerifyResult(True, total)
    with db.read() as session:
        assert len(session.execute(select(ApiToken.id)).all()) == WORKERS * (WRITES // 4)
