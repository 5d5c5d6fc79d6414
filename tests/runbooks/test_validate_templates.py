"""A runbook whose templates can only fail when run is refused when it is loaded.

``runbooks validate`` (and every load of a runbook: the library, a file given
to ``runbooks test``) compiles each templated ``params`` value and ``wait`` with
the engine's own environment, and checks that ``steps.<name>`` names an
earlier step and ``inputs.<name>`` a declared input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantops.cli import main
from tenantops.errors import Unprocessable
from tenantops.logs import configure_logging
from tenantops.runbooks import spec

HEAD = """\
id: sample
version: "1.0"
title: Sample
tenant: false
inputs: {who: {type: string}, pause: {type: string, required: false}}
steps:
  - {name: prepare, action: noop, params: {x: 1}}
"""


def runbook(*steps: str) -> str:
    return HEAD + "".join(f"  - {step}\n" for step in steps)


def refusal(text: str) -> str:
    with pytest.raises(Unprocessable) as caught:
        spec.parse(text, source="mine.yaml")
    return str(caught.value)


def test_broken_syntax_is_refused_with_the_jinja_error() -> None:
    text = runbook('{name: notify, action: noop, params: {x: "{{ steps.prepare.out }"}}')
    assert refusal(text) == (
        "mine.yaml: steps.1.params.x: step 'notify' has a template that does not compile:"
        " unexpected '}'"
    )


def test_an_unknown_filter_is_refused() -> None:
    text = runbook('{name: notify, action: noop, params: {x: "hi {{ inputs.who | shout }}"}}')
    assert "steps.1.params.x: step 'notify' has a template that does not compile" in refusal(text)
    assert "shout" in refusal(text)


def test_a_step_that_does_not_exist_is_refused_with_the_path_of_the_param() -> None:
    text = runbook(
        '{name: notify, action: noop, params: {message: {body: ["ok", "{{ steps.zz.out }}"]}}}'
    )
    assert refusal(text) == (
        "mine.yaml: steps.1.params.message.body.1: step 'notify' reads steps.zz,"
        " but no step is named 'zz'"
    )


def test_a_later_step_and_the_step_itself_are_refused() -> None:
    later = runbook(
        '{name: notify, action: noop, params: {x: "{{ steps.finish.out }}"}}',
        "{name: finish, action: noop}",
    )
    assert refusal(later) == (
        "mine.yaml: steps.1.params.x: step 'notify' reads steps.finish,"
        " the output of a later step (steps run in order)"
    )
    itself = runbook('{name: notify, action: noop, params: {x: "{{ steps.notify.out }}"}}')
    assert "reads its own output steps.notify" in refusal(itself)


def test_the_item_form_is_checked_too() -> None:
    for quoted in ("'set-budget'", '\\"set-budget\\"'):
        template = "now {{ steps[" + quoted + "].amount }}"
        text = runbook(
            '{name: notify, action: noop, params: {x: "' + template + '"}}',
            "{name: set-budget, action: noop}",
        )
        assert "step 'notify' reads steps.set-budget, the output of a later step" in refusal(text)


def test_a_templated_wait_is_checked() -> None:
    unknown = runbook('{name: nap, wait: "{{ steps.zz.duration }}"}')
    assert refusal(unknown) == (
        "mine.yaml: steps.1.wait: step 'nap' reads steps.zz, but no step is named 'zz'"
    )
    broken = runbook('{name: nap, wait: "{{ inputs.pause + }}"}')
    assert refusal(broken).startswith(
        "mine.yaml: steps.1.wait: step 'nap' has a template that does not compile:"
    )


def test_an_input_the_runbook_does_not_declare_is_refused() -> None:
    text = runbook('{name: notify, action: noop, params: {x: "hi {{ inputs.whom }}"}}')
    assert refusal(text) == (
        "mine.yaml: steps.1.params.x: step 'notify' reads inputs.whom, but the runbook"
        " declares no input 'whom' (declared: who, pause)"
    )


def test_every_problem_is_counted_after_the_first() -> None:
    text = runbook(
        '{name: notify, action: noop, params: {x: "{{ steps.zz.out }}", y: "{{ inputs.no }}"}}',
        '{name: nap, wait: "{{ steps.yy.d }}"}',
    )
    message = refusal(text)
    assert message.startswith("mine.yaml: steps.1.params.x: step 'notify' reads steps.zz")
    assert message.endswith(" (and 2 more)")


def test_references_that_can_resolve_pass() -> None:
    loaded = spec.parse(
        runbook(
            "{name: items, action: noop}",
            "{name: notify, action: noop, params: {"
            'a: "{{ steps.prepare.out }}", '
            "b: \"{{ steps['items'].out }} for {{ inputs.who }}\", "
            "c: \"{{ inputs.get('pause', '1s') }} {{ inputs.pause | default('') }}\", "
            'd: ["{% for steps in [1, 2] %}{{ steps }}{% endfor %}"], '
            'e: "{{ steps.keys() | list }} {{ steps.items }}", '
            'f: "plain text, {# no template #}"}}',
            '{name: nap, wait: "{{ inputs.pause }}"}',
        ),
        source="mine.yaml",
    )
    assert [s.name for s in loaded.runbook.steps] == ["prepare", "items", "notify", "nap"]


def test_the_shipped_library_passes() -> None:
    assert len(spec.load_library()) == len(spec.library_files())


def test_validate_prints_one_line_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENANTOPS_TOKEN", raising=False)
    good = tmp_path / "good.yaml"
    good.write_text(runbook('{name: notify, action: noop, params: {x: "{{ steps.prepare.x }}"}}'))
    bad = tmp_path / "bad.yaml"
    bad.write_text(runbook('{name: notify, action: noop, params: {x: "{{ steps.zz.out }}"}}'))

    configure_logging("INFO", json=False)
    assert main(["runbooks", "validate", str(good)]) == 0
    assert "good.yaml" in capsys.readouterr().out

    configure_logging("INFO", json=False)
    code = main(["runbooks", "validate", str(good), str(bad)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line == (
        f"error: {bad}: steps.1.params.x: step 'notify' reads steps.zz, but no step is named 'zz'"
    )


def test_a_gate_prompt_sees_the_run_and_its_inputs_only() -> None:
    fine = runbook(
        '{name: ok, gate: {roles: [security], prompt: "Run {{ run.id }} for {{ inputs.who }}"}}'
    )
    assert spec.parse(fine, source="mine.yaml").runbook.steps[1].gate is not None
    outputs = runbook('{name: ok, gate: {roles: [security], prompt: "See {{ steps.prepare.x }}"}}')
    assert refusal(outputs) == (
        "mine.yaml: steps.1.gate.prompt: step 'ok' has a prompt that reads steps.prepare;"
        " a prompt sees the run and its inputs only"
    )
    undeclared = runbook('{name: ok, gate: {roles: [security], prompt: "{{ inputs.nope }}"}}')
    assert "steps.1.gate.prompt: step 'ok' reads inputs.nope" in refusal(undeclared)
    broken = runbook('{name: ok, gate: {roles: [security], prompt: "{{ run.id }"}}')
    assert "steps.1.gate.prompt: step 'ok' has a template that does not compile" in refusal(broken)


def test_a_prompt_is_shown_with_its_run_filled_in_or_as_written() -> None:
    from tenantops.runbooks.templating import prompt_text

    context = {"run": {"id": "r1", "tenant_id": "t1"}, "inputs": {"who": "ann"}}
    assert prompt_text("GET /t/{{ run.tenant_id }}/r/{{ run.id }} ({{ inputs.who }})", context) == (
        "GET /t/t1/r/r1 (ann)"
    )
    assert prompt_text("no template {here}", context) == "no template {here}"
    assert prompt_text("{{ inputs.missing }}", context) == "{{ inputs.missing }}"
