"""Step parameters and waits as templates: rendered with the run's context, sandboxed.

A template is user input (a runbook file): the sandbox keeps it from reaching
Python objects, ``StrictUndefined`` turns a typo into an error instead of an
empty string, and ``"{{ x }}"`` alone keeps ``x``'s type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.runbooks.models import Run, RunStep


class _Templates(SandboxedEnvironment):
    """Jinja where ``a.b`` on a mapping means the key ``b`` before any attribute.

    Plain Jinja prefers the attribute, so an output named ``items``, ``keys``
    or ``values`` would render as a bound ``dict`` method.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_templates = _Templates(undefined=StrictUndefined, autoescape=False)
_WHOLE_EXPRESSION = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def templated(value: Any) -> bool:
    """Whether ``value`` holds a template anywhere (plain values need no context)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(templated(v) for v in value.values())
    if isinstance(value, list):
        return any(templated(v) for v in value)
    return False


def parse(value: str) -> nodes.Template:
    """The syntax tree of the templated string ``value``, compiled first as ``render`` compiles it.

    Raises the ``jinja2.TemplateError`` (bad syntax, an unknown filter or test)
    that rendering would, so a runbook can be checked before it runs.
    """
    whole = _WHOLE_EXPRESSION.fullmatch(value)
    if whole is not None:
        _templates.compile_expression(whole.group(1))
        return _templates.parse(value)
    tree = _templates.parse(value)
    _templates.compile(tree)
    return tree


def context_of(session: Session, run: Run) -> dict[str, Any]:
    """What a template sees: the run, its inputs and the outputs of its finished steps."""
    outputs = {
        name: output or {}
        for name, output in session.execute(
            select(RunStep.name, RunStep.output).where(
                RunStep.run_id == run.id, RunStep.status == "succeeded"
            )
        )
    }
    return {**run_context(run), "steps": outputs}


class RunFields(Protocol):
    """What a template knows of its run (a ``Run`` row, or a row read with these names)."""

    @property
    def id(self) -> str: ...
    @property
    def runbook_id(self) -> str: ...
    @property
    def tenant_id(self) -> str | None: ...
    @property
    def started_by(self) -> str: ...
    @property
    def inputs(self) -> dict[str, Any]: ...


def run_context(run: RunFields) -> dict[str, Any]:
    """The run and its inputs as a template sees them (a gate's prompt sees only these)."""
    return {
        "run": {
            "id": run.id,
            "runbook": run.runbook_id,
            "tenant_id": run.tenant_id,
            "started_by": run.started_by,
        },
        "inputs": run.inputs,
    }


def prompt_text(prompt: str, context: dict[str, Any]) -> str:
    """A gate's prompt with its run filled in (``{{ run.id }}``, ``{{ inputs.reason }}``).

    For people to read: a prompt that cannot render (``validate`` refuses one that
    never can) is shown as written rather than failing the page that shows it.
    """
    if not templated(prompt):
        return prompt
    try:
        return _templates.from_string(prompt).render({**context, "steps": {}})
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError):
        return prompt


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render templated strings in ``value`` (recursively) with ``context``."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        whole = _WHOLE_EXPRESSION.fullmatch(value)
        if whole is not None:  # "{{ x }}" alone keeps x's type (a list stays a list)
            return _templates.compile_expression(whole.group(1))(**context)
        return _templates.from_string(value).render(context)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value
