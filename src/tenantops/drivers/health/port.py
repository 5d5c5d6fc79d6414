"""The health port: what verification of a tenant asks of the platform.

``check`` calls the tenant's health URL; ``synthetic`` writes a fresh value
through it and reads it back; ``review_access`` checks the identity
provider's grants against the tenant's record (owner writes, contacts read,
no one else writes). A result that passed is recorded under the step's
idempotency key and returned as recorded when the step runs again; a check
that failed raises a retriable ``DriverError`` and records nothing, so the
retry really checks again.

The HTTP contract, for a configured ``base_url`` as for the built-in probe:
``GET {url}`` answers 2xx, and a JSON body that says ``"serving": false``
means not healthy; ``PUT {url}/synthetic`` with ``{"value": …}`` stores the
value (``"written": true``) and ``GET {url}/synthetic`` answers it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class CheckResult:
    """What a passing check saw."""

    kind: str
    tenant_id: str
    url: str | None
    passed: bool
    status: int | None = None
    latency_ms: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tenant_id": self.tenant_id,
            "url": self.url,
            "passed": self.passed,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "detail": self.detail,
        }


class HealthChecker(Protocol):
    def check(self, *, tenant_id: str, tenant_name: str, idempotency_key: str) -> CheckResult:
        """The tenant answers its health URL and says it is serving."""
        ...

    def synthetic(self, *, tenant_id: str, tenant_name: str, idempotency_key: str) -> CheckResult:
        """A value written through the tenant's URL reads back the same."""
        ...

    def review_access(
        self,
        *,
        tenant_id: str,
        owner: str,
        contacts: Sequence[str],
        idempotency_key: str,
    ) -> CheckResult:
        """The tenant group's grants are what its record says, and access is on."""
        ...
