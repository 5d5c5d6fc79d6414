"""Drivers: one port (a ``typing.Protocol``) per capability, adapters beside it.

Every port has a local adapter that needs no external service — the embedded
default and the test seam. Ports take and return value objects, never ORM rows,
and raise :class:`~tenantops.drivers.errors.DriverError`, which says whether a
retry can help.
"""

from tenantops.drivers.errors import DriverError, Retry

__all__ = ["DriverError", "Retry"]
