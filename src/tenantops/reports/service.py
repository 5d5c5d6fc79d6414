"""The weekly SLA/SLO report: built from ``queries``, rendered by ``render``, written with digests.

The report of a week that is over is final: its figures come only from
deadlines decided inside the week (see ``tenantops.reports.queries``) and
its ``generated_at`` is passed in by the runbook (the run's start), so a re-run
rewrites the same bytes and the recorded SHA-256 still verifies the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from tenantops.errors import Unprocessable
from tenantops.kit.clock import utcnow
from tenantops.kit.documents import RenderedReport
from tenantops.kit.files import write_atomic, write_files
from tenantops.reports import queries
from tenantops.reports.queries import Window
from tenantops.reports.render import render_csv, render_html
from tenantops.reports.schemas import (
    ALL,
    Attainment,
    Change,
    ErrorBudget,
    RunbookWeek,
    SlaReport,
    WeekFigures,
)
from tenantops.reports.weeks import IsoWeek, last_full_week

if TYPE_CHECKING:
    from tenantops.config import Settings

FORMATS = ("json", "html", "csv")
FILE_FORMATS = ("html", "csv")
CONTENT_TYPES = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}
# The SLO of every runbook with a deadline: 95 % of its runs in time, over the
# four weeks that end with the reported one (decision 0034).
SLO_TARGET = 0.95
BUDGET_WINDOW = timedelta(days=28)


def report_week(text: str | None, now: datetime | None = None) -> IsoWeek:
    """The ``YYYY-Www`` asked for (422 when malformed), or the last full week."""
    return IsoWeek.parse(text) if text else last_full_week(now)


def _figures(session: Session, week: IsoWeek, now: datetime) -> WeekFigures:
    w = Window(week.start, week.end, min(week.end, now))
    rows = queries.runbook_weeks(session, w)
    overall = RunbookWeek(runbook_id=ALL)
    for r in rows.values():
        for name in ("started", "finished", "succeeded", "failed", "cancelled"):
            setattr(overall, name, getattr(overall, name) + getattr(r, name))
        overall.runs = Attainment(
            met=overall.runs.met + r.runs.met, missed=overall.runs.missed + r.runs.missed
        )
        overall.steps = Attainment(
            met=overall.steps.met + r.steps.met, missed=overall.steps.missed + r.steps.missed
        )
    return WeekFigures(
        week=week.label,
        start=week.start,
        end=week.end,
        overall=overall,
        runbooks=list(rows.values()),
        activation=queries.activation(session, w),
    )


def _points(now: float | None, before: float | None) -> float | None:
    return None if now is None or before is None else round((now - before) * 100, 2)


def _changes(this: WeekFigures, last: WeekFigures) -> list[Change]:
    ids = [ALL, *sorted({r.runbook_id for r in [*this.runbooks, *last.runbooks]})]
    changes = []
    for runbook_id in ids:
        a, b = this.runbook(runbook_id), last.runbook(runbook_id)
        changes.append(
            Change(
                runbook_id=runbook_id,
                started=a.started - b.started,
                finished=a.finished - b.finished,
                runs_missed=a.runs.missed - b.runs.missed,
                run_attainment_points=_points(a.runs.ratio, b.runs.ratio),
                step_attainment_points=_points(a.steps.ratio, b.steps.ratio),
            )
        )
    return changes


def _error_budgets(session: Session, week: IsoWeek, cutoff: datetime) -> list[ErrorBudget]:
    window = Window(week.end - BUDGET_WINDOW, week.end, cutoff)
    budgets = []
    for tid, tname, runbook_id, met, missed in queries.run_outcomes(session, window):
        judged = met + missed
        allowed = round((1 - SLO_TARGET) * judged, 6)
        budgets.append(
            ErrorBudget(
                tenant_id=tid,
                tenant_name=tname,
                runbook_id=runbook_id,
                judged=judged,
                missed=missed,
                target=SLO_TARGET,
                allowed=allowed,
                consumed=round(missed / allowed, 4) if allowed else None,
            )
        )
    # Most consumed first: what governance must look at.
    budgets.sort(key=lambda b: (-(b.consumed or 0), b.tenant_name or "", b.runbook_id))
    return budgets


def build_report(session: Session, *, week: IsoWeek, now: datetime | None = None) -> SlaReport:
    """The SLA/SLO report of ``week`` as of ``now`` (a week not over is cut off at ``now``)."""
    now = (now or utcnow()).astimezone(UTC)
    cutoff = min(week.end, now)
    this = _figures(session, week, now)
    last = _figures(session, week.previous(), now)
    return SlaReport(
        week=week.label,
        start=week.start,
        end=week.end,
        generated_at=now,
        cutoff=cutoff,
        complete=now >= week.end,
        slo_target=SLO_TARGET,
        budget_window_days=BUDGET_WINDOW.days,
        this_week=this,
        previous_week=last,
        change=_changes(this, last),
        breaches=queries.breaches(session, Window(week.start, week.end, cutoff)),
        error_budgets=_error_budgets(session, week, cutoff),
        overdue_approvals=queries.overdue_approvals(session, cutoff),
    )


def render(report: SlaReport, fmt: str) -> bytes:
    """One format of the report as bytes (what the API returns and the files hold)."""
    if fmt == "json":
        return report.model_dump_json(indent=2).encode()
    if fmt == "html":
        return render_html(report).encode()
    if fmt == "csv":
        return render_csv(report).encode()
    raise Unprocessable(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}", param="format")


@dataclass(frozen=True)
class WrittenReport:
    """Files written for one week: path and SHA-256 per format, plus the figures."""

    week: str
    paths: dict[str, Path]
    sha256: dict[str, str]
    report: SlaReport


def report_dir(settings: Settings, week: IsoWeek) -> Path:
    return settings.data_dir / "reports" / week.label


def write_report(
    settings: Settings,
    session: Session,
    week: IsoWeek,
    formats: tuple[str, ...] = FILE_FORMATS,
    *,
    now: datetime | None = None,
) -> WrittenReport:
    """Write the week's report under ``<data_dir>/reports/<YYYY-Www>/``, each file atomically.

    Every format is rendered before any is written; a ``.sha256`` file beside
    them (``sha256sum -c`` format) lets an auditor check the files offline.
    """
    report = build_report(session, week=week, now=now)
    bodies = {fmt: render(report, fmt) for fmt in dict.fromkeys(formats)}
    written = write_files(report_dir(settings, week), report.file_stem, bodies)
    paths = {fmt: path for fmt, (path, _) in written.items()}
    digests = {fmt: digest for fmt, (_, digest) in written.items()}
    sums = "".join(f"{digests[fmt]}  {paths[fmt].name}\n" for fmt in paths)
    write_atomic(report_dir(settings, week) / f"{report.file_stem}.sha256", sums.encode())
    return WrittenReport(week=week.label, paths=paths, sha256=digests, report=report)


def report_for(
    session: Session, *, week: str | None, fmt: str, now: datetime | None = None
) -> RenderedReport:
    """The report of ``week`` (default: the last full week) in ``fmt``, rendered now."""
    if fmt not in FORMATS:
        raise Unprocessable(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    report = build_report(session, week=report_week(week, now), now=now)
    return RenderedReport(
        body=render(report, fmt),
        content_type=CONTENT_TYPES[fmt],
        filename=f"{report.file_stem}.{fmt}",
    )
