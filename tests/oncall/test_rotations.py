"""Who is on call when: hand-offs on the local wall clock, overrides, DST in Europe/Berlin.

Pure calculation, no store. Europe/Berlin changes to summer time on 2030-03-31 (02:00 CET
-> 03:00 CEST) and back on 2030-10-27 (03:00 CEST -> 02:00 CET).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tenantops.oncall.rotations import OverrideSpan, RotationSpec, Shift, schedule, shift_at

BERLIN = "Europe/Berlin"
TEAM = ("alice@x.io", "bob@x.io", "carol@x.io")


def wall(*parts: int) -> datetime:
    """A local wall-clock reading (naive), as a rotation's times are written."""
    return datetime(*parts)  # type: ignore[misc]  # noqa: DTZ001


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def weekly(**changes: object) -> RotationSpec:
    fields: dict[str, object] = {
        "name": "primary",
        "timezone": BERLIN,
        "start": wall(2030, 1, 7, 9, 0),  # Monday 09:00 Berlin (08:00 UTC in winter)
        "length": timedelta(days=7),
        "members": TEAM,
    }
    fields.update(changes)
    return RotationSpec(**fields)  # type: ignore[arg-type]


def who(rotation: RotationSpec, at: datetime) -> str:
    return shift_at(rotation, at).member


def test_members_take_turns_at_each_hand_off() -> None:
    r = weekly()
    assert who(r, utc(2030, 1, 7, 8, 0)) == "alice@x.io"  # the first hand-off, exactly
    assert who(r, utc(2030, 1, 14, 7, 59, 59)) == "alice@x.io"
    assert who(r, utc(2030, 1, 14, 8, 0)) == "bob@x.io"
    assert who(r, utc(2030, 1, 21, 8, 0)) == "carol@x.io"
    assert who(r, utc(2030, 1, 28, 8, 0)) == "alice@x.io"  # round again
    shift = shift_at(r, utc(2030, 1, 15, 12, 0))
    assert shift == Shift("primary", "bob@x.io", utc(2030, 1, 14, 8), utc(2030, 1, 21, 8))


def test_before_its_start_a_rotation_counts_backwards_so_someone_is_always_on_call() -> None:
    r = weekly()
    assert who(r, utc(2030, 1, 7, 7, 59)) == "carol@x.io"
    assert who(r, utc(2029, 12, 31, 7, 59)) == "bob@x.io"


def test_a_weekly_hand_off_stays_at_nine_local_across_both_dst_changes() -> None:
    r = weekly()
    # Summer time: Monday 09:00 CEST is 07:00 UTC.
    spring = shift_at(r, utc(2030, 4, 1, 7, 0))
    assert spring.since == utc(2030, 4, 1, 7, 0)
    assert shift_at(r, utc(2030, 4, 1, 6, 59)).until == utc(2030, 4, 1, 7, 0)
    # The week across the change is an hour short: Mon 25 Mar 08:00 UTC to Mon 1 Apr 07:00.
    across = shift_at(r, utc(2030, 3, 31, 12, 0))
    assert across.until - across.since == timedelta(days=7) - timedelta(hours=1)
    # Back to winter time: Monday 28 Oct 09:00 CET is 08:00 UTC again; that week is long.
    autumn = shift_at(r, utc(2030, 10, 27, 12, 0))
    assert autumn.until == utc(2030, 10, 28, 8, 0)
    assert autumn.until - autumn.since == timedelta(days=7, hours=1)


def test_twelve_hour_shifts_hand_over_at_nine_and_twenty_one_local_all_year() -> None:
    r = weekly(
        start=wall(2030, 3, 29, 9, 0), length=timedelta(hours=12), members=("a@x.io", "b@x.io")
    )
    handoffs = [s.since for s in schedule(r, utc(2030, 3, 30, 8, 0), 4)]
    assert handoffs == [
        utc(2030, 3, 30, 8, 0),  # Sat 09:00 CET
        utc(2030, 3, 30, 20, 0),  # Sat 21:00 CET
        utc(2030, 3, 31, 7, 0),  # Sun 09:00 CEST: the night shift was 11 hours
        utc(2030, 3, 31, 19, 0),  # Sun 21:00 CEST
    ]
    assert [s.member for s in schedule(r, utc(2030, 3, 30, 8, 0), 4)] == [
        "a@x.io",
        "b@x.io",
        "a@x.io",
        "b@x.io",
    ]


def test_a_hand_off_in_the_skipped_hour_happens_when_the_clocks_jump() -> None:
    r = weekly(
        start=wall(2030, 3, 30, 2, 30), length=timedelta(days=1), members=("a@x.io", "b@x.io")
    )
    # 2030-03-31 02:30 does not exist in Berlin: the hand-off is at 03:30 CEST (01:30 UTC).
    assert who(r, utc(2030, 3, 31, 1, 29)) == "a@x.io"
    assert who(r, utc(2030, 3, 31, 1, 30)) == "b@x.io"
    # The next day is normal again: 02:30 CEST is 00:30 UTC.
    assert shift_at(r, utc(2030, 3, 31, 12, 0)).until == utc(2030, 4, 1, 0, 30)


def test_a_hand_off_in_the_repeated_hour_happens_the_first_time_round() -> None:
    r = weekly(
        start=wall(2030, 10, 26, 2, 30), length=timedelta(days=1), members=("a@x.io", "b@x.io")
    )
    # 2030-10-27 02:30 happens twice in Berlin: first at 00:30 UTC (CEST).
    assert who(r, utc(2030, 10, 27, 0, 29)) == "a@x.io"
    assert who(r, utc(2030, 10, 27, 0, 30)) == "b@x.io"
    assert who(r, utc(2030, 10, 27, 1, 45)) == "b@x.io"  # the second 02:15 local: still b
    assert shift_at(r, utc(2030, 10, 27, 12)).until == utc(2030, 10, 28, 1, 30)  # 02:30 CET


def test_an_override_takes_over_and_hands_back() -> None:
    holiday = OverrideSpan("dave@x.io", wall(2030, 1, 16, 18, 0), wall(2030, 1, 18, 9, 0))
    r = weekly(overrides=(holiday,))
    before = shift_at(r, utc(2030, 1, 15, 12, 0))
    assert before.member == "bob@x.io"
    assert before.until == utc(2030, 1, 16, 17, 0)  # the override starts (18:00 Berlin)
    during = shift_at(r, utc(2030, 1, 17, 3, 0))
    assert during == Shift("primary", "dave@x.io", utc(2030, 1, 16, 17), utc(2030, 1, 18, 8), True)
    after = shift_at(r, utc(2030, 1, 18, 8, 0))
    assert after.member == "bob@x.io"
    assert after.since == utc(2030, 1, 18, 8, 0)
    assert after.until == utc(2030, 1, 21, 8, 0)


def test_of_overlapping_overrides_the_one_listed_last_wins() -> None:
    long = OverrideSpan("dave@x.io", wall(2030, 1, 8, 0, 0), wall(2030, 1, 12, 0, 0))
    short = OverrideSpan("erin@x.io", wall(2030, 1, 9, 0, 0), wall(2030, 1, 10, 0, 0))
    r = weekly(overrides=(long, short))
    assert shift_at(r, utc(2030, 1, 8, 12)).until == utc(2030, 1, 8, 23)  # erin takes over
    assert who(r, utc(2030, 1, 9, 12)) == "erin@x.io"
    assert who(r, utc(2030, 1, 10, 12)) == "dave@x.io"
    assert who(r, utc(2030, 1, 12, 12)) == "alice@x.io"


@pytest.mark.parametrize("hours", range(0, 24 * 14, 5))
def test_the_shift_at_any_moment_contains_it_and_the_schedule_has_no_gaps(hours: int) -> None:
    r = weekly(start=wall(2030, 3, 25, 1, 30), length=timedelta(hours=7))
    at = utc(2030, 3, 24) + timedelta(hours=hours)
    shift = shift_at(r, at)
    assert shift.since <= at < shift.until
    following = shift_at(r, shift.until)
    assert following.since == shift.until
