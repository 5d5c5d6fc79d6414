"""The local queue-access driver: ACL state and rate limits in the control-plane database.

The embedded default and the test seam of ``QueueAccess``: it keeps what a
Redis ACL adapter enforces (``ACL SETUSER … off``, a token bucket per tenant).
Each change and its effect-log row commit together: once per idempotency key.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.db import Database
from tenantops.drivers.access.models import AccessEffect, QueueAccessRecord
from tenantops.drivers.access.port import AccessState, RateLimit
from tenantops.drivers.effects import apply_once
from tenantops.drivers.errors import DriverError, Retry
from tenantops.kit.clock import utcnow

MAX_RATE = 1_000_000.0
MAX_BURST = 10_000_000


def _state(row: QueueAccessRecord) -> AccessState:
    limit = None
    if row.rate is not None and row.burst is not None:
        limit = RateLimit(rate=row.rate, burst=row.burst)
    return AccessState(
        tenant_id=row.tenant_id,
        tenant_name=row.tenant_name,
        queues_paused=row.queues_paused,
        paused_at=row.paused_at,
        rate_limit=limit,
    )


def check_limit(limit: RateLimit) -> RateLimit:
    """``limit`` if it is a usable token bucket; a permanent error otherwise."""
    if not (math.isfinite(limit.rate) and 0 < limit.rate <= MAX_RATE):
        raise DriverError(
            f"rate must be > 0 and <= {MAX_RATE:g} per second, not {limit.rate}",
            retry=Retry.PERMANENT,
        )
    if not 1 <= limit.burst <= MAX_BURST:
        raise DriverError(
            f"burst must be between 1 and {MAX_BURST}, not {limit.burst}", retry=Retry.PERMANENT
        )
    return limit


class LocalQueueAccess:
    """``QueueAccess`` on the control-plane database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _change(
        self,
        *,
        key: str,
        operation: str,
        tenant_id: str,
        tenant_name: str,
        mutate: Callable[[QueueAccessRecord], None],
    ) -> AccessState:
        def change(session: Session) -> AccessState:
            row = self._row(session, tenant_id, tenant_name)
            mutate(row)
            row.updated_at = utcnow()
            session.flush()
            return _state(row)

        return apply_once(
            self.db,
            AccessEffect,
            key=key,
            operation=operation,
            tenant_id=tenant_id,
            change=change,
            recorded=AccessState.from_dict,
            what="access",
        )

    @staticmethod
    def _row(session: Session, tenant_id: str, tenant_name: str) -> QueueAccessRecord:
        row = session.get(QueueAccessRecord, tenant_id, with_for_update=True)
        if row is None:
            row = QueueAccessRecord(
                tenant_id=tenant_id,
                tenant_name=tenant_name,
                queues_paused=False,
                paused_at=None,
                rate=None,
                burst=None,
                updated_at=utcnow(),
            )
            session.add(row)
        return row

    def pause_queues(
        self, *, tenant_id: str, tenant_name: str, idempotency_key: str
    ) -> AccessState:
        def mutate(row: QueueAccessRecord) -> None:
            if not row.queues_paused:
                row.queues_paused, row.paused_at = True, utcnow()

        return self._change(
            key=idempotency_key,
            operation="pause_queues",
            tenant_id=tenant_id,
            tenant_name=tenant_name,
            mutate=mutate,
        )

    def resume_queues(
        self, *, tenant_id: str, tenant_name: str, idempotency_key: str
    ) -> AccessState:
        def mutate(row: QueueAccessRecord) -> None:
            row.queues_paused, row.paused_at = False, None

        return self._change(
            key=idempotency_key,
            operation="resume_queues",
            tenant_id=tenant_id,
            tenant_name=tenant_name,
            mutate=mutate,
        )

    def set_rate_limit(
        self, *, tenant_id: str, tenant_name: str, limit: RateLimit, idempotency_key: str
    ) -> AccessState:
        check_limit(limit)

        def mutate(row: QueueAccessRecord) -> None:
            row.rate, row.burst = limit.rate, limit.burst

        return self._change(
            key=idempotency_key,
            operation="set_rate_limit",
            tenant_id=tenant_id,
            tenant_name=tenant_name,
            mutate=mutate,
        )

    def lift_rate_limit(
        self, *, tenant_id: str, tenant_name: str, idempotency_key: str
    ) -> AccessState:
        def mutate(row: QueueAccessRecord) -> None:
            row.rate, row.burst = None, None

        return self._change(
            key=idempotency_key,
            operation="lift_rate_limit",
            tenant_id=tenant_id,
            tenant_name=tenant_name,
            mutate=mutate,
        )

    def get_state(self, *, tenant_id: str) -> AccessState | None:
        with self.db.read() as session:
            row = session.get(QueueAccessRecord, tenant_id)
            return None if row is None else _state(row)

    def effect_count(self, *, tenant_id: str | None = None) -> int:
        """How many effects were applied (the crash harness counts these)."""
        query = select(AccessEffect.idempotency_key)
        if tenant_id is not None:
            query = query.where(AccessEffect.tenant_id == tenant_id)
        with self.db.read() as session:
            return len(session.execute(query).all())
