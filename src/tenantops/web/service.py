"""Local users, login with throttling, server-side sessions and their CSRF tokens.

Users are local (a password) or vouched for by the OIDC issuer (no password;
roles and tenant refreshed from the ID token at each sign-in). A session id is
32 random bytes handed to the browser once; the database keeps
only its SHA-256, so a copy of the database opens no session. The CSRF token
is derived from the raw id (``sha256("csrf:" + id)``): it needs no column,
and only the holder of the cookie can compute it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import SYSTEM, Principal, Role
from tenantops.errors import Conflict, NotFound, Unprocessable
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.ids import new_id
from tenantops.tenants import service as tenant_service
from tenantops.web import passwords
from tenantops.web.models import LoginThrottle, WebSession, WebUser

IDLE_TIMEOUT = timedelta(hours=8)
USERNAME_MAX = 100
FREE_FAILURES = 3  # failures before the backoff starts
MAX_BACKOFF = timedelta(minutes=5)
THROTTLE_FORGET = timedelta(hours=1)  # a quiet hour clears the count


@dataclass(frozen=True)
class ExternalSignIn:
    """The outcome of an OIDC sign-in: a session, or why there is none (for the page)."""

    opened: OpenedSession | None
    refusal: str | None = None


@dataclass(frozen=True)
class OpenedSession:
    """A new session: the cookie value exists only here and in the browser."""

    value: str
    csrf: str
    expires_at: datetime


def hash_session(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def csrf_for(value: str) -> str:
    """The CSRF token of the session whose cookie value is ``value``."""
    return hashlib.sha256(b"csrf:" + value.encode()).hexdigest()


def csrf_matches(expected: str, presented: str | None) -> bool:
    # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
    return bool(presented) and hmac.compare_digest(
        expected.encode(), (presented or "").encode("utf-8", "replace")
    )


def _principal(user: WebUser) -> Principal:
    """The same principal a token with these roles and tenant would give."""
    return Principal(
        subject=user.username,
        roles=frozenset(Role(r) for r in user.roles),
        tenant=user.tenant_id,
        via="session",
    )


def _check_username(username: str) -> str:
    name = username.strip()
    if not name or len(name) > USERNAME_MAX or not name.isprintable() or " " in name:
        raise Unprocessable(
            f"a username is 1 to {USERNAME_MAX} printable characters without spaces"
        )
    return name


def create_user(
    session: Session,
    *,
    actor: Principal,
    username: str,
    password: str,
    roles: Sequence[Role],
    tenant_id: str | None,
) -> WebUser:
    """A new local user; the password is stored only as a scrypt hash."""
    name = _check_username(username)
    if not roles:
        raise Unprocessable("a user needs at least one role")
    if Role.TENANT_OWNER in roles and tenant_id is None:
        raise Unprocessable("a tenant_owner must be bound to a tenant (--tenant)")
    _check_password(password)
    if session.execute(select(WebUser.id).where(WebUser.username == name)).first():
        raise Conflict(f"a user {name!r} exists already")
    user = WebUser(
        id=new_id(),
        username=name,
        password_hash=passwords.hash_password(password),
        roles=sorted(r.value for r in roles),
        tenant_id=tenant_id,
        disabled=False,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.created",
        tenant_id=tenant_id,
        changes={},
        detail={"user_id": user.id, "username": name, "roles": user.roles},
    )
    return user


def _check_password(password: str) -> None:
    if not passwords.MIN_LENGTH <= len(password) <= passwords.MAX_LENGTH:
        raise Unprocessable(
            f"a password is {passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters long"
        )


def _locked_user(session: Session, username: str) -> WebUser:
    # populate_existing: a row this session read before the lock is read again under
    # it, not handed back as it was (a concurrent disable would otherwise go unseen).
    user = session.execute(
        select(WebUser)
        .where(WebUser.username == username)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def _end_sessions(session: Session, user: WebUser) -> int:
    """End every open session of ``user``; how many there were."""
    result = session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return int(getattr(result, "rowcount", 0) or 0)


def list_users(session: Session) -> Sequence[WebUser]:
    return session.execute(select(WebUser).order_by(WebUser.username)).scalars().all()


def administers_platform(user: WebUser) -> bool:
    """An enabled admin bound to no tenant, not ``tenant_owner``: one who can run the platform.

    A web user bound to a tenant, or holding ``tenant_owner`` (which scopes the
    whole principal), administers one tenant at most.
    """
    return (
        not user.disabled
        and user.tenant_id is None
        and Role.ADMIN.value in user.roles
        and Role.TENANT_OWNER.value not in user.roles
    )


def _locked_platform_admins(session: Session) -> list[WebUser]:
    """The enabled platform admins, their rows locked (in id order) until the transaction ends.

    Every enabled user bound to no tenant is locked (roles are JSON, filtered
    here): two transactions each disabling one of the last two admins take
    turns, and the second, re-reading after the first committed, sees one left.
    """
    rows = session.execute(
        select(WebUser)
        .where(WebUser.disabled.is_(False), WebUser.tenant_id.is_(None))
        .order_by(WebUser.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalars()
    return [u for u in rows if administers_platform(u)]


@dataclass(frozen=True)
class Disabling:
    """What ``set_disabled`` did: whether it changed the user, how many sessions it ended."""

    changed: bool
    sessions_ended: int = 0


def lock_for_disabling(session: Session) -> None:
    """Take the locks ``set_disabled`` takes to disable a user, now: for a caller that
    writes audited changes before it disables (an access review), so the user rows are
    locked before the audit head, in the order a sign-in takes them."""
    _locked_platform_admins(session)


def set_disabled(session: Session, *, actor: Principal, username: str, disabled: bool) -> Disabling:
    """Disable (or enable again) a user; disabling ends every open session of theirs.

    Audited either way; setting the state a user already has changes nothing
    and records nothing (``changed`` false, so a concurrent caller that lost
    the race is told). Disabling the last enabled platform admin
    (``administers_platform``) is refused (``Conflict``): the platform admins'
    rows are locked first, in id order, then the user's, so two disablings
    take turns and at most one of the last two admins is disabled.
    """
    admins = _locked_platform_admins(session) if disabled else []
    user = _locked_user(session, username)
    if user.disabled == disabled:
        return Disabling(changed=False)
    if disabled and administers_platform(user) and not [a for a in admins if a.id != user.id]:
        raise Conflict(
            f"{username} is the last enabled admin web user bound to no tenant;"
            " create or enable another admin first"
        )
    user.disabled = disabled
    ended = _end_sessions(session, user) if disabled else 0
    audit.record(
        session,
        actor=actor,
        action="user.disabled" if disabled else "user.enabled",
        tenant_id=user.tenant_id,
        changes={"disabled": [not disabled, disabled]},
        detail={"user_id": user.id, "username": user.username, "sessions_ended": ended},
    )
    return Disabling(changed=True, sessions_ended=ended)


def set_password(session: Session, *, actor: Principal, username: str, password: str) -> int:
    """A new password for a local user; ends their open sessions and clears the throttle.

    Returns how many sessions were ended. A user of the OIDC issuer has no
    password here: their issuer manages it. Audited without the password.
    """
    user = _locked_user(session, username)
    if user.oidc_issuer is not None:
        raise Unprocessable(
            f"{username!r} signs in through {user.oidc_issuer}; set the password there"
        )
    _check_password(password)
    user.password_hash = passwords.hash_password(password)
    ended = _end_sessions(session, user)
    # The lockout of the old password's guesses does not hold up the new one.
    session.execute(delete(LoginThrottle).where(LoginThrottle.username == user.username))
    audit.record(
        session,
        actor=actor,
        action="user.password_set",
        tenant_id=user.tenant_id,
        changes={},
        detail={"user_id": user.id, "username": user.username, "sessions_ended": ended},
    )
    return ended


def backoff(failures: int) -> timedelta:
    """How long a username waits after ``failures`` failed logins in a row."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(timedelta(seconds=2 ** (failures - FREE_FAILURES)), MAX_BACKOFF)


def _throttled(session: Session, username: str, now: datetime) -> LoginThrottle | None:
    # Locked: concurrent failures of one username must each count.
    row = session.get(LoginThrottle, username, with_for_update=True)
    if row is not None and now - as_utc(row.last_failed_at) > THROTTLE_FORGET:
        session.delete(row)
        session.flush()
        return None
    return row


def _new_throttle(session: Session, username: str, now: datetime) -> LoginThrottle:
    """The throttle row of ``username``, created unless a concurrent failure just did."""
    try:
        with session.begin_nested():
            row = LoginThrottle(username=username, failures=0, last_failed_at=now)
            session.add(row)
        return row
    except IntegrityError:
        found = session.get(LoginThrottle, username, with_for_update=True)
        if found is None:  # pragma: no cover - deleted again in between
            raise
        return found


def login(session: Session, *, username: str, password: str) -> OpenedSession | None:
    """A new session for the right password, else ``None`` (whatever the reason).

    Unknown user, wrong password, disabled user and a username in backoff all
    look the same to the caller; the audit trail tells them apart.
    """
    now = utcnow()
    # No NUL: PostgreSQL text cannot hold it (a 500 instead of a refused login).
    name = username.replace("\x00", "").strip()[:USERNAME_MAX]
    throttle = _throttled(session, name, now)
    blocked = (
        throttle is not None
        and throttle.blocked_until is not None
        and now < as_utc(throttle.blocked_until)
    )
    user = session.execute(select(WebUser).where(WebUser.username == name)).scalars().first()
    stored = user.password_hash if user is not None else None
    # The hash is checked even when the outcome is known, so every refusal costs the same.
    good = passwords.verify_password(password, stored or passwords.dummy_hash())
    good = good and stored is not None
    if blocked or user is None or user.disabled or not good:
        reason = (
            "throttled"
            if blocked
            else "unknown user"
            if user is None
            else "disabled"
            if user.disabled
            else "no local password (signs in through OIDC)"
            if stored is None
            else "wrong password"
        )
        if not blocked:
            throttle = throttle or _new_throttle(session, name, now)
            throttle.failures += 1
            throttle.last_failed_at = now
            wait = backoff(throttle.failures)
            throttle.blocked_until = now + wait if wait else None
            # Random usernames must not grow the table for ever. Rows another login
            # holds are skipped, not waited for: two prunes never deadlock.
            stale = (
                select(LoginThrottle.username)
                .where(LoginThrottle.last_failed_at < now - THROTTLE_FORGET)
                .with_for_update(skip_locked=True)
            )
            session.execute(delete(LoginThrottle).where(LoginThrottle.username.in_(stale)))
        session.flush()
        audit.record(
            session,
            actor=Principal(subject=f"web:{name or '-'}", via="session"),
            action="user.login_failed",
            tenant_id=None,
            changes={},
            detail={"username": name, "reason": reason},
        )
        return None
    if throttle is not None:
        session.delete(throttle)
    return _open_session(session, user, now, detail={"username": user.username})


def _open_session(
    session: Session, user: WebUser, now: datetime, *, detail: dict[str, object]
) -> OpenedSession:
    """A new session row for ``user``, audited as ``user.login``."""
    value = secrets.token_urlsafe(32)
    expires = now + IDLE_TIMEOUT
    session.add(
        WebSession(
            id_hash=hash_session(value),
            user_id=user.id,
            created_at=now,
            expires_at=expires,
            last_seen_at=now,
        )
    )
    session.flush()
    audit.record(
        session,
        actor=_principal(user),
        action="user.login",
        tenant_id=user.tenant_id,
        changes={},
        detail=detail,
    )
    return OpenedSession(value=value, csrf=csrf_for(value), expires_at=expires)


def _external_refusal(session: Session, *, issuer: str, subject: str, reason: str) -> None:
    audit.record(
        session,
        actor=Principal(subject=f"oidc:{subject[:USERNAME_MAX] or '-'}", via="session"),
        action="user.login_failed",
        tenant_id=None,
        changes={},
        detail={"username": subject[:USERNAME_MAX], "issuer": issuer, "reason": reason},
    )


def sign_in_external(session: Session, *, issuer: str, principal: Principal) -> ExternalSignIn:
    """A session for the person the OIDC issuer vouched for (the ID token was verified).

    The user row is the principal's subject, created on the first sign-in and
    given the roles and tenant of this ID token every time, so a role taken away
    at the issuer is gone here at the next sign-in. Refused (and audited) when
    the subject is a local user's name or another issuer's, the user is
    disabled, or the token grants no tenantops role.
    """
    now = utcnow()
    subject = principal.subject.replace("\x00", "")
    name = subject.strip()
    if not name or len(name) > USERNAME_MAX or not name.isprintable() or " " in name:
        _external_refusal(session, issuer=issuer, subject=name, reason="unusable subject")
        return ExternalSignIn(None, "The identity provider sent a user id tenantops cannot use.")
    user = (
        session.execute(select(WebUser).where(WebUser.username == name).with_for_update())
        .scalars()
        .first()
    )
    if user is not None and user.oidc_issuer != issuer:
        _external_refusal(session, issuer=issuer, subject=name, reason="name of another user")
        return ExternalSignIn(
            None,
            f"The name {name!r} belongs to a user who signs in another way; ask an administrator.",
        )
    if user is not None and user.disabled:
        _external_refusal(session, issuer=issuer, subject=name, reason="disabled")
        return ExternalSignIn(None, "This account is disabled; ask an administrator.")
    if not principal.roles:
        _external_refusal(session, issuer=issuer, subject=name, reason="no tenantops role")
        return ExternalSignIn(
            None, "Your account at the identity provider grants no tenantops role."
        )
    tenant_id = None
    if principal.tenant is not None:
        # The claim may name the tenant or give its id; the user row keeps the id.
        try:
            ref = principal.tenant[:100].replace("\x00", "")
            tenant_id = tenant_service.get_tenant(session, principal=SYSTEM, ref=ref).id
        except NotFound:
            _external_refusal(session, issuer=issuer, subject=name, reason="unknown tenant")
            return ExternalSignIn(
                None, "Your account names a tenant tenantops does not know; ask an administrator."
            )
    roles = sorted(r.value for r in principal.roles)
    if user is None:
        user = WebUser(
            id=new_id(),
            username=name,
            password_hash=None,
            roles=roles,
            tenant_id=tenant_id,
            disabled=False,
            created_at=now,
            oidc_issuer=issuer,
        )
        try:
            with session.begin_nested():
                session.add(user)
        except IntegrityError:
            # The same person's first sign-in in another tab: theirs made the row.
            return sign_in_external(session, issuer=issuer, principal=principal)
        audit.record(
            session,
            actor=_principal(user),
            action="user.created",
            tenant_id=user.tenant_id,
            changes={},
            detail={"user_id": user.id, "username": name, "roles": roles, "issuer": issuer},
        )
    else:
        user.roles, user.tenant_id = roles, tenant_id
        session.flush()
    return ExternalSignIn(
        _open_session(
            session, user, now, detail={"username": name, "issuer": issuer, "roles": roles}
        )
    )


def resume(session: Session, value: str) -> Principal | None:
    """The principal of a live session, sliding its idle timeout; ``None`` if none."""
    row = session.get(WebSession, hash_session(value))
    if row is None:
        return None
    now = utcnow()
    user = session.get(WebUser, row.user_id)
    if as_utc(row.expires_at) <= now or user is None or user.disabled:
        session.delete(row)
        session.flush()
        return None
    row.last_seen_at = now
    row.expires_at = now + IDLE_TIMEOUT
    session.flush()
    return _principal(user)


def logout(session: Session, value: str) -> None:
    """End the session; ending one that is gone already is harmless."""
    row = session.get(WebSession, hash_session(value))
    if row is None:
        return
    user = session.get(WebUser, row.user_id)
    session.execute(delete(WebSession).where(WebSession.id_hash == row.id_hash))
    if user is not None:
        audit.record(
            session,
            actor=_principal(user),
            action="user.logout",
            tenant_id=user.tenant_id,
            changes={},
            detail={"username": user.username},
        )
