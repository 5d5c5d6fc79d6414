"""The fleet the SLA report tests read: runs of 2030-W02 and the week before, known times."""

from __future__ import annotations

import pytest

from tenantops.db import Database
from tests.reports.fleet import Fleet, at


@pytest.fixture
def fleet(db: Database) -> dict[str, str]:
    """Runs of 2030-W02 and the week before; what each one counts as is in its comment."""
    f = Fleet()
    f.tenant("alpha", approved=at(7, 10), activated=at(7, 10, 20))  # 20 min
    f.tenant("beta", approved=at(8, 10), activated=at(8, 11))  # 60 min
    f.tenant("gamma", approved=at(9, 10), activated=at(9, 10, 5))  # 5 min
    f.tenant("delta", approved=at(2, 10), activated=at(2, 10, 40))  # 40 min, in W01
    f.tenant("eve", approved=at(12, 9))  # not active yet
    ids = {
        # in time: met in W02
        "r1": f.run(
            "tenant-onboarding",
            "alpha",
            created=at(7, 10),
            finished=at(7, 10, 20),
            deadline=at(7, 10, 30),
        ),
        # 30 min late: missed
        "r2": f.run(
            "tenant-onboarding",
            "beta",
            created=at(8, 10),
            finished=at(8, 11),
            deadline=at(8, 10, 30),
        ),
        # still running past its deadline: missed, open
        "r3": f.run(
            "tenant-suspension", "alpha", created=at(9, 11), status="running", deadline=at(9, 12)
        ),
        # started in W01, succeeded in time in W02: met in W02
        "r4": f.run(
            "cost-overrun", "beta", created=at(6, 23), finished=at(7, 0, 30), deadline=at(7, 1)
        ),
        # cancelled before its deadline: not judged
        "r5": f.run(
            "policy-violation",
            "gamma",
            created=at(10, 10),
            status="cancelled",
            finished=at(10, 11),
            deadline=at(10, 12),
        ),
        # failed before its deadline: missed at the deadline, not late
        "r6": f.run(
            "cost-overrun",
            "beta",
            created=at(11, 9),
            status="failed",
            finished=at(11, 9, 30),
            deadline=at(11, 10),
        ),
        # deadline in W03: not judged in W02
        "r7": f.run(
            "resource-exhaustion",
            "gamma",
            created=at(13, 23),
            status="running",
            deadline=at(14, 0, 30),
        ),
        # W01: met
        "r8": f.run(
            "tenant-onboarding",
            "alpha",
            created=at(1, 10),
            finished=at(1, 10, 10),
            deadline=at(1, 10, 30),
        ),
        # no deadline: started and finished, never judged
        "r9": f.run("monthly-cost-report", None, created=at(8, 6), finished=at(8, 6, 1)),
        # missed in December 2029: outside the 28-day error-budget window
        "r10": f.run(
            "tenant-onboarding",
            "beta",
            created=at(1, 10, month=12, year=2029),
            finished=at(1, 11, month=12, year=2029),
            deadline=at(1, 10, 30, month=12, year=2029),
        ),
    }
    f.step(
        ids["r1"], "gitops", started=at(7, 10, 5), finished=at(7, 10, 15), deadline=at(7, 10, 10)
    )
    f.step(
        ids["r1"], "verify", started=at(7, 10, 15), finished=at(7, 10, 18), deadline=at(7, 10, 20)
    )
    f.step(
        ids["r3"],
        "approve",
        kind="gate",
        status="waiting",
        started=at(9, 11),
        deadline=at(9, 11, 30),
    )
    f.step(ids["r3"], "notify", status="pending")
    f.write(db)
    return ids
