"""The one error of the backup package: what is wrong, in a line the CLI prints."""

from __future__ import annotations

from typing import ClassVar

from tenantops.errors import AppError


class BackupError(AppError):
    """A backup that cannot be written, read, trusted or restored here; nothing was changed."""

    status: ClassVar[int] = 422
    slug: ClassVar[str] = "backup"
    title: ClassVar[str] = "Backup refused"
