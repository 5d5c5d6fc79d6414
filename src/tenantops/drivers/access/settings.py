"""Connection settings of the Redis queue-access adapter.

The URL may carry the control-plane user's password
(``redis://tenantops:secret@host:6379/0``, ``rediss://`` for TLS), so it is a
``SecretStr``: it never shows in a repr, a log line or an error message.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr

# Prefixes end up in ACL key patterns: no glob characters (*?[]\), spaces or quotes.
PLAIN = r"^[A-Za-z0-9:._-]*$"


class RedisAccessSettings(BaseModel):
    """Where the Redis that enforces tenants' queue ACLs and rate limits is, and its names."""

    url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="redis:// or rediss:// URL of a user that may run ACL SETUSER, "
        "CLIENT KILL and EVALSHA (see `ACL DRYRUN`).",
    )
    user_prefix: str = Field(
        default="tenant-",
        pattern=PLAIN,
        description="A tenant's Redis user is <user_prefix><tenant name>.",
    )
    key_prefix: str = Field(
        default="tenantops:",
        pattern=PLAIN,
        description="A tenant's keys and channels are <key_prefix><tenant name>:*; "
        "the adapter's own keys are <key_prefix>_access:* and <key_prefix>_ratelimit:*.",
    )
    socket_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(
        default=2, ge=0, le=10, description="Reconnect attempts on a dropped connection."
    )

    def safe_location(self) -> str:
        """``host:port/db`` of the URL, without user or password: what messages may show."""
        parts = urlsplit(self.url.get_secret_value())
        host = parts.hostname or "?"
        try:
            port = parts.port or 6379
        except ValueError:
            port = 6379
        return f"{parts.scheme}://{host}:{port}{parts.path or ''}"
