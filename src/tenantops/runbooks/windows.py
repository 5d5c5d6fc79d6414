"""Maintenance windows: the weekly times when a step that changes the platform may start.

A runbook step names a window (``window: weekend-night``); the operations team
defines what that name means in the control plane (``PUT
/api/v1/maintenance-windows/{name}``, ``tenantops windows set``). A windowed
step that becomes due outside its window is held — ``ready`` with ``wake_at``
at the window's next opening, a durable timer like a retry's backoff — and
starts inside it. Only the start is held: a step that started inside its window
runs to its end, and a retry that falls outside waits for the next opening.

A window opens on each of its ``days`` at ``start`` (local time in its
``timezone``) and closes at ``end``; an ``end`` at or before ``start`` closes
the next day (an overnight window), and ``end == start`` is a whole day.
Daylight saving time is the time zone's: a window of 02:00-04:00 in
Europe/Berlin is two hours long in local time on every day, whatever UTC says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.errors import NotFound, Unprocessable
from tenantops.kit.clock import as_utc, utcnow
from tenantops.runbooks.models import MaintenanceWindow, RunStep

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Weekly:
    """A weekly window: opens on ``days`` at ``start``, closes at ``end`` (local times)."""

    days: tuple[str, ...]
    start: time
    end: time
    timezone: str

    @classmethod
    def parse(cls, days: list[str], start: str, end: str, timezone: str) -> Weekly:
        """From the stored or submitted fields; ``ValueError`` names what is wrong."""
        unknown = [d for d in days if d not in DAYS]
        if not days or unknown:
            raise ValueError(f"days must be some of {', '.join(DAYS)} (got {days})")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r} (an IANA name)") from None
        return cls(
            days=tuple(d for d in DAYS if d in days),
            start=_clock_time("start", start),
            end=_clock_time("end", end),
            timezone=timezone,
        )

    def _span(self, day: date) -> tuple[datetime, datetime]:
        tz = ZoneInfo(self.timezone)
        closing_day = day + timedelta(days=1) if self.end <= self.start else day
        return _instant(day, self.start, tz), _instant(closing_day, self.end, tz)

    def next_start(self, at: datetime) -> datetime:
        """``at`` itself if the window is open then, else when it next opens (UTC)."""
        at = as_utc(at).astimezone(UTC)
        local = at.astimezone(ZoneInfo(self.timezone)).date()
        for offset in range(-1, 9):  # yesterday's overnight window may still be open
            day = local + timedelta(days=offset)
            if DAYS[day.weekday()] not in self.days:
                continue
            opens, closes = self._span(day)
            if opens <= at < closes:
                return at
            if opens > at:
                return opens
        raise AssertionError("a weekly window with a day opens within eight days")


def _instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of local time ``at`` on ``day``; in a gap (spring forward: the time
    does not exist that day) the end of the gap, so a window opens or closes there.

    In an overlap (fall back: the time happens twice) the first occurrence.
    """
    first = datetime.combine(day, at, tzinfo=tz).astimezone(UTC)  # fold=0: offset before
    other = datetime.combine(day, at, tzinfo=tz).replace(fold=1).astimezone(UTC)
    if other >= first:  # no gap (an overlap puts fold=1 later)
        return first
    # In a gap fold=1 names an instant before the transition, fold=0 one after it:
    # the transition is the first second whose offset differs from ``other``'s.
    before = other.astimezone(tz).utcoffset()
    low, high = other, first
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def _clock_time(field: str, value: str) -> time:
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field} must be HH:MM (got {value!r})") from None
    if len(value) != 5 or parsed.tzinfo is not None:
        raise ValueError(f"{field} must be HH:MM (got {value!r})")
    return parsed


def describe(row: MaintenanceWindow) -> str:
    """``sat,sun 02:00-06:00 Europe/Berlin``, from the stored fields (readable here or not)."""
    return f"{','.join(row.days)} {row.start}-{row.end} {row.timezone}"


def of_row(row: MaintenanceWindow) -> Weekly:
    return Weekly.parse(list(row.days), row.start, row.end, row.timezone)


def hold(session: Session, name: str, due: datetime) -> datetime:
    """When a step of window ``name`` that is due at ``due`` may start.

    Raises ``LookupError`` for a window nobody has defined (the step fails and
    says how to define it).
    """
    row = session.get(MaintenanceWindow, name)
    if row is None:
        raise LookupError(
            f"maintenance window {name!r} is not defined: define it with "
            f"`tenantops windows set {name} …` (PUT /api/v1/maintenance-windows/{name}), "
            "then retry the run"
        )
    try:
        window = of_row(row)
    except ValueError as exc:  # e.g. a time zone this host's tzdata lacks
        raise LookupError(
            f"maintenance window {name!r} cannot be read here ({exc}); define it again with "
            f"`tenantops windows set {name} …`, then retry the run"
        ) from None
    return window.next_start(due)


# Managing the windows (the API and the CLI) -------------------------------------------


def as_dict(row: MaintenanceWindow, now: datetime | None = None) -> dict[str, Any]:
    """The API's view; a row this host cannot read (its time zone unknown here) is shown
    with the reason instead of its next opening."""
    at = as_utc(now or utcnow()).astimezone(UTC)
    try:
        next_start: datetime | None = of_row(row).next_start(at)
        error = None
    except ValueError as exc:
        next_start, error = None, str(exc)
    return {
        "name": row.name,
        "days": list(row.days),
        "start": row.start,
        "end": row.end,
        "timezone": row.timezone,
        "description": row.description,
        "open_now": next_start == at,
        "next_start": next_start,
        "error": error,
        "updated_at": as_utc(row.updated_at),
        "updated_by": row.updated_by,
    }


def list_windows(session: Session) -> list[MaintenanceWindow]:
    return list(session.scalars(select(MaintenanceWindow).order_by(MaintenanceWindow.name)))


def get_window(session: Session, name: str) -> MaintenanceWindow:
    row = session.get(MaintenanceWindow, name)
    if row is None:
        raise NotFound(f"no maintenance window named {name!r}")
    return row


def put_window(
    session: Session,
    *,
    principal: Principal,
    name: str,
    days: list[str],
    start: str,
    end: str,
    timezone: str,
    description: str | None = None,
) -> MaintenanceWindow:
    """Create or replace window ``name`` (audited); the steps held for it are checked again."""
    try:
        window = Weekly.parse(days, start, end, timezone)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    row = session.get(MaintenanceWindow, name, with_for_update=True)
    before = None if row is None else describe(row)
    now = utcnow()
    if row is None:
        row = MaintenanceWindow(name=name)
        session.add(row)
    row.days, row.start, row.end = list(window.days), start, end
    row.timezone, row.description = timezone, description
    row.updated_at, row.updated_by = now, principal.subject
    _wake_held(session, name, now)
    audit.record(
        session,
        actor=principal,
        action="maintenance_window.set",
        tenant_id=None,
        changes={"window": {"before": before, "after": describe(row)}},
        detail={"name": name, "description": description},
    )
    return row


def _wake_held(session: Session, name: str, now: datetime) -> None:
    """Steps held for window ``name`` are due now: the next claim checks them against the
    window as it is now (a window moved earlier starts them sooner, a deleted one fails them)."""
    # No ``wake_at > now`` in the WHERE: a claim holding a step of this window may be about
    # to push its wake_at out (it read the window before this change). The UPDATE must wait
    # for that row's lock and then look at the committed wake_at, which a WHERE on wake_at
    # would skip without waiting (PostgreSQL re-checks only rows the condition matched).
    session.execute(
        update(RunStep)
        .where(RunStep.status == "ready", RunStep.maintenance_window == name)
        .values(wake_at=case((RunStep.wake_at > now, now), else_=RunStep.wake_at))
    )


def delete_window(session: Session, *, principal: Principal, name: str) -> None:
    """Remove window ``name`` (audited); a step that names it fails when next due, saying so."""
    row = get_window(session, name)
    before = describe(row)
    session.delete(row)
    _wake_held(session, name, utcnow())
    audit.record(
        session,
        actor=principal,
        action="maintenance_window.deleted",
        tenant_id=None,
        changes={"window": {"before": before, "after": None}},
        detail={"name": name},
    )
