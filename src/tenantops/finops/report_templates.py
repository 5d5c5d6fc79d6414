"""Jinja2 templates of the cost report, kept as strings so they ship with the code.

A template file would need a package-data entry to reach a wheel; a module
needs nothing. The page must stand alone (mailed to finance, opened offline),
so the CSS (``tenantops.kit.documents.CSS``, shared with the SLA report) is
inline and the charts are SVG computed in ``report_render``.
Colours pass WCAG AA on white (text ≥ 4.5:1) and every colour has a word
beside it: over-budget bars and rows also say "over budget".
"""

from __future__ import annotations

CHARTS = """
{% macro hbar(c) %}
<figure>
<svg role="img" aria-labelledby="{{ c.chart_id }}-t {{ c.chart_id }}-d"
     viewBox="0 0 {{ width }} {{ c.height }}" xmlns="http://www.w3.org/2000/svg">
<title id="{{ c.chart_id }}-t">{{ c.title }}</title>
<desc id="{{ c.chart_id }}-d">{{ c.desc }}</desc>
{% for b in c.rows %}
<g>
<title>{{ b.label }}: {{ b.value_text }}</title>
<text x="{{ geo.label_w }}" y="{{ b.y + 15 }}" text-anchor="end">{{ b.label }}</text>
<rect x="{{ geo.bar_x0 }}" y="{{ b.y + 3 }}" width="{{ '%.1f' % b.width }}" height="18"
      fill="{{ '#a3001b' if b.over else '#1f5fa8' }}"/>
{% if b.budget_x is not none %}
<line x1="{{ '%.1f' % b.budget_x }}" x2="{{ '%.1f' % b.budget_x }}" y1="{{ b.y }}"
      y2="{{ b.y + 24 }}" stroke="#000000" stroke-width="3"/>
{% endif %}
<text x="{{ geo.bar_x0 + geo.bar_w + 12 }}" y="{{ b.y + 15 }}"
      {% if b.over %}font-weight="700" style="fill:#a3001b"{% endif %}>{{ b.value_text }}</text>
</g>
{% endfor %}
</svg>
<figcaption>{{ c.title }}. Bars: cost; black marker: budget;
red bars are over budget and say so.</figcaption>
</figure>
{% endmacro %}

{% macro line(c) %}
<figure>
<svg role="img" aria-labelledby="{{ c.chart_id }}-t {{ c.chart_id }}-d"
     viewBox="0 0 {{ width }} {{ geo.top + geo.plot_h + 40 }}" xmlns="http://www.w3.org/2000/svg">
<title id="{{ c.chart_id }}-t">{{ c.title }}</title>
<desc id="{{ c.chart_id }}-d">{{ c.desc }}</desc>
{% for t in c.y_ticks %}
<line x1="{{ geo.left }}" x2="{{ geo.left + geo.plot_w }}" y1="{{ '%.1f' % t.at }}"
      y2="{{ '%.1f' % t.at }}" stroke="#d0d0d0"/>
<text x="{{ geo.left - 6 }}" y="{{ '%.1f' % (t.at + 4) }}" text-anchor="end">{{ t.label }}</text>
{% endfor %}
{% for t in c.x_ticks %}
<text x="{{ '%.1f' % t.at }}" y="{{ geo.top + geo.plot_h + 18 }}"
      text-anchor="middle">{{ t.label }}</text>
{% endfor %}
<path d="{{ c.area }}" fill="#cfe0f5"/>
<polyline points="{{ c.line }}" fill="none" stroke="#1f5fa8" stroke-width="2.5"/>
{% if c.forecast %}
<polyline points="{{ c.forecast }}" fill="none" stroke="#1f5fa8" stroke-width="2"
          stroke-dasharray="2 4"/>
{% endif %}
{% if c.pace %}
<polyline points="{{ c.pace }}" fill="none" stroke="#4a4a4a" stroke-width="2"
          stroke-dasharray="8 5"/>
{% endif %}
</svg>
<figcaption class="legend">
<span><span class="key" style="background:#1f5fa8"></span>cumulative cost</span>
<span><span class="key" style="border-top:3px dotted #1f5fa8"></span>forecast</span>
{% if c.pace %}<span><span class="key" style="border-top:3px dashed #4a4a4a"></span>budget pace
</span>{% endif %}
</figcaption>
</figure>
{% endmacro %}

{% macro vbar(c) %}
<figure>
<svg role="img" aria-labelledby="{{ c.chart_id }}-t {{ c.chart_id }}-d"
     viewBox="0 0 {{ width }} {{ geo.top + geo.plot_h + 40 }}" xmlns="http://www.w3.org/2000/svg">
<title id="{{ c.chart_id }}-t">{{ c.title }}</title>
<desc id="{{ c.chart_id }}-d">{{ c.desc }}</desc>
<line x1="{{ geo.left }}" x2="{{ geo.left + geo.plot_w }}" y1="{{ geo.top + geo.plot_h }}"
      y2="{{ geo.top + geo.plot_h }}" stroke="#767676"/>
{% if c.budget_y is not none %}
<line x1="{{ geo.left }}" x2="{{ geo.left + geo.plot_w }}" y1="{{ '%.1f' % c.budget_y }}"
      y2="{{ '%.1f' % c.budget_y }}" stroke="#4a4a4a" stroke-width="2" stroke-dasharray="8 5"/>
{% endif %}
{% for b in c.bars %}
<g>
<title>{{ b.label }}: {{ b.value_text }} {{ r.currency }}</title>
<rect x="{{ '%.1f' % b.x }}" y="{{ '%.1f' % b.y }}" width="{{ '%.1f' % c.bar_width }}"
      height="{{ '%.1f' % b.height }}" fill="{{ '#ffffff' if b.current else '#1f5fa8' }}"
      stroke="#1f5fa8" stroke-width="2"/>
{% set text_w = b.value_text | length * 6 + 6 %}
<rect x="{{ '%.1f' % (b.x + c.bar_width / 2 - text_w / 2) }}" y="{{ '%.1f' % (b.y - 18) }}"
      width="{{ text_w }}" height="15" fill="#ffffff"/>
<text x="{{ '%.1f' % (b.x + c.bar_width / 2) }}" y="{{ '%.1f' % (b.y - 6) }}"
      text-anchor="middle" style="font-size:10px">{{ b.value_text }}</text>
<text x="{{ '%.1f' % (b.x + c.bar_width / 2) }}" y="{{ geo.top + geo.plot_h + 18 }}"
      text-anchor="middle">{{ b.label }}</text>
{% if b.current %}
<text x="{{ '%.1f' % (b.x + c.bar_width / 2) }}" y="{{ geo.top + geo.plot_h + 34 }}"
      text-anchor="middle">to date</text>
{% endif %}
</g>
{% endfor %}
</svg>
<figcaption>{{ c.title }}. The outlined bar is the current month so far.
{% if c.budget_label %}Dashed line: {{ c.budget_label }}.{% endif %}</figcaption>
</figure>
{% endmacro %}
"""

REPORT = """<!DOCTYPE html>
{% from "charts.html" import hbar, line, vbar with context %}
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tenantops">
<title>{{ r.title }}</title>
<style>{{ css }}</style>
</head>
<body>
<header>
<h1>{{ r.title }}</h1>
<p class="meta">Month {{ r.month }} · currency {{ r.currency }} · generated {{ generated }}</p>
</header>
<main>
<section aria-labelledby="h-summary">
<h2 id="h-summary">Summary</h2>
{% if not r.has_cost_data %}
<p class="empty" role="status">{{ r.empty_message }}</p>
{% endif %}
<dl class="summary">
{% if tenant %}
<dt>Tenant</dt><dd>{{ tenant.name }} ({{ tenant.tenant_id }})</dd>
<dt>Budget</dt><dd>{{ tenant_row.budget }}</dd>
<dt>Cost to date</dt><dd>{{ tenant_row.cost }}</dd>
<dt>Forecast to month end</dt><dd>{{ tenant_row.forecast }}</dd>
<dt>Budget used</dt><dd>{{ tenant_row.ratio }}</dd>
<dt>Status</dt><dd{% if tenant_row.over %} class="over"{% endif %}>{{ tenant_row.status }}</dd>
<dt>Thresholds crossed</dt><dd>{{ tenant_row.thresholds or "none" }}</dd>
{% else %}
<dt>Tenants</dt><dd>{{ "{:,}".format(r.tenants | length) }}</dd>
<dt>Cost to date</dt><dd>{{ money(r.total_cost) }}</dd>
<dt>Forecast to month end</dt><dd>{{ money(r.total_forecast) }}</dd>
<dt>Budgets (sum)</dt><dd>{{ money(r.total_budget) if r.total_budget is not none else "—" }}</dd>
<dt>Over budget</dt><dd{% if over_n %} class="over"{% endif %}>{{ tenants(over_n) }}</dd>
<dt>Forecast over budget</dt><dd>{{ tenants(forecast_over_n) }}</dd>
<dt>Without a budget</dt><dd>{{ tenants(no_budget_n) }}</dd>
{% endif %}
</dl>
</section>
{% if r.tenants %}
<section aria-labelledby="h-budget">
<h2 id="h-budget">Cost against budget</h2>
{{ hbar(cost_chart) }}
</section>
{% endif %}
{% if trend_chart %}
<section aria-labelledby="h-trend">
<h2 id="h-trend">Trend</h2>
{{ line(trend_chart) }}
{{ vbar(months_chart) }}
</section>
{% endif %}
{% if tenant %}
<section aria-labelledby="h-services">
<h2 id="h-services">Top services</h2>
{% if tenant.top_services %}
<table>
<caption class="meta">The {{ tenant.top_services | length }} costliest services this month</caption>
<thead><tr><th scope="col">Service</th><th scope="col" class="num">Cost to date</th>
<th scope="col" class="num">Share</th></tr></thead>
<tbody>
{% for name, amount in tenant.top_services %}
<tr><th scope="row">{{ name }}</th><td class="num">{{ money(amount) }}</td>
<td class="num">{{ share(amount) }}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p>No service costs recorded.</p>
{% endif %}
</section>
{% else %}
<section aria-labelledby="h-tenants">
<h2 id="h-tenants">Tenants</h2>
{% if rows %}
<table>
<caption class="meta">All {{ rows | length }} tenants, costliest first</caption>
<thead><tr>
<th scope="col">Tenant</th><th scope="col">ID</th><th scope="col" class="num">Budget</th>
<th scope="col" class="num">Cost to date</th><th scope="col" class="num">Forecast</th>
<th scope="col" class="num">Budget used</th><th scope="col">Status</th>
<th scope="col">Thresholds crossed</th><th scope="col">Top service</th>
<th scope="col" class="num">Actions</th>
</tr></thead>
<tbody>
{% for w in rows %}
<tr><th scope="row">{{ w.name }}</th><td>{{ w.tenant_id }}</td><td class="num">{{ w.budget }}</td>
<td class="num">{{ w.cost }}</td><td class="num">{{ w.forecast }}</td>
<td class="num">{{ w.ratio }}</td><td{% if w.over %} class="over"{% endif %}>{{ w.status }}</td>
<td>{{ w.thresholds }}</td><td>{{ w.top_service }}</td><td class="num">{{ w.actions }}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p>No tenants in this report.</p>
{% endif %}
</section>
{% endif %}
<section aria-labelledby="h-actions">
<h2 id="h-actions">Actions taken</h2>
{% if actions %}
<table>
<thead><tr><th scope="col">When (UTC)</th>{% if not tenant %}<th scope="col">Tenant</th>{% endif %}
<th scope="col">Kind</th><th scope="col">Summary</th></tr></thead>
<tbody>
{% for t, when, a in actions %}
<tr><td>{{ when }}</td>
{% if not tenant %}<td>{{ t.name }}</td>{% endif %}
<td>{{ a.kind }}</td><td>{{ a.summary }}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p>No actions this month.</p>
{% endif %}
</section>
</main>
<footer><p class="meta">tenantops cost report · figures in {{ r.currency }}, two decimals,
rounded half up · budget used = cost to date ÷ budget.</p></footer>
</body>
</html>
"""

TEMPLATES: dict[str, str] = {"charts.html": CHARTS, "report.html": REPORT}
