"""Render a notification from its Jinja2 template, per stakeholder.

``templates/{name}.{audience}.txt`` is used when it exists, else
``templates/{name}.txt``; the first line is ``Subject: …``, then a blank line,
then the body. Plain text: nothing is HTML-escaped. Templates see ``tenant``
(the TenantRead fields), ``vars`` (the step's params), ``audience``,
``dashboard_url`` and ``run_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from tenantops.drivers.errors import DriverError, Retry

TEMPLATES = Path(__file__).parent / "templates"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # noqa: S701 - plain-text e-mail, never HTML
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


def template_names() -> list[str]:
    """Every template name (``suspension``, ``onboarding_pack``, …)."""
    return sorted({p.name.split(".")[0] for p in TEMPLATES.glob("*.txt")})


def render(name: str, *, audience: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """``(subject, body)`` of template ``name`` for ``audience``."""
    if not name.replace("_", "").isalnum():
        raise DriverError(f"{name!r} is not a template name", retry=Retry.PERMANENT)
    try:
        template = _env.select_template([f"{name}.{audience}.txt", f"{name}.txt"])
        text = template.render({**context, "audience": audience})
    except jinja2.TemplatesNotFound as exc:
        raise DriverError(
            f"no template {name!r} (known: {', '.join(template_names())})", retry=Retry.PERMANENT
        ) from exc
    except jinja2.TemplateError as exc:
        raise DriverError(f"template {name!r} failed: {exc}", retry=Retry.PERMANENT) from exc
    head, _, body = text.partition("\n\n")
    if not head.startswith("Subject:"):
        raise DriverError(f"template {name!r} has no Subject line", retry=Retry.PERMANENT)
    subject = " ".join(head.removeprefix("Subject:").split())
    return subject[:300], body.strip() + "\n"
