"""The local queue-access driver: pause/resume and rate limits, once per idempotency key."""

from __future__ import annotations

from typing import Any

import pytest

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.access.local import LocalQueueAccess
from tenantops.drivers.access.port import RateLimit
from tenantops.drivers.actions import driver_actions
from tenantops.drivers.errors import DriverError, Retry
from tenantops.kit.ids import new_id
from tenantops.runbooks.actions import ActionContext, StepFailed


def ctx(tenant: dict[str, Any], key: str, **params: Any) -> ActionContext:
    return ActionContext(
        run_id="run-1",
        step_name="access",
        tenant_id=tenant["id"],
        params=params,
        idempotency_key=key,
        attempt=1,
        actor="amy",
        inputs={"tenant": tenant},
    )


def test_queues_pause_and_resume(db: Database) -> None:
    access = LocalQueueAccess(db)
    tid = new_id()
    assert access.get_state(tenant_id=tid) is None

    paused = access.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="p")
    assert paused.queues_paused
    assert paused.paused_at is not None
    resumed = access.resume_queues(tenant_id=tid, tenant_name="acme", idempotency_key="r")
    assert not resumed.queues_paused
    assert resumed.paused_at is None
    assert access.get_state(tenant_id=tid) == resumed


def test_a_rate_limit_is_set_replaced_and_lifted(db: Database) -> None:
    access = LocalQueueAccess(db)
    tid = new_id()

    first = access.set_rate_limit(
        tenant_id=tid, tenant_name="acme", limit=RateLimit(10, 20), idempotency_key="a"
    )
    second = access.set_rate_limit(
        tenant_id=tid, tenant_name="acme", limit=RateLimit(2.5, 5), idempotency_key="b"
    )
    lifted = access.lift_rate_limit(tenant_id=tid, tenant_name="acme", idempotency_key="c")

    assert first.rate_limit == RateLimit(10.0, 20)
    assert second.rate_limit == RateLimit(2.5, 5)
    assert lifted.rate_limit is None


def test_a_replayed_pause_returns_its_record_and_does_not_pause_again(db: Database) -> None:
    access = LocalQueueAccess(db)
    tid = new_id()
    paused = access.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="p")
    access.resume_queues(tenant_id=tid, tenant_name="acme", idempotency_key="r")

    replay = access.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="p")

    assert replay == paused
    now = access.get_state(tenant_id=tid)
    assert now is not None
    assert not now.queues_paused
    assert access.effect_count(tenant_id=tid) == 2


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (float("nan"), 5), (1, 0)])
def test_an_unusable_rate_limit_is_refused(db: Database, rate: float, burst: int) -> None:
    access = LocalQueueAccess(db)
    with pytest.raises(DriverError) as caught:
        access.set_rate_limit(
            tenant_id=new_id(),
            tenant_name="acme",
            limit=RateLimit(rate, burst),
            idempotency_key="x",
        )
    assert caught.value.retry is Retry.PERMANENT
    assert access.effect_count() == 0


def test_actions_read_the_limit_from_params_and_report_evidence(
    db: Database, settings: Settings
) -> None:
    actions = driver_actions(settings, db)
    tenant = {"id": new_id(), "name": "acme"}

    limited = actions["access.set_rate_limit"].run(ctx(tenant, "l", rate="50", burst=100))
    paused = actions["access.pause_queues"].run(ctx(tenant, "p"))
    resumed = actions["access.resume_queues"].run(ctx(tenant, "r"))
    lifted = actions["access.lift_rate_limit"].run(ctx(tenant, "u"))

    assert limited.evidence["rate_limit"] == {"rate": 50.0, "burst": 100}
    assert paused.evidence["queues_paused"] is True
    assert resumed.evidence["queues_paused"] is False
    assert lifted.evidence["rate_limit"] is None


def test_a_rate_that_is_not_a_number_fails_the_step_for_good(
    db: Database, settings: Settings
) -> None:
    actions = driver_actions(settings, db)
    with pytest.raises(StepFailed) as caught:
        actions["access.set_rate_limit"].run(
            ctx({"id": new_id(), "name": "acme"}, "l", rate="fast", burst=1)
        )
    assert not caught.value.retriable
