"""The first web admin of a new installation, made once and shown once at the first start.

``tenantops serve`` on a database that has no web users, and never had its
first start dealt with, creates the local user ``admin`` (role admin) with a
random password and prints one block to stdout. The password exists only in
that block and as its scrypt hash; it is never passed to the log. The
``web_first_start`` row makes it once per database, even when two servers start
together or every user is later removed.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.kit.clock import utcnow
from tenantops.web import service
from tenantops.web.models import FirstStart, WebUser

USERNAME = "admin"
PASSWORD_BYTES = 18  # 24 URL-safe characters, 144 random bits


@dataclass(frozen=True)
class FirstAdmin:
    """The admin made at the first start; ``password`` is shown once, then forgotten."""

    username: str
    password: str


def first_start(session: Session, *, actor: Principal) -> FirstAdmin | None:
    """The first admin, if this is the database's first start without web users.

    ``None`` when the first start was dealt with before (by this or another
    server) or when users exist already (made with ``tenantops users``, or
    signed in through OIDC): then nothing is made, now or later.
    """
    if session.get(FirstStart, 1) is not None:
        return None
    has_users = session.execute(select(WebUser.id).limit(1)).first() is not None
    # The marker first: of two servers starting together, the second one to
    # insert it waits for the first and then fails here, making nobody.
    try:
        with session.begin_nested():
            session.add(FirstStart(id=1, at=utcnow(), admin_created=not has_users))
    except IntegrityError:
        return None
    if has_users:
        return None
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    service.create_user(
        session,
        actor=actor,
        username=USERNAME,
        password=password,
        roles=[Role.ADMIN],
        tenant_id=None,
    )
    return FirstAdmin(username=USERNAME, password=password)


def login_url(settings: Settings) -> str:
    """Where a browser on this machine finds the login page of ``serve``."""
    return f"{settings.own_url()}/login"


def announcement(admin: FirstAdmin, url: str) -> str:
    """The one block ``serve`` prints: who, the password, where, and what to do next."""
    return (
        "\n"
        "==================== tenantops: first web admin ====================\n"
        f"  username:  {admin.username}\n"
        f"  password:  {admin.password}\n"
        f"  sign in:   {url}\n"
        "  This password is shown once and is not stored anywhere readable.\n"
        "  Create your own users with 'tenantops users create-admin NAME' or\n"
        "  'tenantops users create NAME --role ROLE', then disable this one:\n"
        f"  'tenantops users disable {admin.username}'.\n"
        "=====================================================================\n"
    )


def announce_first_admin(db: Database, settings: Settings, *, actor: Principal) -> bool:
    """At ``serve``: make the first admin if due and print its block; whether it did.

    Not when ``bootstrap_admin`` is off, nor when the web signs in through the
    OIDC issuer (people then come from there; ``tenantops users`` still works).
    """
    if not settings.bootstrap_admin:
        return False
    if settings.oidc.issuer and settings.web.oidc_client_id:
        return False
    with db.write() as session:
        admin = first_start(session, actor=actor)
    if admin is None:
        return False
    # stdout, once, never through structlog (whose records are shipped as logs). Where
    # stdout itself is collected (containers, systemd), disable this user once you have yours.
    sys.stdout.write(announcement(admin, login_url(settings)))
    sys.stdout.flush()
    return True
