"""Password hashing: scrypt with a random salt, its parameters stored with it."""

from __future__ import annotations

from tenantops.web import passwords


def test_a_hash_verifies_its_password_and_no_other() -> None:
    stored = passwords.hash_password("s3cret-enough-pw")

    assert passwords.verify_password("s3cret-enough-pw", stored)
    assert not passwords.verify_password("s3cret-enough-pW", stored)
    assert not passwords.verify_password("", stored)


def test_the_hash_names_its_parameters_and_salts_each_password() -> None:
    one, two = passwords.hash_password("same"), passwords.hash_password("same")

    assert one != two
    scheme, n, r, p, salt, _key = one.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert len(__import__("base64").b64decode(salt)) == 16
    assert "same" not in one


def test_a_damaged_hash_refuses_rather_than_fails() -> None:
    for stored in ("", "bcrypt$x", "scrypt$a$b$c$d$e", "scrypt$16384$8$1$!!$!!"):
        assert not passwords.verify_password("anything", stored)
