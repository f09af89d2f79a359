"""userPassword / rootpw hashing and checking, with slapd's scheme names and value formats.

`{SSHA}` is base64(SHA1(secret + salt) + salt), and likewise for the other salted schemes; the unsalted ones
are base64(digest). `{CRYPT}` uses the system crypt(3) through Python's `crypt` module when it exists; without it
(Python 3.13+) MD5-crypt ($1$) and SHA-crypt ($5$, $6$) are computed here and DES/bcrypt values never verify.
New {CRYPT} values follow slapd's `password-crypt-salt-format` (default `%s`: traditional DES, as slappasswd).
`{PBKDF2[-SHA1|-SHA256|-SHA512]}` is OpenLDAP's contrib pw-pbkdf2 format (`<iterations>$<salt>$<hash>` in adapted
base64), `{ARGON2}` the PHC string of OpenLDAP's pw-argon2 module (argon2-cffi). A value without a scheme is a
clear-text password.
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
PBKDF2_ITERATIONS = 10000  # pw-pbkdf2's defaults
PBKDF2_SALT_SIZE = 16
# pw-pbkdf2 scheme -> (hashlib name, derived key length)
_PBKDF2 = {
    "{PBKDF2}": ("sha1", 20),
    "{PBKDF2-SHA1}": ("sha1", 20),
    "{PBKDF2-SHA256}": ("sha256", 32),
    "{PBKDF2-SHA512}": ("sha512", 64),
}
ARGON2_PARAMETERS = {"time_cost": 3, "memory_cost": 65536, "parallelism": 1, "hash_len": 32, "salt_len": 16}
CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DEFAULT_CRYPT_SALT_FORMAT = "%s"  # slapd's password-crypt-salt-format default


def _load_crypt() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            return None
    return crypt


_crypt = _load_crypt()


def _load_argon2() -> ModuleType | None:
    try:
        import argon2
    except ImportError:
        return None
    return argon2


_argon2 = _load_argon2()

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
    {*_DIGESTS, *_PBKDF2, "{CLEARTEXT}", "{CRYPT}"} | ({"{ARGON2}"} if _argon2 is not None else set())
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


def hash_password(secret: bytes, scheme: str = DEFAULT_SCHEME, crypt_salt_format: str | None = None) -> bytes:
    """Hash `secret` with `scheme` (case-insensitive, braces optional), e.g. b'{SSHA}...'; ValueError if unknown.
    `crypt_salt_format` is slapd's password-crypt-salt-format for {CRYPT} (e.g. `$6$%.16s`)."""
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
    if name in _PBKDF2:
        algorithm, length = _PBKDF2[name]
        salt = os.urandom(PBKDF2_SALT_SIZE)
        derived = hashlib.pbkdf2_hmac(algorithm, secret, salt, PBKDF2_ITERATIONS, length)
        return f"{name}{PBKDF2_ITERATIONS}${_ab64(salt)}${_ab64(derived)}".encode("ascii")
    if name == "{ARGON2}":
        if _argon2 is None:
            raise ValueError("password scheme {ARGON2} is not available (install argon2-cffi)")
        hasher = _argon2.PasswordHasher(type=_argon2.Type.ID, **ARGON2_PARAMETERS)
        return b"{ARGON2}" + hasher.hash(secret).encode("ascii")
    if name == "{CRYPT}":
        return b"{CRYPT}" + _crypt_hash(secret, crypt_salt_format or DEFAULT_CRYPT_SALT_FORMAT).encode(
            "ascii"
        )
    raise ValueError(f"unknown password scheme {scheme}")


def _ab64(raw: bytes) -> str:
    """passlib's "adapted base64", used by pw-pbkdf2: '.' for '+', no padding."""
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("+", ".")


def _ab64_decode(text: bytes) -> bytes:
    text = text.replace(b".", b"+")
    return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)


def _crypt_hash(secret: bytes, salt_format: str) -> str:
    salt = "".join(CRYPT_ALPHABET[b % 64] for b in os.urandom(32))
    try:
        setting = salt_format % salt
    except (TypeError, ValueError):
        raise ValueError(f"invalid password-crypt-salt-format {salt_format!r}") from None
    if _crypt is not None:
        hashed = _crypt.crypt(secret.decode("utf-8", "surrogateescape"), setting)
    else:
        if not setting.startswith(("$1$", "$5$", "$6$")):  # DES needs crypt(3): use SHA-512 crypt
            setting = "$6$" + salt[:16]
        hashed = _builtin_crypt(secret, setting)
    if not hashed or hashed.startswith("*"):
        raise ValueError("crypt(3) failed")
    return hashed


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
    if scheme in _PBKDF2:
        return _verify_pbkdf2(secret, scheme, rest)
    if scheme == "{ARGON2}":
        if _argon2 is None:
            return False
        try:
            return _argon2.PasswordHasher().verify(rest.decode("ascii"), secret)
        except (
            _argon2.exceptions.VerificationError,
            _argon2.exceptions.InvalidHashError,
            UnicodeError,
            ValueError,
        ):
            return False
    if scheme == "{CRYPT}":
        if not rest:
            return False
        try:
            setting = rest.decode("ascii")
            if _crypt is not None:
                hashed = _crypt.crypt(secret.decode("utf-8", "surrogateescape"), setting)
            else:
                hashed = _builtin_crypt(secret, setting)
        except (UnicodeError, ValueError, OSError):
            return False
        if not hashed:
            return False
        return hmac.compare_digest(hashed.encode("ascii", "replace"), rest)
    return False


def _verify_pbkdf2(secret: bytes, scheme: str, rest: bytes) -> bool:
    algorithm, length = _PBKDF2[scheme]
    parts = rest.split(b"$")
    if len(parts) != 3 or not parts[0].isdigit():
        return False
    iterations = int(parts[0])
    try:
        salt, expected = _ab64_decode(parts[1]), _ab64_decode(parts[2])
    except (binascii.Error, ValueError):
        return False
    if not 0 < iterations <= 10_000_000 or not expected:
        return False
    return hmac.compare_digest(
        hashlib.pbkdf2_hmac(algorithm, secret, salt, iterations, len(expected)), expected
    )


# -- MD5-crypt and SHA-crypt, for Pythons without the crypt module -------------------------------------------


def _b64_from_bytes(data: bytes, groups: list[tuple[int, ...]]) -> str:
    out = []
    for group in groups:
        value = 0
        for index in group:
            value = (value << 8) | data[index]
        count = {3: 4, 2: 3, 1: 2}[len(group)]
        for _ in range(count):
            out.append(CRYPT_ALPHABET[value & 0x3F])
            value >>= 6
    return "".join(out)


_MD5_GROUPS = [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5), (11,)]
_SHA256_GROUPS = [(0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14), (15, 25, 5), (6, 16, 26),
                  (27, 7, 17), (18, 28, 8), (9, 19, 29), (31, 30)]  # fmt: skip
_SHA512_GROUPS = [(0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
                  (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
                  (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19),
                  (62, 20, 41), (63,)]  # fmt: skip


def _builtin_crypt(secret: bytes, setting: str) -> str | None:
    """crypt(3) for $1$ (MD5-crypt) and $5$/$6$ (SHA-crypt, Drepper's specification); None for others."""
    if setting.startswith("$1$"):
        return _md5_crypt(secret, setting)
    if setting.startswith(("$5$", "$6$")):
        return _sha_crypt(secret, setting)
    return None


def _md5_crypt(secret: bytes, setting: str) -> str:
    salt = setting[3:].split("$", 1)[0][:8].encode("ascii")
    final = hashlib.md5(secret + salt + secret).digest()
    ctx = secret + b"$1$" + salt
    for i in range(len(secret), 0, -16):
        ctx += final[: min(i, 16)]
    i = len(secret)
    while i:
        ctx += b"\0" if i & 1 else secret[:1]
        i >>= 1
    final = hashlib.md5(ctx).digest()
    for i in range(1000):
        data = secret if i & 1 else final
        if i % 3:
            data += salt
        if i % 7:
            data += secret
        data += final if i & 1 else secret
        final = hashlib.md5(data).digest()
    return f"$1${salt.decode()}${_b64_from_bytes(final, _MD5_GROUPS)}"


def _sha_crypt(secret: bytes, setting: str) -> str:
    ident = setting[1]
    make, size, groups = (
        (hashlib.sha256, 32, _SHA256_GROUPS) if ident == "5" else (hashlib.sha512, 64, _SHA512_GROUPS)
    )
    rest = setting[3:]
    rounds, explicit = 5000, False
    if rest.startswith("rounds="):
        text, _, rest = rest[7:].partition("$")
        if not text.isdigit():
            raise ValueError("bad rounds")
        rounds, explicit = min(max(int(text), 1000), 999_999_999), True
    salt = rest.split("$", 1)[0][:16].encode("ascii")
    b = make(secret + salt + secret).digest()
    a = make()
    a.update(secret + salt)
    n = len(secret)
    a.update(b * (n // size) + b[: n % size])
    i = n
    while i:
        a.update(b if i & 1 else secret)
        i >>= 1
    da = a.digest()
    dp = make(secret * n).digest()
    p = dp * (n // size) + dp[: n % size]
    ds = make(salt * (16 + da[0])).digest()
    s = ds * (len(salt) // size) + ds[: len(salt) % size]
    c = da
    for i in range(rounds):
        h = make()
        h.update(p if i & 1 else c)
        if i % 3:
            h.update(s)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()
    prefix = f"${ident}$" + (f"rounds={rounds}$" if explicit else "")
    return f"{prefix}{salt.decode()}${_b64_from_bytes(c, groups)}"
