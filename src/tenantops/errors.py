"""The whole exception tree of tenantops, rendered as RFC 9457 problem details.

Services raise these; one handler in ``app.py`` turns them into
``application/problem+json``. A subclass carries its HTTP ``status``, a stable
``type`` URI and a ``title``; the message of the instance becomes ``detail``.

    AppError
    ├── NotAuthenticated        401
    ├── Forbidden               403
    │   └── SegregationOfDuties 403
    ├── NotFound                404
    ├── Conflict                409
    │   ├── InvalidTransition   409
    │   └── AlreadyDecided      409
    ├── PreconditionFailed      412  (If-Match did not match)
    ├── PreconditionRequired    428
    ├── Unprocessable           422
    │   └── IdempotencyMismatch 422
    └── AuditUnavailable        503  (fail-closed: no audit entry, no change)
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://tenantops.dev/problems/"


class AppError(Exception):
    """Base of every error a user may see; carries its own HTTP status."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class NotAuthenticated(AppError):
    status = 401
    slug = "not-authenticated"
    title = "Authentication required"


class Forbidden(AppError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class SegregationOfDuties(Forbidden):
    slug = "segregation-of-duties"
    title = "Segregation of duties"


class NotFound(AppError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(AppError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class InvalidTransition(Conflict):
    slug = "invalid-transition"
    title = "Not possible in the tenant's current state"


class AlreadyDecided(Conflict):
    slug = "already-decided"
    title = "Already decided"


class PreconditionFailed(AppError):
    status = 412
    slug = "precondition-failed"
    title = "The resource changed since you read it"


class PreconditionRequired(AppError):
    status = 428
    slug = "precondition-required"
    title = "If-Match required"


class PayloadTooLarge(AppError):
    status = 413
    slug = "payload-too-large"
    title = "The request body is too large"


class Unprocessable(AppError):
    status = 422
    slug = "unprocessable"
    title = "Unprocessable request"


class IdempotencyMismatch(Unprocessable):
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


class AuditUnavailable(AppError):
    status = 503
    slug = "audit-unavailable"
    title = "Audit trail unavailable; the change was not made"
