"""An SLA clock in words, as the run pages and the runs CLI both put it.

Only a success before the deadline is "met": a run that failed or was
cancelled in time did not meet its SLA, it ended. One function for the web
and the terminal, so the two never say different things about one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from tenantops.runbooks.schemas import SlaStatus

SOON_SECONDS = 300  # under five minutes left, the countdown turns amber

Tone = Literal["ok", "soon", "breached", "met", "ended"]


def when(moment: datetime | None) -> str:
    """A timestamp as the pages print it (UTC, to the second), or an en dash."""
    return "–" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def span(seconds: float) -> str:
    """A duration in words a person reads at a glance: ``1 h 5 min``, ``4 min 10 s``, ``45 s``."""
    total = int(abs(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


@dataclass(frozen=True)
class Countdown:
    """An SLA clock in words: the deadline, what it means now, and its colour."""

    deadline: str
    text: str
    tone: Tone


def countdown(sla: SlaStatus | None, status: str = "succeeded") -> Countdown | None:
    """The clock of a run or step in ``status``, in words; ``None`` when it has no SLA.

    Only a success before the deadline is "met": a run that failed or was
    cancelled in time did not meet its SLA, it ended.
    """
    if sla is None:
        return None
    deadline = when(sla.deadline)
    left = sla.remaining_seconds
    if left is None:  # finished: the clock stopped
        if sla.breached:
            at = f" (recorded {when(sla.breached_at)})" if sla.breached_at else ""
            return Countdown(deadline, f"breached: finished after the deadline{at}", "breached")
        if status != "succeeded":
            return Countdown(deadline, f"ended ({status}) before the deadline", "ended")
        return Countdown(deadline, "met: finished before the deadline", "met")
    if sla.breached or left <= 0:
        return Countdown(deadline, f"breached {span(left)} ago", "breached")
    return Countdown(deadline, f"{span(left)} left", "soon" if left < SOON_SECONDS else "ok")
