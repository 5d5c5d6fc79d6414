"""The worker asks ServiceNow for its mirror rows' tickets only when ServiceNow is configured
and the interval is not 0 (the composition root installs ``itil.refresh`` as a job)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.wiring import build_worker, mirror_refresh_jobs
from tests.conftest import Clock
from tests.drivers.test_argocd import Replay, replay  # noqa: F401
from tests.drivers.test_itsm import settings
from tests.itil.helpers import make_tenant
from tests.itil.test_refresh import EVERY, got, mirror_row, state_and_notes, sys_id

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
