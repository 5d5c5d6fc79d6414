"""What every report of the product shares: a rendered format, a standalone page's CSS, CSV cells.

The monthly cost report (``finops``) and the weekly SLA/SLO report
(``reports``) both hand their API a ``RenderedReport``, inline ``CSS`` in
their HTML, so a page opens offline, mailed or archived, and the two look
alike, and pass their CSV cells through ``csv_safe``. No domain knowledge: the
class names are generic (``.num``, ``.over``, ``.empty``, ``dl.summary``,
figures and SVG charts).
"""

from __future__ import annotations

from dataclasses import dataclass

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(text: str) -> str:
    """Prefix an apostrophe to text a spreadsheet would run as a formula (CSV injection)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


@dataclass(frozen=True)
class RenderedReport:
    """One format of a report, ready to send: bytes, content type, file name."""

    body: bytes
    content_type: str
    filename: str


CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1b1b1b; background: #ffffff; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #767676; }
.meta { color: #4a4a4a; margin-top: 0; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: .25rem 1.5rem; }
dl.summary dt { font-weight: 600; }
dl.summary dd { margin: 0; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { border-bottom: 1px solid #d0d0d0; padding: .3rem .5rem; text-align: left;
         vertical-align: top; }
th { background: #f2f2f2; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.over { color: #a3001b; font-weight: 700; }
.empty { border: 2px solid #767676; padding: 1rem; font-weight: 600; }
figure { margin: 1rem 0; }
figcaption { color: #4a4a4a; font-size: .9rem; }
svg { width: 100%; height: auto; max-width: 60rem; }
svg text { font-family: system-ui, sans-serif; font-size: 12px; fill: #1b1b1b; }
.legend span { margin-right: 1.5rem; }
.key { display: inline-block; width: 1.4rem; height: .8rem; vertical-align: middle;
       margin-right: .3rem; }
"""
