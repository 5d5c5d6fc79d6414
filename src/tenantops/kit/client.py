"""A small HTTP client for the CLI: problem details become one-line errors."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx


class ClientError(Exception):
    """A request the server refused or could not be sent; ``str()`` is the one line to print."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiClient:
    """Talks to ``/api/v1`` of a tenantops server with a bearer token; close it when done."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base = url.rstrip("/")
        try:
            self._http = httpx.Client(
                base_url=self.base, headers=headers, timeout=timeout, transport=transport
            )
        except httpx.InvalidURL as exc:
            raise ClientError(f"{url!r} is not a usable server URL: {exc}") from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, "/api/v1" + path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach tenantops at {self.base}: {exc}") from exc
        except httpx.InvalidURL as exc:
            raise ClientError(f"cannot build a request to {self.base}: {exc}") from exc
        if response.status_code >= 400:
            raise ClientError(_describe(response), response.status_code)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(
                f"{self.base} answered {response.status_code} without JSON; "
                "is --url a tenantops server?"
            ) from exc

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any, **kwargs: Any) -> Any:
        return self.request("POST", path, json=json, **kwargs)

    def collect(self, path: str, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` items of a cursor-paged list, newest first, 200 a request at most."""
        items: list[dict[str, Any]] = []
        cursor = None
        while len(items) < limit:
            page = self.get(
                path,
                params={
                    **params,
                    "limit": min(200, limit - len(items)),
                    **({"cursor": cursor} if cursor else {}),
                },
            )
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        return items


def _describe(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if isinstance(body, dict) and "detail" in body:
        title = body.get("title") or f"HTTP {response.status_code}"
        return f"{title}: {body['detail']}"
    return f"HTTP {response.status_code}: {str(body)[:200]}"
