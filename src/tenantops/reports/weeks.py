"""ISO weeks (``YYYY-Www``, Monday 00:00 UTC to the next Monday): what a weekly report covers.

Pure date arithmetic, no I/O. ``date.fromisocalendar`` decides which years have
a week 53 (those whose 1 January or 31 December is a Thursday), so ``2026-W53``
exists and ``2025-W53`` does not; the week of 1 January may belong to the year
before (``2027-01-01`` is in ``2026-W53``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from tenantops.errors import Unprocessable
from tenantops.kit.clock import utcnow

WEEK = timedelta(days=7)
_PATTERN = re.compile(r"(\d{4})-W(\d{2})")


@dataclass(frozen=True, order=True)
class IsoWeek:
    """One ISO week of the UTC calendar."""

    year: int
    week: int

    @classmethod
    def parse(cls, text: str) -> IsoWeek:
        """``YYYY-Www`` (``2026-W53``); anything else, or a week the year lacks, is a 422."""
        match = _PATTERN.fullmatch(text.strip())
        if match is None:
            raise Unprocessable(f"week must be an ISO week YYYY-Www, not {text!r}", param="week")
        year, week = int(match[1]), int(match[2])
        if not 1000 <= year <= 9998:
            raise Unprocessable(
                f"week must be in the years 1000 to 9998, not {text!r}", param="week"
            )
        try:
            date.fromisocalendar(year, week, 1)
        except ValueError:
            raise Unprocessable(
                f"{text!r} is not a week: {year} has weeks W01 to W{weeks_in(year):02d}",
                param="week",
            ) from None
        return cls(year, week)

    @classmethod
    def of(cls, day: date) -> IsoWeek:
        iso = day.isocalendar()
        return cls(iso.year, iso.week)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-W{self.week:02d}"

    @property
    def monday(self) -> date:
        return date.fromisocalendar(self.year, self.week, 1)

    @property
    def start(self) -> datetime:
        """Monday 00:00 UTC, the first instant of the week."""
        return datetime.combine(self.monday, time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The next Monday 00:00 UTC: the first instant after the week."""
        return self.start + WEEK

    def previous(self) -> IsoWeek:
        return IsoWeek.of(self.monday - WEEK)

    def next(self) -> IsoWeek:
        return IsoWeek.of(self.monday + WEEK)

    def __str__(self) -> str:
        return self.label


def weeks_in(year: int) -> int:
    """52 or 53: 28 December is always in the year's last week."""
    return date(year, 12, 28).isocalendar().week


def last_full_week(now: datetime | None = None) -> IsoWeek:
    """The last week that is over at ``now`` (UTC): what a weekly report covers by default."""
    today = (now or utcnow()).astimezone(UTC).date()
    return IsoWeek.of(today - WEEK)
