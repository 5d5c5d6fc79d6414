"""Files written whole or not at all."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A handle whose bytes become ``path`` when the block ends, or nothing if it raises.

    Written to a temporary file beside ``path`` (mode 0600), synced, then renamed
    over it: readers never see half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (see ``atomic_file``)."""
    with atomic_file(path) as handle:
        handle.write(data)


def write_files(folder: Path, stem: str, bodies: dict[str, bytes]) -> dict[str, tuple[Path, str]]:
    """Write ``<folder>/<stem>.<ext>`` per body, each atomically: ext -> (path, SHA-256).

    The digests are of the bytes written, for an auditor to check the files against.
    """
    written: dict[str, tuple[Path, str]] = {}
    for ext, body in bodies.items():
        path = folder / f"{stem}.{ext}"
        write_atomic(path, body)
        written[ext] = (path, hashlib.sha256(body).hexdigest())
    return written
