"""The period an evidence bundle covers: a quarter (``2026-Q4``) or a month (``2026-11``).

A period is a half-open UTC interval ``[start, end)``. Named periods rather than
free from/to dates, so that "the open collection of this tenant and period" is
one string to compare and a bundle's name says what an auditor asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from tenantops.errors import Unprocessable

# ASCII digits only: ``\d`` also matches Arabic-Indic or full-width digits, which
# ``int()`` reads as the same year, so "٢٠٣٠-Q1" would dodge the one-open-collection
# rule on the label "2030-Q1". The label is rebuilt from the numbers (canonical form).
_QUARTER = re.compile(r"([0-9]{4})-Q([1-4])")
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
PATTERN = r"^[0-9]{4}-(Q[1-4]|0[1-9]|1[0-2])$"
FIRST_YEAR, LAST_YEAR = 1000, 9998  # a period and the one after it are valid dates


@dataclass(frozen=True)
class Period:
    """A named, half-open UTC interval ``[start, end)``."""

    label: str
    start: datetime
    end: datetime

    def holds(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def overlaps(self, start: datetime, end: datetime | None) -> bool:
        """Whether ``[start, end)`` (``end`` None: still open) meets the period.

        Half-open on both sides: something that ended exactly at the period's
        first instant belongs to the period before, not to this one too.
        """
        return start < self.end and (end is None or end > self.start)

    def as_dict(self) -> dict[str, str]:
        return {"label": self.label, "from": self.start.isoformat(), "to": self.end.isoformat()}


def _first(year: int, month: int) -> datetime:
    if month > 12:
        year, month = year + 1, month - 12
    return datetime(year, month, 1, tzinfo=UTC)


def parse(text: str) -> Period:
    """``2026-Q4`` or ``2026-11``; anything else is ``Unprocessable`` (422)."""
    value = text.strip()
    head = value[:4]
    year = int(head) if len(head) == 4 and all("0" <= c <= "9" for c in head) else 0
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise Unprocessable(
            f"period must be a quarter (2026-Q4) or a month (2026-11) of the years "
            f"{FIRST_YEAR} to {LAST_YEAR}, not {text!r}"
        )
    if found := _QUARTER.fullmatch(value):
        year, quarter = int(found[1]), int(found[2])
        first = 3 * (quarter - 1) + 1
        return Period(f"{year:04d}-Q{quarter}", _first(year, first), _first(year, first + 3))
    if found := _MONTH.fullmatch(value):
        year, month = int(found[1]), int(found[2])
        return Period(f"{year:04d}-{month:02d}", _first(year, month), _first(year, month + 1))
    raise Unprocessable(f"period must be a quarter (2026-Q4) or a month (2026-11), not {text!r}")


def last_quarter(now: datetime) -> Period:
    """The last quarter that has ended by ``now``: what an auditor asks for by default."""
    quarter = (now.month - 1) // 3 + 1
    year, quarter = (now.year - 1, 4) if quarter == 1 else (now.year, quarter - 1)
    return parse(f"{year}-Q{quarter}")


def ended(period: Period, now: datetime) -> Period:
    """``period`` if it is over at ``now``, else a 422 saying when it ends.

    A period still running (or ahead) would be collected and signed off
    incomplete, and once over collected again under the same label: two
    signed-off bundles with different contents for one period.
    """
    if now < period.end:
        raise Unprocessable(
            f"period {period.label} is not over until {period.end:%Y-%m-%d %H:%M} UTC and "
            "its evidence would be incomplete; collect a period that has ended "
            "(default: the last quarter ended)",
            param="period",
        )
    return period
