"""Who is on call when: pure calculation over a rotation and its overrides, DST-correct.

A rotation hands over at local wall-clock times: the first hand-off is ``start``
(a local date-time in the rotation's time zone), the k-th is ``start + k * length``
on the wall clock. So a weekly rotation always hands over on Monday 09:00 local,
and 12-hour shifts at 09:00 and 21:00, summer and winter alike: the shift across
a DST change is an hour shorter or longer. A hand-off that falls in the hour a
spring change skips happens when the clocks jump (02:30 -> 03:30); one in the
hour an autumn change repeats happens the first time round.

Before ``start`` the rotation counts backwards, so someone is always on call: a
page must never find nobody. An override puts ``member`` on call from ``start`` to
``end`` (local times of the rotation too); of overlapping overrides the one
listed last wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

# Hand-offs closer than this could run backwards across a DST gap.
MIN_LENGTH = timedelta(hours=1)


@dataclass(frozen=True)
class OverrideSpan:
    """``member`` is on call from ``start`` to ``end`` (local wall-clock times)."""

    member: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class RotationSpec:
    """A rotation as the maths needs it: local naive ``start``, wall-clock ``length``."""

    name: str
    timezone: str
    start: datetime
    length: timedelta
    members: tuple[str, ...]
    overrides: tuple[OverrideSpan, ...] = ()


@dataclass(frozen=True)
class Shift:
    """Who is on call for ``rotation`` from ``since`` until ``until`` (both UTC)."""

    rotation: str
    member: str
    since: datetime
    until: datetime
    override: bool = False


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A local wall-clock time (naive, or aware in any zone) as a UTC instant.

    Naive times in a gap resolve with the offset before the change (fold 0), i.e.
    they happen as the clocks jump; times in a repeated hour the first time round.
    """
    if local.tzinfo is not None:
        return local.astimezone(UTC)
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _local(at: datetime, zone: ZoneInfo) -> datetime:
    """The wall-clock reading at instant ``at``, naive."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(zone).replace(tzinfo=None)


def handoff(rotation: RotationSpec, k: int) -> datetime:
    """The instant (UTC) of the k-th hand-off; k may be negative (before ``start``)."""
    zone = ZoneInfo(rotation.timezone)
    start = rotation.start
    if start.tzinfo is not None:
        start = _local(start, zone)
    return to_utc(start + k * rotation.length, zone)


def _index(rotation: RotationSpec, at: datetime) -> int:
    """The k with ``handoff(k) <= at < handoff(k + 1)``."""
    zone = ZoneInfo(rotation.timezone)
    start = rotation.start if rotation.start.tzinfo is None else _local(rotation.start, zone)
    k = (_local(at, zone) - start) // rotation.length  # wall-clock estimate, off by one at most
    while handoff(rotation, k + 1) <= at:
        k += 1
    while handoff(rotation, k) > at:
        k -= 1
    return k


def regular_shift(rotation: RotationSpec, at: datetime) -> Shift:
    """The rotation's own shift at ``at``, overrides ignored."""
    k = _index(rotation, at)
    return Shift(
        rotation=rotation.name,
        member=rotation.members[k % len(rotation.members)],
        since=handoff(rotation, k),
        until=handoff(rotation, k + 1),
    )


def shift_at(rotation: RotationSpec, at: datetime) -> Shift:
    """Who is on call at ``at`` (UTC instant), overrides applied, and for how long.

    ``since``/``until`` bound the stretch this member covers without a change of hands.
    """
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    zone = ZoneInfo(rotation.timezone)
    spans = [(to_utc(o.start, zone), to_utc(o.end, zone), o) for o in rotation.overrides]
    for i in range(len(spans) - 1, -1, -1):
        start, end, o = spans[i]
        if start <= at < end:
            # A later-listed override starting inside this one takes over then.
            later = [s for s, e, _ in spans[i + 1 :] if at < s < end]
            return Shift(rotation.name, o.member, start, min([end, *later]), override=True)
    shift = regular_shift(rotation, at)
    ended = [e for _, e, _ in spans if shift.since < e <= at]
    starting = [s for s, _, _ in spans if at < s < shift.until]
    return Shift(
        rotation=rotation.name,
        member=shift.member,
        since=max([shift.since, *ended]),
        until=min([shift.until, *starting]),
    )


def schedule(rotation: RotationSpec, start: datetime, count: int) -> list[Shift]:
    """The next ``count`` stretches from ``start`` on, overrides applied (for ``show``)."""
    shifts: list[Shift] = []
    at = start
    for _ in range(count):
        shift = shift_at(rotation, at)
        shifts.append(shift)
        at = shift.until
    return shifts
