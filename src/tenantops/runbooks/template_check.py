"""A runbook's templates checked when it is loaded: they compile, and read only what will exist.

A step's ``params`` and a templated ``wait`` are rendered only when the step
runs, with the run's inputs and the outputs of the steps that succeeded before
it; a gate's ``prompt`` whenever people are shown it, with the run and its
inputs only. Without this check a broken template, a step name that does not exist (or
names a later step, whose output cannot exist yet) or an input the runbook does
not declare (the engine refuses to start a run with one) is found by a run
failing at that step, not by ``runbooks validate``.

Only literal names are checked (``steps.x``, ``steps['x']``, ``inputs.x``);
a computed key, or a template that rebinds ``steps`` or ``inputs``, is left to
the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError, nodes

from tenantops.runbooks.templating import parse, templated

if TYPE_CHECKING:
    from tenantops.runbooks.spec import Runbook

_ROOTS = ("steps", "inputs")


def template_problems(runbook: Runbook) -> list[str]:
    """``path: problem`` for each templated string of ``runbook`` that cannot render, in order."""
    names = [s.name for s in runbook.steps]
    found: list[str] = []
    for n, step in enumerate(runbook.steps):
        strings = list(_strings(step.params, f"steps.{n}.params"))
        if step.wait is not None and templated(step.wait):
            strings.append((f"steps.{n}.wait", step.wait))
        for path, text in strings:
            found += [
                f"{path}: step {step.name!r} {problem}"
                for problem in _problems(text, step.name, names[:n], names, runbook)
            ]
        prompt = step.gate.prompt if step.gate is not None else None
        if prompt is not None and templated(prompt):
            found += [
                f"steps.{n}.gate.prompt: step {step.name!r} {problem}"
                for problem in _problems(prompt, step.name, None, names, runbook)
            ]
    return found


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Each templated string in ``value`` with its path, walked as ``render`` walks it."""
    if isinstance(value, str):
        if templated(value):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}")


def _problems(
    text: str, step: str, earlier: list[str] | None, names: list[str], runbook: Runbook
) -> list[str]:
    """What is wrong with ``text``; ``earlier`` is None for a gate's prompt, which is shown
    to people at any time and so sees the run and its inputs, never step outputs."""
    error, references = _read(text)
    if error is not None:
        return [f"has a template that does not compile: {error}"]
    problems: dict[str, None] = {}  # ordered, each reference once
    for root, key, attribute in references:
        known = names if root == "steps" else runbook.inputs
        if attribute and key not in known and hasattr(dict, key):
            continue  # the method (inputs.get): the engine looks up a key first, then this
        if root == "steps" and earlier is None:  # a prompt
            problems[
                f"has a prompt that reads steps.{key}; a prompt sees the run and its inputs only"
            ] = None
        elif root == "steps" and key not in (earlier or ()):
            ref = f"steps.{key}"
            if key == step:
                problems[f"reads its own output {ref}, which does not exist while it runs"] = None
            elif key in names:
                problems[f"reads {ref}, the output of a later step (steps run in order)"] = None
            else:
                problems[f"reads {ref}, but no step is named {key!r}"] = None
        elif root == "inputs" and key not in runbook.inputs:
            declared = ", ".join(runbook.inputs) or "none"
            problems[
                f"reads inputs.{key}, but the runbook declares no input {key!r}"
                f" (declared: {declared})"
            ] = None
    return list(problems)


@lru_cache(maxsize=4096)
def _read(text: str) -> tuple[str | None, tuple[tuple[str, str, bool], ...]]:
    """The compile error of ``text``, else its references.

    Cached: the API loads the library on each request, and compiling is most
    of the check's cost.
    """
    try:
        tree = parse(text)
    except TemplateError as exc:
        return exc.message or str(exc), ()
    return None, tuple(_references(tree))


def _references(tree: nodes.Template) -> Iterator[tuple[str, str, bool]]:
    """``(root, key, attribute form)`` for each ``steps.key`` / ``steps['key']`` / ``inputs…``.

    A root the template rebinds (``{% set steps = … %}``, a loop or macro
    variable) is not the context's, so its keys are not references.
    """
    rebound = {name.name for name in tree.find_all(nodes.Name) if name.ctx != "load"}
    called = {id(call.node) for call in tree.find_all(nodes.Call)}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            if id(node) in called and hasattr(dict, node.attr):
                continue  # steps.items(): a method call, whatever the steps are named
            root, key, attribute = node.node, node.attr, True
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            root, key, attribute = node.node, node.arg.value, False
        else:
            continue
        if (
            isinstance(root, nodes.Name)
            and root.name in _ROOTS
            and root.name not in rebound
            and isinstance(key, str)
        ):
            yield root.name, key, attribute
