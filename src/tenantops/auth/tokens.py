"""Service-account API tokens: random, shown once, stored as a SHA-256 hash.

A token is ``tnp_`` + 43 URL-safe random characters (256 bits). Because it is
high-entropy, an unsalted SHA-256 is enough to make the stored hash useless to
whoever reads the database; the first characters are kept as a ``prefix`` so an
operator can tell tokens apart in ``tokens list``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.models import ApiToken
from tenantops.auth.principal import Principal, Role
from tenantops.errors import NotAuthenticated, NotFound, Unprocessable
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.ids import new_id

TOKEN_PREFIX = "tnp_"  # noqa: S105 - a public marker, not a secret
LISTED_LENGTH = len(TOKEN_PREFIX) + 6  # the characters kept as the listed ``prefix``
TOKEN_LENGTH = len(TOKEN_PREFIX) + 43  # secrets.token_urlsafe(32) is 43 characters
SUBJECT_MAX = 200  # the width of api_tokens.subject
ID_WIDTH = 36  # the width of api_tokens.id
# What find_token takes, said when nothing matches.
ACCEPTED_NAMES = "give the token's id, its prefix as `tokens list` shows it, or the whole token"
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class TokenStatus(StrEnum):
    """Whether a token authenticates now; revoked wins over expired (it is the deliberate act)."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class Lifetime(Protocol):
    """What a token's status is read from (an ``ApiToken`` row, or another domain's view of it)."""

    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...


def status_of(row: Lifetime, *, now: datetime) -> TokenStatus:
    """The token's status at ``now``: the rule ``authenticate`` applies, for listings and
    for break glass (whose grant is open while its token is active)."""
    if row.revoked_at is not None:
        return TokenStatus.REVOKED
    if row.expires_at is not None and as_utc(row.expires_at) <= now:
        return TokenStatus.EXPIRED
    return TokenStatus.ACTIVE


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token: the only moment its value exists outside the caller."""

    id: str
    value: str
    expires_at: datetime | None


def create_token(
    session: Session,
    *,
    actor: Principal,
    subject: str,
    roles: Sequence[Role],
    tenant_id: str | None,
    ttl: timedelta | None,
) -> IssuedToken:
    """Mint a token for ``subject`` with ``roles``, optionally bound to one tenant."""
    if not subject.strip() or len(subject) > SUBJECT_MAX or not subject.isprintable():
        raise Unprocessable(f"a token needs a subject of 1 to {SUBJECT_MAX} printable characters")
    if not roles:
        raise Unprocessable("a token needs at least one role")
    if Role.TENANT_OWNER in roles and tenant_id is None:
        raise Unprocessable("a tenant_owner token must be bound to a tenant (--tenant)")
    if ttl is not None and ttl <= timedelta(0):
        raise Unprocessable("the token lifetime must be positive")
    value = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    try:
        expires_at = now + ttl if ttl is not None else None
    except OverflowError as exc:
        raise Unprocessable("the token lifetime is too long") from exc
    row = ApiToken(
        id=new_id(),
        subject=subject,
        roles=sorted(r.value for r in roles),
        tenant_id=tenant_id,
        token_hash=hash_token(value),
        prefix=value[:LISTED_LENGTH],
        created_by=actor.subject,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="token.created",
        tenant_id=tenant_id,
        changes={},
        detail={
            "token_id": row.id,
            "prefix": row.prefix,
            "subject": subject,
            "roles": row.roles,
            "expires_at": row.expires_at,
        },
    )
    return IssuedToken(id=row.id, value=value, expires_at=row.expires_at)


def list_tokens(session: Session) -> Sequence[ApiToken]:
    return session.execute(select(ApiToken).order_by(ApiToken.created_at)).scalars().all()


def find_token(session: Session, token_id: str) -> ApiToken | None:
    """The token ``token_id`` names: its id, its listed prefix, or the whole token; if any.

    An operator pastes whatever they hold, and the whole token is what they hold
    most often. It is found by its hash, as ``authenticate`` finds it, so its
    value never reaches the database, a log or a message. A longer start of a
    token names the token its listed prefix names: past the prefix only the hash
    is kept, so the extra characters cannot be checked. A prefix two tokens
    share names neither (``Unprocessable``): revoking the wrong one is worse
    than asking for the id.
    """
    if not token_id.startswith(TOKEN_PREFIX):
        # Longer than any id (the column's width), it may be a token pasted without its
        # marker: it is not sent to the database, whose statement log would show it.
        return session.get(ApiToken, token_id) if len(token_id) <= ID_WIDTH else None
    if len(token_id) >= TOKEN_LENGTH:
        query = select(ApiToken).where(ApiToken.token_hash == hash_token(token_id))
        return session.execute(query).scalars().first()
    if len(token_id) < LISTED_LENGTH:
        return None
    prefix = token_id[:LISTED_LENGTH]
    rows = session.execute(select(ApiToken).where(ApiToken.prefix == prefix)).scalars().all()
    if len(rows) > 1:
        raise Unprocessable(
            f"{len(rows)} tokens start with {prefix!r}; give the token's id or the whole token"
        )
    return rows[0] if rows else None


def _shown(token_id: str) -> str:
    """``token_id`` as a message may repeat it: an id in full, anything else no longer
    than a listed prefix, since it may be (a part of) a token's value."""
    if _ID.fullmatch(token_id) or len(token_id) <= LISTED_LENGTH:
        return repr(token_id)
    return repr(token_id[:LISTED_LENGTH] + "…")


def revoke_token(session: Session, *, actor: Principal, token_id: str) -> ApiToken:
    """Revoke by id, listed prefix or whole token (``find_token``); revoking twice is harmless."""
    row, _changed = revoke_token_once(session, actor=actor, token_id=token_id)
    return row


def revoke_token_once(
    session: Session, *, actor: Principal, token_id: str
) -> tuple[ApiToken, bool]:
    """``revoke_token``, and whether this call revoked it (``False``: it was revoked already).

    A conditional ``UPDATE ... WHERE revoked_at IS NULL``: of two transactions
    revoking the same token at once, exactly one is told it did (PostgreSQL
    makes the second wait for the first's row lock, then finds nothing to update).
    """
    row = find_token(session, token_id)
    if row is None:
        raise NotFound(f"no token {_shown(token_id)}: {ACCEPTED_NAMES}")
    done = session.execute(
        update(ApiToken)
        .where(ApiToken.id == row.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.refresh(row)
    changed = cast("CursorResult[Any]", done).rowcount == 1
    if changed:
        audit.record(
            session,
            actor=actor,
            action="token.revoked",
            tenant_id=row.tenant_id,
            changes={},
            detail={"token_id": row.id, "prefix": row.prefix, "subject": row.subject},
        )
    return row, changed


def authenticate(session: Session, value: str) -> Principal:
    """The principal of a presented API token, or ``NotAuthenticated``."""
    row = (
        session.execute(select(ApiToken).where(ApiToken.token_hash == hash_token(value)))
        .scalars()
        .first()
    )
    if row is None:
        raise NotAuthenticated("the API token is not valid")
    status = status_of(row, now=utcnow())
    if status is TokenStatus.REVOKED:
        raise NotAuthenticated("the API token was revoked")
    if status is TokenStatus.EXPIRED:
        raise NotAuthenticated("the API token has expired")
    return Principal(
        subject=row.subject,
        roles=frozenset(Role(r) for r in row.roles),
        tenant=row.tenant_id,
        via="token",
    )


def has_admin_token(session: Session) -> bool:
    query = select(ApiToken.id, ApiToken.roles).where(ApiToken.revoked_at.is_(None))
    return any(Role.ADMIN.value in roles for _id, roles in session.execute(query).all())
