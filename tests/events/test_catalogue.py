"""The catalogue is the truth: what the code emits is in it, and the docs are generated from it."""

from __future__ import annotations

import ast
from pathlib import Path

import jsonschema
from fastapi.testclient import TestClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tenantops.events import catalogue
from tenantops.events.asyncapi import document, example_event, markdown
from tenantops.tenants.lifecycle import TenantState

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "tenantops"
CONSTANTS = {
    name: value for name, value in vars(catalogue).items() if isinstance(value, catalogue.EventType)
}


def emitted_constants() -> set[str]:
    """Every ``catalogue.NAME`` the code outside the catalogue refers to."""
    used: set[str] = set()
    for path in SRC.rglob("*.py"):
        if path.parent.name == "events" and path.name in ("catalogue.py", "asyncapi.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "catalogue"
            ):
                used.add(node.attr)
    return used


def test_every_event_type_the_code_names_is_in_the_catalogue() -> None:
    named = {n for n in emitted_constants() if n.isupper() and n in CONSTANTS}
    for name in named:
        assert CONSTANTS[name].type in catalogue.CATALOGUE
    # A name that looks like an event type but is not one fails loudly here.
    unknown = (
        {n for n in emitted_constants() if n.isupper()}
        - set(CONSTANTS)
        - {
            "TENANT_STATES",
            "SOURCE",
            "TOPICS",
            "TYPE_PREFIX",  # the events API hides the on-call types from tenant-bound callers
        }
    )
    assert unknown == set()


def test_every_lifecycle_state_has_its_event_type() -> None:
    assert set(catalogue.TENANT_STATES) == {s.value for s in TenantState}
    assert "TENANT_STATES" in emitted_constants()


def test_every_catalogue_entry_is_emitted_somewhere() -> None:
    named = emitted_constants()
    lifecycle = {e.type for e in catalogue.TENANT_STATES.values()}
    for name, kind in CONSTANTS.items():
        assert name in named or kind.type in lifecycle, f"{kind.type} is never emitted"


def test_docs_events_md_is_generated_from_the_catalogue() -> None:
    assert (ROOT / "docs" / "events.md").read_text() == markdown(), (
        "regenerate: tenantops events catalogue --markdown -o docs/events.md"
    )


def test_the_asyncapi_document_is_served_and_its_examples_match_its_schemas(
    client: TestClient,
) -> None:
    response = client.get("/asyncapi.json")  # public, like /openapi.json
    assert response.status_code == 200
    doc = response.json()
    assert doc == document()
    assert doc["asyncapi"] == "3.0.0"
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert names == set(catalogue.CATALOGUE)
    assert {c["address"] for c in doc["channels"].values()} == set(catalogue.TOPICS)

    registry = Registry().with_resource(
        "urn:asyncapi", Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    for key, message in doc["components"]["messages"].items():
        kind = catalogue.CATALOGUE[message["name"]]
        schema = {"$ref": "urn:asyncapi" + message["payload"]["$ref"]}
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        validator.validate(example_event(kind))
        wrong = {**example_event(kind), "type": "io.tenantops.other"}
        assert not validator.is_valid(wrong), key
