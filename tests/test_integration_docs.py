"""The integration pages (docs/integrations/) stay true to the code they describe.

Operators copy variable names, TOML tables, runbook steps and doctor check
names straight from these pages; each test here fails when one of them no
longer exists in the settings model, the runbook library, the action registry
or the doctor — so a rename in the code cannot leave a page quietly wrong.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import tomllib
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.wiring import build_actions

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "integrations"
SRC = ROOT / "src" / "tenantops"
LIBRARY = SRC / "runbooks" / "library"

PAGES = (
    "local",
    "redis",
    "smtp",
    "slack",
    "teams",
    "webhook",
    "pagerduty",
    "gitops-remote",
    "vault",
    "keycloak",
    "entra",
    "kubernetes",
    "argocd",
    "servicenow",
    "terraform",
)

IDENTITY = {
    "identity.create_group",
    "identity.add_member",
    "identity.remove_member",
    "identity.disable_access",
    "identity.enable_access",
    "access.review",
}
# The actions each page answers for: it must name every one, and list every
# library step that calls one in its "runbook | step | action" table.
COVERS: dict[str, set[str]] = {
    "local": {"health.check", "health.synthetic"},
    "redis": {
        "access.pause_queues",
        "access.resume_queues",
        "access.set_rate_limit",
        "access.lift_rate_limit",
    },
    "smtp": {"notify.send"},
    "slack": {"notify.send"},
    "teams": {"notify.send"},
    "webhook": {"notify.send"},
    "pagerduty": {"notify.send", "notify.page"},
    "gitops-remote": {
        "gitops.sync_tenant",
        "gitops.isolate",
        "gitops.unisolate",
        "gitops.remove",
        "gitops.plan",
    },
    "vault": {
        "secrets.create_store",
        "secrets.revoke",
        "secrets.restore",
        "secrets.refresh",
        "secrets.rotate",
    },
    "keycloak": IDENTITY,
    "entra": IDENTITY,
    "kubernetes": {"k8s.isolate", "k8s.drift", "k8s.apply_tenant"},
    "argocd": {"argocd.sync_wait"},
    "servicenow": {"itsm.open", "itsm.update"},
    "terraform": {"terraform.plan_apply"},
}
# Actions that reach infrastructure through a port: each needs a page.
DRIVER_PREFIXES = (
    "access",
    "identity",
    "secrets",
    "notify",
    "gitops",
    "k8s",
    "argocd",
    "itsm",
    "terraform",
    "health",
)
# Slack, Teams, webhooks and PagerDuty reach only stakeholder roles: a message to
# the tenant owner's address is e-mail, whatever channels exist.
CHANNEL_PAGES = {"slack", "teams", "webhook", "pagerduty"}
# The standard runbooks every page must cover step by step. Playbooks added to the
# library later must still be named correctly where a page lists them, but a page
# is not wrong for leaving them out: they are documented with the domain that runs them.
STANDARD = {
    "tenant-onboarding",
    "tenant-suspension",
    "tenant-reactivation",
    "tenant-offboarding",
    "emergency-break-glass",
}
ROLES = {"legal", "finance", "security", "oncall"}
NOT_ACTIONS = {"py", "md", "yaml", "yml", "json", "toml", "txt", "tf", "hcl", "pem", "sh"}

ENV_NAME = re.compile(r"TENANTOPS_[A-Z0-9_]*[A-Z0-9]")
PLACEHOLDER = re.compile(r"__<[A-Za-z_]+>")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
EXPORT = re.compile(r"^export (TENANTOPS_[A-Z0-9_]+)=(.*)$", re.MULTILINE)


def text(page: str) -> str:
    return (DOCS / f"{page}.md").read_text()


def blocks(page: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text(page)) if lang == language]


def prose(page: str) -> str:
    """The page without its fenced blocks (sample output and YAML are not claims)."""
    return FENCE.sub("", text(page))


def tables(page: str, header: tuple[str, ...], *, raw: bool = False) -> Iterator[list[str]]:
    """The rows of every table whose header starts with ``header``; backticks stripped
    unless ``raw``."""
    rows: list[list[str]] | None = None
    for line in prose(page).splitlines():
        if not line.startswith("|"):
            rows = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if rows is None:
            rows = [] if tuple(c.lower() for c in cells[: len(header)]) == header else None
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        yield cells if raw else [c.replace("`", "") for c in cells]


# Settings ---------------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        kept = [a for a in get_args(annotation) if a is not type(None)]
        return kept[0] if len(kept) == 1 else annotation
    return annotation


def unknown_setting(path: list[str]) -> str | None:
    """Why ``path`` (lower-case segments below ``Settings``) names no setting, or None."""
    current: Any = Settings
    for i, segment in enumerate(path):
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {}
            for name, info in current.model_fields.items():
                fields[name.lower()] = info
                if info.alias:
                    fields[info.alias.lower()] = info
            if segment.lower() not in fields:
                return f"{current.__name__} has no field {segment!r}"
            current = _unwrap(fields[segment.lower()].annotation)
        elif get_origin(current) is dict:
            current = _unwrap(get_args(current)[1])  # any key names an entry
        else:
            return f"{'.'.join(path[:i])} is a value, not a section"
    return None


def env_names(page: str) -> set[str]:
    names = set(ENV_NAME.findall(PLACEHOLDER.sub("__X", text(page))))
    return names - {"TENANTOPS_CONFIG_FILE"}


def toml_paths(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[list[str]]:
    for key, value in table.items():
        if isinstance(value, dict) and value:
            yield from toml_paths(value, (*prefix, key))
        else:
            yield [*prefix, key]


@pytest.mark.parametrize("page", ["README", *PAGES])
def test_every_variable_a_page_names_is_a_setting(page: str) -> None:
    wrong = {}
    for name in sorted(env_names(page)):
        problem = unknown_setting(name.removeprefix("TENANTOPS_").lower().split("__"))
        if problem:
            wrong[name] = problem
    assert not wrong, f"{page}.md names settings that do not exist: {wrong}"


@pytest.mark.parametrize("page", ["README", *PAGES])
def test_every_toml_example_names_settings_and_loads_with_the_pages_exports(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each TOML block, with the page's ``export`` lines, is a configuration that loads."""
    for name in [n for n in os.environ if n.upper().startswith("TENANTOPS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TENANTOPS_DATA_DIR", str(tmp_path))
    for block in blocks(page, "sh"):
        for name, value in EXPORT.findall(block):
            if name != "TENANTOPS_CONFIG_FILE":  # each TOML block below is the file
                monkeypatch.setenv(name, shlex.split(value)[0])
    examples = blocks(page, "toml")
    for i, example in enumerate(examples):
        data = tomllib.loads(example)
        for path in toml_paths(data):
            assert unknown_setting(path) is None, f"{page}.md TOML: {'.'.join(path)}"
        file = tmp_path / f"example-{i}.toml"
        file.write_text(example)
        monkeypatch.setenv("TENANTOPS_CONFIG_FILE", str(file))
        settings = Settings()
        assert settings.channels.problems() == [], f"{page}.md TOML example {i}"
    if not examples:
        assert Settings().channels.problems() == [], f"{page}.md exports"


# Pages and links --------------------------------------------------------------------


def test_every_adapter_has_a_page_linked_from_the_index() -> None:
    index = text("README")
    present = {p.stem for p in DOCS.glob("*.md")} - {"README"}
    assert present == set(PAGES), "pages and PAGES differ: add the page to both"
    for page in PAGES:
        assert f"]({page}.md)" in index, f"README.md does not link {page}.md"


@pytest.mark.parametrize("page", ["README", *PAGES])
def test_relative_links_point_at_files_that_exist(page: str) -> None:
    for target in LINK.findall(text(page)):
        if "://" in target or target.startswith("#"):
            continue
        path = (DOCS / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page}.md links {target}, which does not exist"


# Actions and runbook steps ----------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The names of every action a worker of the embedded default has."""
    data_dir = tmp_path_factory.mktemp("docs")
    db = Database(f"sqlite:///{data_dir / 'tenantops.db'}")
    try:
        return set(build_actions(Settings(data_dir=data_dir), db))
    finally:
        db.dispose()


def library_steps() -> list[tuple[str, dict[str, Any]]]:
    """``(runbook id, step)`` for every step of the shipped runbooks."""
    found = []
    for file in sorted(LIBRARY.glob("*.yaml")):
        runbook = yaml.safe_load(file.read_text())
        found += [(str(runbook["id"]), step) for step in runbook["steps"]]
    return found


def named_actions(page: str, registry: set[str]) -> set[str]:
    prefixes = {name.split(".", 1)[0] for name in registry if "." in name}
    found = set()
    for code in CODE.findall(prose(page)):
        match = re.fullmatch(r"([a-z0-9_]+)\.([a-z_]+)", code)
        if match and match[1] in prefixes and match[2] not in NOT_ACTIONS:
            found.add(code)
    return found


@pytest.mark.parametrize("page", ["README", *PAGES])
def test_every_action_a_page_names_is_registered(page: str, registry: set[str]) -> None:
    unknown = named_actions(page, registry) - registry
    assert not unknown, f"{page}.md names actions no worker has: {sorted(unknown)}"


def test_every_driver_action_is_covered_by_a_page(registry: set[str]) -> None:
    drivers = {a for a in registry if a.split(".", 1)[0] in DRIVER_PREFIXES}
    covered = set().union(*COVERS.values())
    assert drivers - covered == set(), "an action with no integration page"
    assert covered - registry == set(), "COVERS names an action that no longer exists"


@pytest.mark.parametrize("page", PAGES)
def test_a_page_names_every_action_it_answers_for(page: str, registry: set[str]) -> None:
    missing = COVERS[page] - named_actions(page, registry)
    assert not missing, f"{page}.md does not mention {sorted(missing)}"


@pytest.mark.parametrize("page", PAGES)
def test_runbook_tables_name_real_steps_and_miss_none(page: str) -> None:
    steps = library_steps()
    assert {rb for rb, _ in steps} >= STANDARD, "a standard runbook left the library"
    real = {(rb, str(s["name"]), str(s.get("action"))) for rb, s in steps}
    listed = {tuple(row[:3]) for row in tables(page, ("runbook", "step", "action"))}
    assert listed <= real, f"{page}.md lists steps the library lacks: {sorted(listed - real)}"

    def due(runbook: str, step: dict[str, Any]) -> bool:
        if runbook not in STANDARD or step.get("action") not in COVERS[page]:
            return False
        if page in CHANNEL_PAGES and step.get("action") == "notify.send":
            return (step.get("params") or {}).get("to") in ROLES
        return True

    wanted = {(rb, str(s["name"]), str(s["action"])) for rb, s in steps if due(rb, s)}
    missing = wanted - listed
    assert not missing, f"{page}.md does not say what these steps do: {sorted(missing)}"


# Doctor -----------------------------------------------------------------------------


def _pattern(node: ast.expr) -> str | None:
    """A check name as a regex: f-string parts match anything."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            re.escape(str(v.value)) if isinstance(v, ast.Constant) else ".+" for v in node.values
        )
    return None


def _first_args(files: list[Path], called: Callable[[str], bool]) -> list[str]:
    found = []
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name and called(name) and (pattern := _pattern(node.args[0])):
                found.append(pattern)
    return found


@pytest.fixture(scope="module")
def doctor_names() -> Callable[[str], bool]:
    """Whether a name is one ``tenantops doctor`` can print (``<port>: <adapter row>``)."""
    doctor = [SRC / "doctor.py"]
    # f"{prefix}: {row.check}" only relays an adapter's rows: those are matched below.
    findings = [p for p in _first_args(doctor, lambda n: n == "Finding") if not p.startswith(".+")]
    prefixes = _first_args(doctor, lambda n: n in {"_findings", "_asked", "_stored"})
    rows = _first_args(sorted((SRC / "drivers").rglob("*.py")), lambda n: n == "CheckRow")
    own = re.compile("|".join(f"(?:{p})" for p in findings))
    adapters = re.compile(f"(?:{'|'.join(prefixes)}): (?:{'|'.join(f'(?:{r})' for r in rows)})")
    return lambda name: bool(own.fullmatch(name) or adapters.fullmatch(name))


@pytest.mark.parametrize("page", PAGES)
def test_doctor_rows_a_page_shows_are_rows_doctor_prints(
    page: str, doctor_names: Callable[[str], bool]
) -> None:
    shown = [name for row in tables(page, ("check",), raw=True) for name in CODE.findall(row[0])]
    assert shown, f"{page}.md has no doctor table"
    unknown = [name for name in shown if not doctor_names(name)]
    assert not unknown, f"{page}.md shows doctor rows doctor never prints: {unknown}"
