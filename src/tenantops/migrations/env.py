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
from tenantops.itil import models as _itil  # noqa: F401
from tenantops.notifications import models as _notifications  # noqa: F401
from tenantops.oncall import models as _oncall  # noqa: F401
from tenantops.runbooks import models as _runbooks  # noqa: F401
from tenantops.secrets import models as _secrets_inventory  # noqa: F401
from tenantops.tenants import models as _tenants  # noqa: F401
from tenantops.web import models as _web  # noqa: F401

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    raw = connection.connection.driver_connection
    if sqlite:
        # A batch migration rebuilds a table (copy, DROP, rename). With foreign keys
        # on, the DROP of a table other rows point at fails, or deletes them through
        # ON DELETE CASCADE. SQLite's own recipe: foreign keys off outside the
        # transaction (the pragma is a no-op inside one), every key checked before
        # COMMIT, back on for whoever uses this pooled connection next.
        raw.execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(
                        f"the migration would leave {len(broken)} rows pointing at nothing "
                        f"(first: table {broken[0][0]}, rowid {broken[0][1]}); rolled back"
                    )
        connection.commit()
    finally:
        if sqlite:
            raw.execute("PRAGMA foreign_keys=ON")
