"""Settings of the remote GitOps adapter: where the repository lives and how to log in.

The URL never carries a password or token (one written into it is moved to
the credential fields before validation): credentials come from their own
fields (``token`` is a ``SecretStr``) and reach git through the environment of
each command, so they are never written to the clone's ``.git/config``, never
shown in a URL, an error or a log line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

# scp-like SSH address: [user@]host:path (no scheme).
SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+:(?!//).+$")


class RemoteGitSettings(BaseModel):
    """A remote git repository reached over HTTPS (username + token) or SSH (a key).

    ``cache_dir`` holds the adapter's working clone (default: the data dir's
    ``gitops-remote``); ``push_attempts`` bounds the fetch-rebase-push loop
    when the remote branch moved under us.
    """

    url: str = Field(
        description="https://host/org/repo.git, ssh://git@host/repo.git, git@host:repo.git or file:///path"
    )
    branch: str = "main"
    username: str | None = Field(default=None, description="HTTPS user the token belongs to")
    token: SecretStr | None = Field(default=None, description="HTTPS token or password")
    ssh_key_path: Path | None = Field(default=None, description="private key for SSH URLs")
    known_hosts_path: Path | None = Field(
        default=None, description="known_hosts with the server's key (host keys are checked)"
    )
    cache_dir: Path | None = Field(default=None, description="default: data_dir/gitops-remote")
    push_attempts: int = Field(default=5, ge=1, le=50)
    backoff_seconds: float = Field(default=0.5, ge=0, description="first retry's backoff cap")
    timeout_seconds: float = Field(default=120.0, gt=0, description="per git command")

    @field_validator("url")
    @classmethod
    def _no_secret_in_url(cls, url: str) -> str:
        if SCP_LIKE.match(url):
            return url
        parts = urlsplit(url)
        if parts.scheme not in {"https", "http", "ssh", "file"}:
            raise ValueError(
                "the GitOps remote must be an https://, ssh://, git@host: or file:// URL"
            )
        return url

    @model_validator(mode="before")
    @classmethod
    def _credentials_out_of_url(cls, data: Any) -> Any:
        """Move ``https://user:token@host`` into username/token, so no error or log shows it."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        try:
            parts = urlsplit(data["url"])
            password = parts.password
        except ValueError:
            return data
        if password is None:
            return data
        host = parts.netloc.rsplit("@", 1)[1]
        moved = {**data, "url": parts._replace(netloc=host).geturl()}
        moved.setdefault("username", unquote(parts.username or ""))
        moved.setdefault("token", unquote(password))
        return moved

    @model_validator(mode="after")
    def _token_needs_a_user(self) -> RemoteGitSettings:
        if self.token is not None and not self.username:
            raise ValueError("a token needs the username it belongs to")
        return self

    def safe_url(self) -> str:
        """The URL as it may be shown: no user information on http(s)."""
        if SCP_LIKE.match(self.url):
            return self.url
        parts = urlsplit(self.url)
        if parts.scheme in {"http", "https"} and "@" in parts.netloc:
            return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
        return self.url
