"""The on-call document: rotations, escalation policies and the routes that pick a policy.

One YAML/JSON document, applied whole (``tenantops oncall apply FILE`` or
``PUT /api/v1/oncall/config``) and validated before anything is stored: an
unknown field, a bad time zone, a rotation or policy that is referenced but not
defined is refused with the path of the field (``policies.urgent.levels.1.targets.0:
no rotation 'nights'``).

A target is ``rotation:<name>`` (whoever is on call then), ``role:<stakeholder>``
(a stakeholder group of ``TENANTOPS_NOTIFY__*``, resolved by ``notify.send``) or
a literal recipient (an e-mail address or ``<channel>:<name>``).

When no document was ever applied, ``DEFAULT_DOCUMENT`` applies: it pages
``role:oncall`` (``TENANTOPS_NOTIFY__ONCALL``), after 15 minutes again with
governance told too, then goes round twice more, 30 minutes apart.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tenantops.drivers.notify.routing import is_recipient
from tenantops.errors import Unprocessable
from tenantops.kit.canonical import canonical_json
from tenantops.kit.durations import parse_duration
from tenantops.oncall.rotations import MIN_LENGTH, OverrideSpan, RotationSpec

Severity = Literal["critical", "high", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "warning", "info")
# The stakeholder groups a page may go to (``TENANTOPS_NOTIFY__<ROLE>``). Not the
# tenant owner or contacts: a page must reach staff whether or not it names a tenant.
ROLES = ("oncall", "security", "governance", "finance", "legal", "auditor")
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
MAX_LEVELS = 10
MAX_REPEAT = 10
MAX_AFTER = timedelta(days=1)
MAX_LENGTH = timedelta(days=366)
YEARS = range(1970, 3000)  # far enough either way; keeps hand-off arithmetic in range


def _in_range(value: datetime) -> datetime:
    if value.year not in YEARS:
        raise ValueError(f"{value.isoformat()} is out of range (years {YEARS[0]}-{YEARS[-1]})")
    return value


def _name(value: str, what: str) -> str:
    if not NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} must match {NAME.pattern}")
    return value


def _recipient(value: str) -> str:
    if value.startswith(("rotation:", "role:")) or not is_recipient(value):
        raise ValueError(
            f"{value!r} is not a recipient (an e-mail address or <channel>:<name>, e.g. slack:ops)"
        )
    return value


def _target(value: str) -> str:
    kind, _, rest = value.partition(":")
    if kind == "rotation":
        _name(rest, "rotation")
    elif kind == "role":
        if rest not in ROLES:
            raise ValueError(f"{value!r}: the role must be one of {', '.join(ROLES)}")
    else:
        _recipient(value)
    return value


Recipient = Annotated[str, AfterValidator(_recipient)]
Moment = Annotated[datetime, AfterValidator(_in_range)]
Target = Annotated[str, AfterValidator(_target)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Override(_Strict):
    """``member`` covers the rotation from ``start`` to ``end`` (local times of the rotation)."""

    member: Recipient
    start: Moment
    end: Moment

    @model_validator(mode="after")
    def _ordered(self) -> Override:
        if self.end <= self.start:
            raise ValueError("an override's end must be after its start")
        return self


class Rotation(_Strict):
    """Members take turns, handing over every ``length`` from ``start`` (local wall clock)."""

    timezone: str = Field(examples=["Europe/Berlin"])
    start: Moment = Field(description="Local date-time of the first hand-off")
    length: str = Field(examples=["7d", "12h"])
    members: list[Recipient] = Field(min_length=1, max_length=100)
    overrides: list[Override] = Field(default_factory=list, max_length=500)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (e.g. Europe/Berlin, UTC)") from None
        return value

    @field_validator("length")
    @classmethod
    def _length(cls, value: str) -> str:
        if not MIN_LENGTH <= parse_duration(value) <= MAX_LENGTH:
            raise ValueError("a rotation's length is 1h to 366d")
        return value

    def spec(self, name: str) -> RotationSpec:
        """The rotation for ``rotations.shift_at``."""
        return RotationSpec(
            name=name,
            timezone=self.timezone,
            start=self.start,
            length=parse_duration(self.length),
            members=tuple(self.members),
            overrides=tuple(OverrideSpan(o.member, o.start, o.end) for o in self.overrides),
        )


class Level(_Strict):
    """Who is told at this level, and how long they have to acknowledge before the next."""

    targets: list[Target] = Field(min_length=1, max_length=20)
    after: str = Field(examples=["15m"], description="Escalate if not acknowledged within")

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        if parse_duration(value) > MAX_AFTER:
            raise ValueError("'after' is at most 1d: a page waits no longer for an answer")
        return value

    @property
    def wait(self) -> timedelta:
        return parse_duration(self.after)


class Policy(_Strict):
    """Ordered levels, gone through ``repeat`` more times before the page is given up."""

    levels: list[Level] = Field(min_length=1, max_length=MAX_LEVELS)
    repeat: int = Field(default=0, ge=0, le=MAX_REPEAT)


class Match(_Strict):
    """What a route matches; a field left out matches anything."""

    tier: list[str] | None = None
    compliance: list[str] | None = Field(
        default=None, description="The tenant's compliance classification"
    )
    region: list[str] | None = None
    severity: list[Severity] | None = None


class Route(_Strict):
    """Pages that match ``when`` go by ``policy``; the first route that matches wins."""

    when: Match = Field(default_factory=Match)
    policy: str


class OncallDocument(_Strict):
    """Rotations, policies and routes; ``default`` is the policy when no route matches."""

    rotations: dict[str, Rotation] = Field(default_factory=dict)
    policies: dict[str, Policy] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=list, max_length=200)
    default: str = "default"

    @model_validator(mode="after")
    def _references(self) -> OncallDocument:
        for name in self.rotations:
            _name(name, "rotation")
        for name, policy in self.policies.items():
            _name(name, "policy")
            for i, level in enumerate(policy.levels):
                for j, target in enumerate(level.targets):
                    kind, _, rest = target.partition(":")
                    if kind == "rotation" and rest not in self.rotations:
                        raise ValueError(
                            f"policies.{name}.levels.{i}.targets.{j}: no rotation {rest!r}"
                        )
        for i, route in enumerate(self.routes):
            if route.policy not in self.policies:
                raise ValueError(f"routes.{i}.policy: no policy {route.policy!r}")
        if self.default not in self.policies:
            raise ValueError(f"default: no policy {self.default!r}")
        return self

    def recipients(self) -> list[str]:
        """Every literal recipient the document names (members, overrides, policy targets)."""
        named = [m for r in self.rotations.values() for m in r.members]
        named += [o.member for r in self.rotations.values() for o in r.overrides]
        named += [
            t
            for policy in self.policies.values()
            for level in policy.levels
            for t in level.targets
            if not t.startswith(("rotation:", "role:"))
        ]
        return list(dict.fromkeys(named))

    def route(
        self,
        *,
        severity: str,
        tier: str | None = None,
        compliance: str | None = None,
        region: str | None = None,
    ) -> str:
        """The policy for a page: the first route matching, else ``default``."""
        facts = {"tier": tier, "compliance": compliance, "region": region, "severity": severity}
        for route in self.routes:
            wanted = route.when.model_dump()
            if all(allowed is None or facts[k] in allowed for k, allowed in wanted.items()):
                return route.policy
        return self.default

    def as_json(self) -> dict[str, Any]:
        """The stored form (what the digest is computed over)."""
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical JSON: an unchanged document is not stored again."""
        return "sha256:" + hashlib.sha256(canonical_json(self.as_json()).encode()).hexdigest()


DEFAULT_DOCUMENT: dict[str, Any] = {
    "policies": {
        "default": {
            "levels": [
                {"targets": ["role:oncall"], "after": "15m"},
                {"targets": ["role:oncall", "role:governance"], "after": "30m"},
            ],
            "repeat": 2,
        }
    },
    "default": "default",
}


def validate(data: object, source: str = "document") -> OncallDocument:
    """The document, or ``Unprocessable`` naming each bad field's path (at most five)."""
    if not isinstance(data, dict):
        raise Unprocessable(f"{source}: the on-call document is a mapping")
    try:
        return OncallDocument.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        more = exc.error_count() - len(problems)
        raise Unprocessable(
            f"{source}: " + "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
        ) from None


def parse_yaml(text: str, source: str = "document") -> OncallDocument:
    """A YAML (or JSON) on-call document, validated."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Unprocessable(f"{source}: not valid YAML: {exc}") from None
    return validate(data, source)


def default_document() -> OncallDocument:
    return OncallDocument.model_validate(DEFAULT_DOCUMENT)
