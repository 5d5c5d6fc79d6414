"""ISO weeks: parsing, boundaries, week 53 and the change of year (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tenantops.errors import Unprocessable
from tenantops.reports.weeks import IsoWeek, last_full_week, weeks_in


def test_a_week_runs_from_monday_midnight_utc_for_seven_days() -> None:
    week = IsoWeek.parse("2030-W02")
    assert week.start == datetime(2030, 1, 7, tzinfo=UTC)
    assert week.end == datetime(2030, 1, 14, tzinfo=UTC)
    assert week.label == "2030-W02"


def test_week_53_and_the_change_of_year() -> None:
    assert weeks_in(2026) == 53
    assert weeks_in(2025) == 52
    w53 = IsoWeek.parse("2026-W53")
    assert w53.start == datetime(2026, 12, 28, tzinfo=UTC)
    assert w53.end == datetime(2027, 1, 4, tzinfo=UTC)
    # 1 January 2027 is a Friday: it belongs to the last week of 2026.
    assert IsoWeek.of(date(2027, 1, 1)) == w53
    assert w53.next() == IsoWeek(2027, 1)
    assert IsoWeek(2027, 1).previous() == w53
    # Week 1 of 2030 starts on 31 December 2029.
    assert IsoWeek.parse("2030-W01").start == datetime(2029, 12, 31, tzinfo=UTC)
    assert IsoWeek(2030, 1).previous() == IsoWeek(2029, 52)


@pytest.mark.parametrize(
    ("now", "week"),
    [
        (datetime(2027, 1, 4, 0, 0, tzinfo=UTC), "2026-W53"),
        (datetime(2027, 1, 3, 23, 59, 59, tzinfo=UTC), "2026-W52"),
        (datetime(2030, 1, 20, 12, tzinfo=UTC), "2030-W02"),
    ],
)
def test_the_default_is_the_last_full_week(now: datetime, week: str) -> None:
    assert last_full_week(now).label == week


@pytest.mark.parametrize(
    "text",
    [
        "2025-W53",
        "2030-W00",
        "2030-W54",
        "2030-W1",
        "2030W02",
        "2030-02",
        "",
        "0999-W10",
        "0000-W01",
    ],
)
def test_a_week_that_does_not_exist_is_refused(text: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        IsoWeek.parse(text)
    assert refused.value.extra["param"] == "week"
