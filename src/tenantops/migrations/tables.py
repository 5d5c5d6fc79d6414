"""Every ORM model, imported so ``Base.metadata`` knows every table of the schema.

Alembic's environment and the backup both need the whole schema; a model
module added to the product is added here once.
"""

from __future__ import annotations

from sqlalchemy import MetaData

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


def schema() -> MetaData:
    """The metadata of every table the migrations create."""
    return Base.metadata
