"""The on-call document: what is refused (with the path of the bad field), routing, the
built-in default, and the shipped example."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tenantops.errors import Unprocessable
from tenantops.oncall.document import default_document, parse_yaml, validate
from tests.oncall.test_escalation import DOCUMENT

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "oncall.yaml"


def changed(path: str, value: Any) -> dict[str, Any]:
    """DOCUMENT (deep-copied) with the field at dotted ``path`` set to ``value``."""
    import copy

    doc = copy.deepcopy(DOCUMENT)
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "rotations.primary.timezone",
            "Mars/Olympus",
            "rotations.primary.timezone: 'Mars/Olympus'",
        ),
        ("rotations.primary.length", "7x", "rotations.primary.length: '7x' is not a duration"),
        (
            "rotations.primary.length",
            "30m",
            "rotations.primary.length: a rotation's length is 1h to 366d",
        ),
        (
            "rotations.primary.length",
            "60w",
            "rotations.primary.length: a rotation's length is 1h to 366d",
        ),
        (
            "rotations.primary.start",
            "9999-12-31T00:00",
            "rotations.primary.start: 9999-12-31T00:00:00 is out of range",
        ),
        ("rotations.primary.members", [], "rotations.primary.members: List should have at least 1"),
        (
            "rotations.primary.members.1",
            "bob",
            "rotations.primary.members.1: 'bob' is not a recipient",
        ),
        (
            "rotations.primary.start",
            "next monday",
            "rotations.primary.start: Input should be a valid datetime",
        ),
        (
            "rotations.primary.overrides",
            [{"member": "x@y.io", "start": "2030-01-02T00:00", "end": "2030-01-01T00:00"}],
            "rotations.primary.overrides.0: an override's end must be after its start",
        ),
        (
            "policies.default.levels.0.targets.0",
            "rotation:nights",
            "policies.default.levels.0.targets.0: no rotation 'nights'",
        ),
        (
            "policies.default.levels.1.targets.1",
            "role:boss",
            "policies.default.levels.1.targets.1: 'role:boss': the role must be one of",
        ),
        (
            "policies.default.levels.0.after",
            "2d",
            "policies.default.levels.0.after: 'after' is at most 1d",
        ),
        (
            "policies.default.repeat",
            -1,
            "policies.default.repeat: Input should be greater than or equal to 0",
        ),
        ("policies.default.levels", [], "policies.default.levels: List should have at least 1"),
        (
            "routes",
            [{"when": {"severity": ["urgent"]}, "policy": "default"}],
            "routes.0.when.severity.0: Input should be",
        ),
        ("routes", [{"policy": "nope"}], "routes.0.policy: no policy 'nope'"),
        ("default", "nope", "default: no policy 'nope'"),
        ("escalation", "yes", "escalation: Extra inputs are not permitted"),
    ],
)
def test_a_bad_document_is_refused_naming_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        validate(changed(path, value))
    assert message in str(refused.value)


def test_several_mistakes_are_named_together() -> None:
    doc = changed("rotations.primary.timezone", "Nowhere")
    doc["rotations"]["primary"]["length"] = "soon"
    with pytest.raises(Unprocessable) as refused:
        validate(doc, source="team.yaml")
    text = str(refused.value)
    assert text.startswith("team.yaml: ")
    assert "rotations.primary.timezone" in text
    assert "rotations.primary.length" in text


def test_yaml_that_is_not_a_mapping_or_not_yaml_is_refused() -> None:
    with pytest.raises(Unprocessable, match=r"x\.yaml: not valid YAML"):
        parse_yaml("policies: [", source="x.yaml")
    with pytest.raises(Unprocessable, match="the on-call document is a mapping"):
        parse_yaml("- a\n- b\n", source="x.yaml")


def test_the_first_matching_route_picks_the_policy_else_the_default() -> None:
    doc = parse_yaml(EXAMPLE.read_text())
    assert doc.route(severity="critical") == "urgent"
    assert doc.route(severity="high", tier="premium", compliance="restricted") == "urgent"
    assert doc.route(severity="high", tier="premium", compliance="internal") == "standard"
    assert doc.route(severity="high") == "standard"
    assert doc.route(severity="info", tier="premium", compliance="restricted") == "standard"


def test_the_default_pages_role_oncall_and_escalates_to_governance() -> None:
    doc = default_document()
    policy = doc.policies[doc.default]
    assert policy.levels[0].targets == ["role:oncall"]
    assert "role:governance" in policy.levels[1].targets
    assert policy.repeat == 2
    assert doc.route(severity="critical", tier="premium") == "default"


def test_the_example_document_is_valid_and_its_digest_is_stable() -> None:
    doc = parse_yaml(EXAMPLE.read_text(), source=str(EXAMPLE))
    assert set(doc.rotations) == {"primary", "secondary"}
    again = validate(doc.as_json())
    assert again.digest() == doc.digest()
    assert doc.digest().startswith("sha256:")
    assert len(doc.digest()) == 71
