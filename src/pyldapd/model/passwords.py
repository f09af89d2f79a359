"""userPassword / rootpw hashing and checking, with slapd's scheme names and value formats.

`{SSHA}` is base64(SHA1(secret + salt) + salt), and likewise for the other salted schemes; the unsalted ones
are base64(digest). `{CRYPT}` uses the system crypt(3) through Python's `crypt` module when it exists (removed in
Python 3.13: then such passwords never verify). A value without a scheme is a clear-text password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import warnings
from collections.abc import Callable
from types import ModuleType

__all__ = ["hash_password", "verify_password", "split_scheme", "SUPPORTED_SCHEMES", "DEFAULT_SCHEME"]

DEFAULT_SCHEME = "{SSHA}"
# slappasswd uses 4-byte salts for {SSHA} and {SMD5}; OpenLDAP's pw-sha2 module 8-byte salts for {SSHA256..512}
SALT_SIZE = 4
SHA2_SALT_SIZE = 8


def _load_crypt() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            return None
    return crypt


_crypt = _load_crypt()

# scheme (upper case, with braces) -> (hash constructor, salted)
_DIGESTS: dict[str, tuple[Callable[[bytes], hashlib._Hash], bool]] = {
    "{SHA}": (hashlib.sha1, False),
    "{SSHA}": (hashlib.sha1, True),
    "{SHA256}": (hashlib.sha256, False),
    "{SSHA256}": (hashlib.sha256, True),
    "{SHA384}": (hashlib.sha384, False),
    "{SSHA384}": (hashlib.sha384, True),
    "{SHA512}": (hashlib.sha512, False),
    "{SSHA512}": (hashlib.sha512, True),
    "{MD5}": (hashlib.md5, False),
    "{SMD5}": (hashlib.md5, True),
}

SUPPORTED_SCHEMES: frozenset[str] = frozenset(
    {*_DIGESTS, "{CLEARTEXT}"} | ({"{CRYPT}"} if _crypt is not None else set())
)


def split_scheme(stored: bytes) -> tuple[str | None, bytes]:
    """('{SCHEME}' upper-cased, rest) for '{scheme}rest'; (None, stored) when there is no scheme."""
    if stored[:1] == b"{":
        end = stored.find(b"}")
        if end > 1:
            name = stored[: end + 1]
            if name.isascii():
                return name.decode("ascii").upper(), stored[end + 1 :]
    return None, stored


def hash_password(secret: bytes, scheme: str = DEFAULT_SCHEME) -> bytes:
    """Hash `secret` with `scheme` (case-insensitive, braces optional), e.g. b'{SSHA}...'; ValueError if unknown."""
    name = scheme.strip().upper()
    if not name.startswith("{"):
        name = "{" + name + "}"
    digest = _DIGESTS.get(name)
    if digest is not None:
        make, salted = digest
        if salted:
            salt = os.urandom(SALT_SIZE if name in ("{SSHA}", "{SMD5}") else SHA2_SALT_SIZE)
            raw = make(secret + salt).digest() + salt
        else:
            raw = make(secret).digest()
        return name.encode("ascii") + base64.b64encode(raw)
    if name == "{CLEARTEXT}":
        return secret
    if name == "{CRYPT}":
        if _crypt is None:
            raise ValueError("password scheme {CRYPT} is not available (no crypt module)")
        method = _crypt.METHOD_SHA512 if _crypt.METHOD_SHA512 in _crypt.methods else None
        salt = _crypt.mksalt(method)
        hashed = _crypt.crypt(secret.decode("utf-8", "surrogateescape"), salt)
        if not hashed:
            raise ValueError("crypt(3) failed")
        return b"{CRYPT}" + hashed.encode("ascii")
    raise ValueError(f"unknown password scheme {scheme}")


def verify_password(secret: bytes, stored: bytes) -> bool:
    """Does `secret` match the stored userPassword value? Unknown schemes and malformed values never match."""
    scheme, rest = split_scheme(stored)
    if scheme is None:
        return hmac.compare_digest(secret, stored)
    digest = _DIGESTS.get(scheme)
    if digest is not None:
        make, salted = digest
        try:
            raw = base64.b64decode(rest.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        size = make(b"").digest_size
        if salted:
            if len(raw) <= size:
                return False
            hashed, salt = raw[:size], raw[size:]
            return hmac.compare_digest(make(secret + salt).digest(), hashed)
        if len(raw) != size:
            return False
        return hmac.compare_digest(make(secret).digest(), raw)
    if scheme == "{CLEARTEXT}":
        return hmac.compare_digest(secret, rest)
    if scheme == "{CRYPT}":
        if _crypt is None or not rest:
            return False
        try:
            setting = rest.decode("ascii")
            hashed = _crypt.crypt(secret.decode("utf-8", "surrogateescape"), setting)
        except (UnicodeError, ValueError, OSError):
            return False
        if not hashed:
            return False
        return hmac.compare_digest(hashed.encode("ascii", "replace"), rest)
    return False
