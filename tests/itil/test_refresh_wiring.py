"""The worker asks ServiceNow for its mirror rows' tickets only when ServiceNow is configured
and the interval is not 0 (the composition root installs ``itil.refresh`` as a job)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tenantops.config import OncallSettings, Settings
from tenantops.db import Database
from tenantops.oncall import service as oncall
from tenantops.wiring import build_worker, mirror_refresh_jobs
from tests.conftest import Clock
from tests.drivers.test_argocd import Replay, Seen, replay  # noqa: F401
from tests.drivers.test_itsm import settings
from tests.itil.helpers import make_tenant
from tests.itil.test_refresh import EVERY, WAIT, got, mirror_row, state_and_notes, sys_id
from tests.oncall.test_pages import OLI
from tests.oncall.test_worker import pages_told

pytestmark = pytest.mark.usefixtures("clock")


def test_the_worker_refreshes_only_with_servicenow_and_a_non_zero_interval(
    db: Database,
    tmp_path: Path,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    assert mirror_refresh_jobs(Settings(data_dir=tmp_path), db) == []
    assert "itsm-mirror-refresh" not in [
        j.name for j in build_worker(Settings(data_dir=tmp_path), db).jobs
    ]
    off = Settings(data_dir=tmp_path, servicenow={"username": "u", "refresh_seconds": 0})
    assert mirror_refresh_jobs(off, db) == []
    on = Settings(data_dir=tmp_path, servicenow=settings(replay.url))
    (job,) = [j for j in build_worker(on, db).jobs if j.name == "itsm-mirror-refresh"]
    assert job.seconds == 300.0
    # The installed job is the refresh, on the configured instance.
    make_tenant(db, "acme")
    record_id = mirror_row(db, 1)
    clock.advance(EVERY)
    replay.script(got(sys_id(1), "6"))
    job.run(lambda: False)
    replay.assert_done()
    assert state_and_notes(db, record_id)[0] == "resolved"


def test_a_slow_servicenow_holds_up_no_page_and_the_refresh_closes_its_client_at_stop(
    db: Database,
    tmp_path: Path,
    replay: Replay,  # noqa: F811
    clock: Clock,
) -> None:
    make_tenant(db, "acme")
    record_id = mirror_row(db, 1)
    clock.advance(EVERY)
    in_call, release = threading.Event(), threading.Event()
    answer = replay.answer

    def slow(seen: Seen) -> dict[str, Any]:  # ServiceNow answers only once released
        in_call.set()
        release.wait(WAIT * 3)
        return answer(seen)

    replay.answer = slow  # type: ignore[method-assign]
    replay.script(got(sys_id(1), "6"))
    on = Settings(
        data_dir=tmp_path,
        servicenow=settings(replay.url, refresh_seconds=0.05),
        oncall=OncallSettings(sweep_seconds=0.05),
    )
    worker = build_worker(on, db)
    worker.start()
    try:
        assert in_call.wait(WAIT)  # the refresh waits on ServiceNow ...
        with db.write() as session:  # ... when a P1 comes in
            oncall.trigger(session, key="p1", summary="all down", severity="critical", actor=OLI)
        deadline = time.monotonic() + WAIT  # a generous bound, never an assertion on timing
        while not pages_told(db) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pages_told(db)  # the escalator told the page while the refresh still waited
        assert not release.is_set()
    finally:
        release.set()
        worker.stop()
    replay.assert_done()
    assert state_and_notes(db, record_id)[0] == "resolved"
    # The refresh's own ServiceNow client was closed with the worker: asking again fails.
    (job,) = [j for j in worker.jobs if j.name == "itsm-mirror-refresh"]
    clock.advance(EVERY)
    turn = job.run(lambda: False)
    assert "client has been closed" in str(getattr(turn, "error", ""))
    assert len(replay.seen) == 1
