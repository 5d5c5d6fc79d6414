"""Alembic environment: the engine comes from the caller (``tenantops db upgrade``)."""

from __future__ import annotations

from alembic import context

from tenantops.alerts import models as _alerts  # noqa: F401 - registers tables
from tenantops.approvals import models as _approvals  # noqa: F401
from tenantops.audit import models as _audit  # noqa: F401
from tenantops.auth import models as _auth  # noqa: F401
from tenantops.db import Base
from tenantops.drivers.access import models as _access  # noqa: F401
from tenantops.drivers.health import models as _health  # noqa: F401
from tenantops.drivers.identity import models as _identity  # noqa: F401
from tenantops.drivers.secrets import models as _secrets  # noqa: F401
from tenantops.events import models as _events  # noqa: F401
from tenantops.finops import models as _finops  # noqa: F401
from tenantops.notifications import models as _notifications  # noqa: F401
from tenantops.runbooks import models as _runbooks  # noqa: F401
from tenantops.tenants import models as _tenants  # noqa: F401
from tenantops.web import models as _web  # noqa: F401

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
