"""Password hashing with scrypt (stdlib), in a self-describing, upgradeable format.

``scrypt$n$r$p$salt_b64$hash_b64``: the parameters travel with the hash, so
they can be raised later without invalidating stored passwords.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import cache

N, R, P = 2**14, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32
MAXMEM = 64 * 1024 * 1024
MIN_LENGTH = 12
MAX_LENGTH = 1024  # scrypt of a megabyte password is a cheap denial of service


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=KEY_BYTES
    )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, N, R, P)
    b64 = base64.b64encode
    return f"scrypt${N}${R}${P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches; the comparison takes constant time."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = _derive(password[:MAX_LENGTH], base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@cache
def dummy_hash() -> str:
    """Checked against when the username is unknown, so it costs the same scrypt
    as a known one and timing does not tell them apart."""
    return hash_password(secrets.token_urlsafe(16))
