"""Settings of the web UI (``TENANTOPS_WEB__*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class WebSettings(BaseModel):
    """``secure_cookies``: ``auto`` marks the session cookie ``Secure`` except on plain
    http to 127.0.0.1/localhost, where a browser would then never send it back."""

    secure_cookies: Literal["auto", "always", "never"] = "auto"
