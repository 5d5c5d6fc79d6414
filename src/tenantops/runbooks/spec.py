"""The runbook format: a versioned YAML document, validated, hashed, pinned by each run.

A runbook has an ``id``, a ``version``, declared ``inputs`` and ordered
``steps``. A step is one of three kinds:

- ``action``: call a registered action with templated ``params``, with retry
  policy, timeout, optional compensation and the evidence keys it records;
- ``gate``: wait for an approval signal (for as long as it takes) from holders
  of ``roles``, under the segregation-of-duties rules; a gate may name a
  ``check`` (installed by the composition root) a person's approval must pass;
- ``wait``: a durable timer (a duration, or a template that renders to one) before
  the next step.

The JSON Schema published by ``schema()`` is generated from these models, so
the validator and the documentation cannot drift apart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from datetime import timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tenantops.errors import NotFound, Unprocessable
from tenantops.kit.canonical import canonical_json
from tenantops.runbooks.template_check import template_problems

DURATION = r"^\d+(ms|s|m|h|d)$"
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
IDENT = r"^[a-z][a-z0-9_-]{0,62}$"


def seconds(duration: str) -> float:
    """``"90s"`` -> 90.0; the format is checked by the schema pattern."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", duration)
    if match is None:
        raise ValueError(f"{duration!r} is not a duration like 500ms, 30s, 5m, 2h or 1d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


Duration = Annotated[str, Field(pattern=DURATION, examples=["30s", "5m", "2h"])]
Ident = Annotated[str, Field(pattern=IDENT)]


class Retry(BaseModel):
    """How often a failing action is tried, and how long to wait between tries."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=3, ge=1, le=100)
    backoff: Duration = "1s"
    factor: float = Field(default=2.0, ge=1.0, le=10.0)
    max_backoff: Duration = "5m"

    def delay(self, attempt: int) -> timedelta:
        """Wait after failed try number ``attempt`` (1-based)."""
        base = seconds(self.backoff) * self.factor ** max(0, attempt - 1)
        return timedelta(seconds=min(base, seconds(self.max_backoff)))


class Sla(BaseModel):
    """A deadline: ``within`` after ``after`` (a step's completion, or the run's start)."""

    model_config = ConfigDict(extra="forbid")

    within: Duration
    after: Ident | Literal["start"] = "start"


class Gate(BaseModel):
    """An approval: the step waits until a principal holding one of ``roles`` decides."""

    model_config = ConfigDict(extra="forbid")

    roles: list[Ident] = Field(min_length=1)
    signal: Ident | None = Field(
        default=None,
        description="Name of a system signal that also opens the gate (e.g. tenant_approved)",
    )
    manual: bool = Field(
        default=False,
        description="With a signal: a person holding one of roles may decide it too "
        "(e.g. close a wait for a resolution that never comes)",
    )
    check: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]*$")] | None = Field(
        default=None,
        description="A registered gate check that a person's approval must pass before it is "
        "accepted (e.g. access_review.decision checks the comment); a refused approval is a 422 "
        "and nothing is recorded",
    )
    prompt: str | None = None

    @model_validator(mode="after")
    def _checked_by_people(self) -> Gate:
        if self.check is not None and self.signal is not None and not self.manual:
            raise ValueError("a check is of a person's approval: a signal gate needs manual: true")
        return self


class Step(BaseModel):
    """One step of a runbook (exactly one of ``action``, ``gate``, ``wait``)."""

    model_config = ConfigDict(extra="forbid")

    name: Ident
    title: str | None = None
    action: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]*$")] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    gate: Gate | None = None
    wait: (
        Annotated[
            str,
            Field(
                pattern=r"^(\d+(ms|s|m|h|d)|\{\{.+\}\})$",
                description="A duration, or a template giving one (e.g. {{ inputs.duration }})",
            ),
        ]
        | None
    ) = None
    retry: Retry = Field(default_factory=Retry)
    timeout: Duration = "5m"
    compensate: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]*$")] | None = None
    evidence: list[str] = Field(default_factory=list)
    sla: Sla | None = None
    window: Ident | None = Field(
        default=None,
        description="A maintenance window (defined in the control plane) the action may only "
        "start in; outside it the step waits for the window's next opening",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [k for k in ("action", "gate", "wait") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"step {self.name!r} needs exactly one of action, gate, wait")
        if self.window is not None and self.action is None:
            raise ValueError(f"step {self.name!r}: only an action step can have a window")
        return self

    @property
    def kind(self) -> str:
        return "action" if self.action else "gate" if self.gate else "wait"

    def does(self) -> str:
        """One line for people: ``gitops.sync_tenant (window night)``, ``gate: governance``."""
        if self.action:
            return self.action + (f" (window {self.window})" if self.window else "")
        return f"gate: {', '.join(self.gate.roles)}" if self.gate else f"wait {self.wait}"


EXAMPLE_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
}


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer", "number", "boolean", "object"] = "string"
    required: bool = True
    description: str | None = None
    example: Any = Field(
        default=None,
        description="A value that works (shown in docs; `runbooks test` runs with it "
        "when no --input gives one)",
    )

    @model_validator(mode="after")
    def _example_fits(self) -> Input:
        if self.example is not None and not isinstance(self.example, EXAMPLE_TYPES[self.type]):
            raise ValueError(f"example must be of type {self.type}, not {self.example!r}")
        if self.type in ("integer", "number") and isinstance(self.example, bool):
            raise ValueError(f"example must be of type {self.type}, not {self.example!r}")
        return self


class Runbook(BaseModel):
    """A runbook document."""

    model_config = ConfigDict(extra="forbid")

    id: Ident
    version: Annotated[str, Field(pattern=r"^\d+\.\d+(\.\d+)?$")]
    title: str
    kind: Literal["runbook", "playbook", "checklist"] = "runbook"
    description: str | None = None
    tenant: bool = Field(default=True, description="Runs against one tenant")
    inputs: dict[str, Input] = Field(default_factory=dict)
    sla: Sla | None = None
    steps: list[Step] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _unique_names(cls, steps: list[Step]) -> list[Step]:
        names = [s.name for s in steps]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"step names must be unique: {', '.join(dupes)}")
        return steps

    @model_validator(mode="after")
    def _sla_refs(self) -> Runbook:
        names = {s.name for s in self.steps}
        for where, sla in [("runbook", self.sla), *[(s.name, s.sla) for s in self.steps]]:
            if sla is not None and sla.after != "start" and sla.after not in names:
                raise ValueError(f"sla of {where} refers to unknown step {sla.after!r}")
        return self

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def schema() -> dict[str, Any]:
    """The published JSON Schema of a runbook document."""
    document = Runbook.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["$id"] = "https://tenantops.dev/schemas/runbook.json"
    return document


def content_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a parsed document: what a run pins."""
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


class Loaded(BaseModel):
    """A validated runbook with the hash of the document it came from."""

    runbook: Runbook
    hash: str
    source: str


def parse(text: str, source: str = "<string>") -> Loaded:
    """Parse and validate YAML text; ``Unprocessable`` says where it is wrong.

    Beyond the schema, every template must compile and read only earlier
    steps' outputs and declared inputs (``template_check``): a run would fail
    at that step. A pinned run's document is not parsed again, so a check
    added here never stops a run already started.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Unprocessable(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise Unprocessable(f"{source}: a runbook is a YAML mapping")
    try:
        runbook = Runbook.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise Unprocessable(
            f"{source}: {where}: {first['msg']}"
            + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
        ) from exc
    problems = template_problems(runbook)
    if problems:
        raise Unprocessable(
            f"{source}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )
    return Loaded(runbook=runbook, hash=content_hash(document), source=source)


def refuse_unknown_checks(loaded: Loaded, known: Collection[str]) -> None:
    """``Unprocessable`` naming the first gate whose ``check`` is not one of ``known``.

    The schema cannot know which checks a server installs; ``runbooks validate``
    asks this with the composition root's, as a server refuses such an approval.
    """
    for n, step in enumerate(loaded.runbook.steps):
        name = step.gate.check if step.gate is not None else None
        if name is not None and name not in known:
            raise Unprocessable(
                f"{loaded.source}: steps.{n}.gate.check: no gate check {name!r} is installed"
                f" (known: {', '.join(sorted(known)) or 'none'})"
            )


def library_files() -> list[Path]:
    """The runbook files shipped with tenantops."""
    folder = resources.files("tenantops.runbooks") / "library"
    return sorted(Path(str(folder)).glob("*.yaml"))


def load_library(extra: Path | None = None) -> dict[str, Loaded]:
    """Every shipped runbook (plus those in ``extra``), by id; an id may appear once."""
    files = library_files() + (sorted(extra.glob("*.yaml")) if extra else [])
    found: dict[str, Loaded] = {}
    for path in files:
        loaded = parse(path.read_text(encoding="utf-8"), source=path.name)
        if loaded.runbook.id in found:
            raise Unprocessable(
                f"{path.name}: runbook id {loaded.runbook.id!r} is already defined by "
                f"{found[loaded.runbook.id].source}"
            )
        found[loaded.runbook.id] = loaded
    return found


@cache
def shipped() -> dict[str, Loaded]:
    """The shipped library, parsed once per process (the files are part of the install)."""
    return load_library()


def get(library: dict[str, Loaded], runbook_id: str) -> Loaded:
    if runbook_id not in library:
        raise NotFound(f"no runbook {runbook_id!r} (known: {', '.join(sorted(library))})")
    return library[runbook_id]
