"""The weekly SLA/SLO report as a self-contained HTML page and as CSV (pure, no I/O).

The page stands alone (mailed, archived, opened offline): inline CSS shared
with the cost report, no script, no external asset. Every status has a word
beside its colour.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime

import jinja2

from tenantops.kit.documents import CSS, csv_safe
from tenantops.reports.schemas import ALL, RunbookWeek, SlaReport, WeekFigures


def duration(value: float | None) -> str:
    """Seconds in the unit that reads best: ``42 s``, ``25.0 min``, ``2.0 h``, ``3.0 d``."""
    if value is None:
        return "–"
    sign, value = ("-" if value < 0 else ""), abs(value)
    if value < 59.5:
        return f"{sign}{value:.0f} s"
    if value < 3600:
        return f"{sign}{value / 60:.1f} min"
    if value < 86400:
        return f"{sign}{value / 3600:.1f} h"
    return f"{sign}{value / 86400:.1f} d"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def points(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f} pp"


def signed(value: int) -> str:
    return f"{value:+d}"


def when(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def runbook_name(runbook_id: str) -> str:
    return "All runbooks" if runbook_id == ALL else runbook_id


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>SLA/SLO report {{ r.week }}</title>
<style>{{ css }}
.met { color: #1d6b2f; font-weight: 600; }
</style>
</head>
<body>
<main>
<h1>Weekly SLA/SLO report {{ r.week }}</h1>
<p class="meta">{{ when(r.start) }} to {{ when(r.end) }} (ISO week, UTC) ·
generated {{ when(r.generated_at) }}{% if not r.complete %} ·
<strong>the week is not over: figures as of {{ when(r.cutoff) }}</strong>{% endif %}</p>

<h2>Summary</h2>
<dl class="summary">
<dt>Runs started / finished</dt><dd>{{ t.overall.started }} / {{ t.overall.finished }}
 ({{ signed(c0.started) }} / {{ signed(c0.finished) }} on {{ p.week }})</dd>
<dt>Run deadlines met</dt><dd>{{ t.overall.runs.met }} of {{ t.overall.runs.judged }}
 = {{ percent(t.overall.runs.ratio) }} ({{ points(c0.run_attainment_points) }})</dd>
<dt>Step deadlines met</dt><dd>{{ t.overall.steps.met }} of {{ t.overall.steps.judged }}
 = {{ percent(t.overall.steps.ratio) }} ({{ points(c0.step_attainment_points) }})</dd>
<dt>Breaches</dt><dd>{{ r.breaches | length }}</dd>
<dt>Activation (approval → active)</dt><dd>{{ t.activation.activated }} tenant(s);
 p50 {{ duration(t.activation.p50_seconds) }}, p90 {{ duration(t.activation.p90_seconds) }};
 {{ t.activation.within_sla }} within 30 min
 (previous week: p50 {{ duration(p.activation.p50_seconds) }},
 p90 {{ duration(p.activation.p90_seconds) }})</dd>
<dt>Error budgets spent</dt><dd>{{ exhausted }} of {{ r.error_budgets | length }}
 (SLO {{ percent(r.slo_target) }} over {{ r.budget_window_days }} days)</dd>
<dt>Approvals past their SLA</dt><dd>{{ r.overdue_approvals | length }}</dd>
</dl>

<h2>Runbooks</h2>
{% if t.runbooks or p.runbooks %}
<table>
<thead><tr><th scope="col">Runbook</th><th class="num" scope="col">Started</th>
<th class="num" scope="col">Finished</th><th class="num" scope="col">Succeeded</th>
<th class="num" scope="col">Failed</th><th class="num" scope="col">Runs in SLA</th>
<th class="num" scope="col">Steps in SLA</th>
<th class="num" scope="col">Change on {{ p.week }}</th></tr></thead>
<tbody>
{% for c in r.change %}{% set a = t.runbook(c.runbook_id) %}
<tr><th scope="row">{{ runbook_name(c.runbook_id) }}</th>
<td class="num">{{ a.started }}</td><td class="num">{{ a.finished }}</td>
<td class="num">{{ a.succeeded }}</td><td class="num">{{ a.failed }}</td>
<td class="num{% if a.runs.missed %} over{% endif %}">{{ a.runs.met }}/{{ a.runs.judged }}
 {{ percent(a.runs.ratio) }}{% if a.runs.missed %} ({{ a.runs.missed }} missed){% endif %}</td>
<td class="num{% if a.steps.missed %} over{% endif %}">{{ a.steps.met }}/{{ a.steps.judged }}
 {{ percent(a.steps.ratio) }}</td>
<td class="num">runs {{ signed(c.started) }}, SLA {{ points(c.run_attainment_points) }}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p class="empty">No runs this week or the week before.</p>
{% endif %}

<h2>Breaches</h2>
{% if r.breaches %}
<table>
<thead><tr><th scope="col">Deadline</th><th scope="col">Runbook</th><th scope="col">Step</th>
<th scope="col">Tenant</th><th scope="col">Run</th><th scope="col">Status</th>
<th class="num" scope="col">Late by</th></tr></thead>
<tbody>
{% for b in r.breaches %}
<tr><td>{{ when(b.deadline) }}</td><td>{{ b.runbook_id }}</td><td>{{ b.step or "whole run" }}</td>
<td>{{ b.tenant_name or "–" }}</td><td><code>{{ b.run_id }}</code></td>
<td>{{ "open at cut-off" if b.finished_at is none else b.status }}</td>
<td class="num over">{{ "–, failed" if b.late_seconds is none
 else duration(b.late_seconds) }}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p class="met">No deadline missed this week.</p>
{% endif %}

<h2>Error budgets</h2>
<p>SLO: {{ percent(r.slo_target) }} of a tenant's runs of a runbook succeed by their deadline,
over the {{ r.budget_window_days }} days ending {{ when(r.end) }}. The budget is the misses
the SLO allows; 100 % consumed means it is spent.</p>
{% if r.error_budgets %}
<table>
<thead><tr><th scope="col">Tenant</th><th scope="col">Runbook</th>
<th class="num" scope="col">Judged</th><th class="num" scope="col">Missed</th>
<th class="num" scope="col">Allowed</th><th class="num" scope="col">Consumed</th></tr></thead>
<tbody>
{% for e in r.error_budgets %}
<tr><td>{{ e.tenant_name or "(no tenant)" }}</td><td>{{ e.runbook_id }}</td>
<td class="num">{{ e.judged }}</td><td class="num">{{ e.missed }}</td>
<td class="num">{{ "%.2f" % e.allowed }}</td>
<td class="num{% if e.exhausted %} over{% endif %}">{{ percent(e.consumed) }}
{%- if e.exhausted %} spent{% endif %}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p>No run with a deadline was decided in the window.</p>
{% endif %}

<h2>Approvals past their SLA</h2>
{% if r.overdue_approvals %}
<table>
<thead><tr><th scope="col">Runbook</th><th scope="col">Gate</th><th scope="col">Tenant</th>
<th scope="col">Run</th><th scope="col">Waiting since</th><th scope="col">Deadline</th>
<th class="num" scope="col">Overdue by</th></tr></thead>
<tbody>
{% for o in r.overdue_approvals %}
<tr><td>{{ o.runbook_id }}</td><td>{{ o.step }}</td><td>{{ o.tenant_name or "–" }}</td>
<td><code>{{ o.run_id }}</code></td><td>{{ when(o.waiting_since) }}</td>
<td>{{ when(o.deadline) }}</td><td class="num over">{{ duration(o.overdue_seconds) }}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p class="met">No approval open past its SLA at {{ when(r.cutoff) }}.</p>
{% endif %}

<h2>How the figures are computed</h2>
<p>A deadline is met when the run (or step) succeeded by it, counted in the week it
finished; otherwise it is missed, counted in the week of the deadline. A run cancelled
before its deadline is not judged. Activation time runs from a tenant's second approval
to its activation.</p>
</main>
</body>
</html>
"""

_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_page = _env.from_string(PAGE)


def render_html(report: SlaReport) -> str:
    """A self-contained page: inline CSS, no script, no external asset."""
    return _page.render(
        r=report,
        t=report.this_week,
        p=report.previous_week,
        c0=report.change[0],
        css=CSS,
        exhausted=sum(1 for e in report.error_budgets if e.exhausted),
        duration=duration,
        percent=percent,
        points=points,
        signed=signed,
        when=when,
        runbook_name=runbook_name,
    )


COLUMNS = (
    "week",
    "section",
    "runbook_id",
    "tenant_id",
    "tenant_name",
    "run_id",
    "step",
    "metric",
    "value",
)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _runbook_rows(section: str, figures: WeekFigures) -> Iterable[tuple[object, ...]]:
    rows: list[RunbookWeek] = [figures.overall, *figures.runbooks]
    for r in rows:
        for metric in ("started", "finished", "succeeded", "failed", "cancelled"):
            yield section, r.runbook_id, None, None, None, None, metric, getattr(r, metric)
        for kind, att in (("runs", r.runs), ("steps", r.steps)):
            yield section, r.runbook_id, None, None, None, None, f"{kind}_met", att.met
            yield section, r.runbook_id, None, None, None, None, f"{kind}_missed", att.missed
            yield section, r.runbook_id, None, None, None, None, f"{kind}_attainment", att.ratio
    a = figures.activation
    for metric in ("activated", "within_sla", "p50_seconds", "p90_seconds"):
        yield f"{section}_activation", None, None, None, None, None, metric, getattr(a, metric)


def _rows(r: SlaReport) -> Iterable[tuple[object, ...]]:
    for metric in (
        "start",
        "end",
        "generated_at",
        "cutoff",
        "complete",
        "slo_target",
        "budget_window_days",
    ):
        yield "summary", None, None, None, None, None, metric, getattr(r, metric)
    yield from _runbook_rows("week", r.this_week)
    yield from _runbook_rows("previous_week", r.previous_week)
    for c in r.change:
        for metric in (
            "started",
            "finished",
            "runs_missed",
            "run_attainment_points",
            "step_attainment_points",
        ):
            yield "change", c.runbook_id, None, None, None, None, metric, getattr(c, metric)
    head: tuple[object, ...]
    for b in r.breaches:
        head = ("breach", b.runbook_id, b.tenant_id, b.tenant_name, b.run_id, b.step)
        for metric in ("deadline", "finished_at", "status", "late_seconds"):
            yield (*head, metric, getattr(b, metric))
    for e in r.error_budgets:
        head = ("error_budget", e.runbook_id, e.tenant_id, e.tenant_name, None, None)
        for metric in ("judged", "missed", "target", "allowed", "consumed"):
            yield (*head, metric, getattr(e, metric))
    for o in r.overdue_approvals:
        head = ("overdue_approval", o.runbook_id, o.tenant_id, o.tenant_name, o.run_id, o.step)
        for metric in ("waiting_since", "deadline", "overdue_seconds"):
            yield (*head, metric, getattr(o, metric))


def render_csv(report: SlaReport) -> str:
    """RFC 4180 text (CRLF, header row), one figure a row, long form (``COLUMNS``).

    ``section`` says what a row is: ``summary``, ``week`` / ``previous_week``
    (per runbook, ``*`` = all; activation in ``…_activation``), ``change``,
    ``breach`` (one row per field of a breach, keyed by run and step),
    ``error_budget`` and ``overdue_approval``. Empty value: none.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in _rows(report):
        writer.writerow([report.week, *(csv_safe(_text(v)) for v in row)])
    return out.getvalue()
