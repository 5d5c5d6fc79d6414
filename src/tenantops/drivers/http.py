"""What every REST adapter does the same way when a request cannot be sent or answered."""

from __future__ import annotations

from typing import Any

import httpx

from tenantops.drivers.errors import DriverError, Retry


def send(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    what: str,
    error: type[DriverError] = DriverError,
    **kwargs: Any,
) -> httpx.Response:
    """``client.request`` with transport failures as ``error``: an untrusted TLS
    certificate needs a human (a CA setting), anything else is retriable. The
    message names ``what`` and the failure's kind, never the URL's credentials."""
    try:
        return client.request(method, path, **kwargs)
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise error(f"{what}: TLS certificate not trusted", retry=Retry.NEEDS_HUMAN) from None
        raise error(f"{what}: cannot connect", retry=Retry.RETRIABLE) from None
    except httpx.TimeoutException:
        raise error(f"{what}: timed out", retry=Retry.RETRIABLE) from None
    except httpx.HTTPError as exc:
        raise error(f"{what}: {type(exc).__name__}", retry=Retry.RETRIABLE) from None
