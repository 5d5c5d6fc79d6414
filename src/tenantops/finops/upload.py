"""Receive an uploaded cost file onto disk, streamed, whatever its size.

A raw body (``text/csv``, ``application/vnd.apache.parquet``,
``application/octet-stream``) is written as it arrives. A
``multipart/form-data`` body is written first and its ``file`` part is then
cut out by scanning for the boundary: the server has no multipart parser
dependency (python-multipart) and must not hold a gigabyte in memory.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from anyio import to_thread

from tenantops.errors import PayloadTooLarge, Unprocessable

CHUNK = 1 << 20


class TooLarge(PayloadTooLarge):
    slug = "upload-too-large"
    title = "The upload is too large"


@dataclass
class Received:
    path: Path
    sha256: str
    filename: str | None
    size: int


class _Sink:
    """The blocking half of ``receive``: file work runs in a worker thread, not the loop."""

    def __init__(self, limit: int, directory: Path | None) -> None:
        self.handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - handed to the caller
            prefix="focus-", suffix=".upload", dir=directory, delete=False
        )
        self.path = Path(self.handle.name)
        self.limit, self.size, self.digest = limit, 0, hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(f"uploads are limited to {self.limit} bytes")
        self.digest.update(chunk)
        self.handle.write(chunk)

    def finish(self, content_type: str) -> Received:
        self.handle.close()
        if content_type.lower().startswith("multipart/form-data"):
            inner = _file_part(self.path, content_type)
            self.path.unlink()
            return inner
        if self.size == 0:
            raise Unprocessable("the upload is empty: send the cost file as the request body")
        return Received(self.path, self.digest.hexdigest(), None, self.size)

    def discard(self) -> None:
        self.handle.close()
        self.path.unlink(missing_ok=True)


async def receive(
    chunks: AsyncIterator[bytes], *, content_type: str, limit: int, directory: Path | None = None
) -> Received:
    """Write the body to a temporary file; the caller deletes ``Received.path``."""
    sink = await to_thread.run_sync(_Sink, limit, directory)
    pending: list[bytes] = []
    buffered = 0
    try:
        async for chunk in chunks:
            pending.append(chunk)
            buffered += len(chunk)
            if buffered >= CHUNK:
                await to_thread.run_sync(sink.write, b"".join(pending))
                pending, buffered = [], 0
        await to_thread.run_sync(sink.write, b"".join(pending))
        return await to_thread.run_sync(sink.finish, content_type)
    except BaseException:
        await to_thread.run_sync(sink.discard)
        raise


def _file_part(path: Path, content_type: str) -> Received:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise Unprocessable("multipart/form-data without a boundary")
    delimiter = b"\r\n--" + match.group(1).encode()
    with path.open("rb") as src:
        head = src.read(64 * 1024)
        opening = b"--" + match.group(1).encode()
        start = head.find(opening)
        end_headers = head.find(b"\r\n\r\n", start)
        if start < 0 or end_headers < 0:
            raise Unprocessable("multipart body without a part")
        headers = head[start:end_headers].decode("latin-1")
        if not re.search(r'(?:^|[;\s])name="file"', headers):  # not filename="file"
            raise Unprocessable("send the cost file as the first multipart part, named 'file'")
        name = re.search(r'filename="([^"]*)"', headers)
        src.seek(end_headers + 4)
        out = tempfile.NamedTemporaryFile(  # noqa: SIM115 - handed to the caller
            prefix="focus-", suffix=".upload", dir=path.parent, delete=False
        )
        digest, size, found, carry = hashlib.sha256(), 0, False, b""
        with out:
            while chunk := src.read(CHUNK):
                data = carry + chunk
                cut = data.find(delimiter)
                if cut >= 0:
                    data, found = data[:cut], True
                    keep = b""
                else:
                    keep = data[-(len(delimiter) - 1) :]
                    data = data[: -(len(delimiter) - 1)]
                digest.update(data)
                out.write(data)
                size += len(data)
                carry = keep
                if found:
                    break
    if not found:
        Path(out.name).unlink()
        raise Unprocessable("the multipart body ends before its closing boundary")
    return Received(
        path=Path(out.name),
        sha256=digest.hexdigest(),
        filename=name.group(1) if name else None,
        size=size,
    )
