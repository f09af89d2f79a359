"""Password schemes (pyldapd.model.passwords)."""

from __future__ import annotations

import base64
import os
import subprocess

import pytest

from pyldapd.model.passwords import SUPPORTED_SCHEMES, hash_password, split_scheme, verify_password

SLAPPASSWD = "/usr/sbin/slappasswd"
# produced by Debian's `slappasswd -s secret -h {SSHA}` (and friends)
KNOWN = [
    b"{SSHA}19MrCqT2l5jdGKD8wG4w6AzSydCNIrPc",
    b"{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
    b"{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
    b"{SMD5}L+bwSjLXYAdoM40EdEuFHbuoyPA=",
]


@pytest.mark.parametrize("stored", KNOWN)
def test_known_slappasswd_values(stored: bytes) -> None:
    assert verify_password(b"secret", stored)
    assert not verify_password(b"Secret", stored)


@pytest.mark.skipif(not os.path.exists(SLAPPASSWD), reason="slappasswd not installed")
@pytest.mark.parametrize("scheme", ["{SSHA}", "{SHA}", "{MD5}", "{SMD5}", "{CRYPT}"])
def test_slappasswd_cross_check(scheme: str) -> None:
    if scheme not in SUPPORTED_SCHEMES:
        pytest.skip(f"{scheme} not available here")
    out = subprocess.run([SLAPPASSWD, "-s", "s3cr3t pass", "-h", scheme], capture_output=True, check=True)
    stored = out.stdout.strip()
    assert stored.startswith(scheme.encode())
    assert verify_password(b"s3cr3t pass", stored)
    assert not verify_password(b"s3cr3t", stored)


@pytest.mark.parametrize("scheme", sorted(SUPPORTED_SCHEMES))
def test_hash_then_verify(scheme: str) -> None:
    stored = hash_password("pässwörd".encode(), scheme)
    assert verify_password("pässwörd".encode(), stored)
    assert not verify_password(b"other", stored)


def test_ssha_format_matches_slapd() -> None:
    stored = hash_password(b"secret")
    assert stored.startswith(b"{SSHA}")
    assert len(base64.b64decode(stored[6:])) == 20 + 4  # SHA-1 digest + 4-byte salt, like slappasswd
    assert hash_password(b"secret") != stored  # salted
    assert len(base64.b64decode(hash_password(b"x", "{SSHA512}")[9:])) == 64 + 8


def test_scheme_case_insensitive() -> None:
    assert verify_password(b"secret", b"{ssha}19MrCqT2l5jdGKD8wG4w6AzSydCNIrPc")
    assert hash_password(b"x", "ssha256").startswith(b"{SSHA256}")
    assert split_scheme(b"{crypt}abc") == ("{CRYPT}", b"abc")
    assert split_scheme(b"plain") == (None, b"plain")


def test_cleartext_and_malformed() -> None:
    assert verify_password(b"secret", b"secret")
    assert not verify_password(b"secret", b"secret2")
    assert verify_password(b"secret", b"{CLEARTEXT}secret")
    assert not verify_password(b"secret", b"{NOSUCH}secret")
    assert not verify_password(b"secret", b"{SSHA}!!notbase64")
    assert not verify_password(b"secret", b"{SHA}AAAA")
    assert not verify_password(b"secret", b"{SSHA}")
    assert not verify_password(b"", b"{CRYPT}")
    with pytest.raises(ValueError):
        hash_password(b"x", "{NOSUCH}")


# -- PBKDF2, ARGON2, {CRYPT} formats, pyldapd passwd ---------------------------------------------------------

# OpenLDAP contrib pw-pbkdf2 values for "secret" (iterations$ab64 salt$ab64 hash), computed from its format
PBKDF2_VECTOR = (
    b"{PBKDF2-SHA256}10000$"
    + base64.b64encode(b"0123456789abcdef").rstrip(b"=").replace(b"+", b".")
    + b"$"
    + base64.b64encode(__import__("hashlib").pbkdf2_hmac("sha256", b"secret", b"0123456789abcdef", 10000, 32))
    .rstrip(b"=")
    .replace(b"+", b".")
)
# produced by Debian's `slappasswd -o module-load=argon2 -h {ARGON2} -s secret` (argon2i, libargon2)
DEBIAN_ARGON2 = (
    b"{ARGON2}$argon2i$v=19$m=4096,t=3,p=1$3E5WBxXSuKi7EWyXHNAIUA$sCtAZ29V6AtzFC6u+Kql70jNlu8/YyWdK76zqnhotmk"
)


@pytest.mark.parametrize("scheme", ["{PBKDF2}", "{PBKDF2-SHA1}", "{PBKDF2-SHA256}", "{PBKDF2-SHA512}"])
def test_pbkdf2_format(scheme: str) -> None:
    stored = hash_password(b"secret", scheme)
    assert stored.startswith(scheme.encode() + b"10000$")
    iterations, salt, digest = stored[len(scheme) :].split(b"$")
    assert b"+" not in salt + digest and b"=" not in salt + digest  # adapted base64, unpadded
    sizes = {"{PBKDF2}": 20, "{PBKDF2-SHA1}": 20, "{PBKDF2-SHA256}": 32, "{PBKDF2-SHA512}": 64}
    assert len(base64.b64decode(digest.replace(b".", b"+") + b"=" * (-len(digest) % 4))) == sizes[scheme]
    assert verify_password(b"secret", stored) and not verify_password(b"secreT", stored)


def test_pbkdf2_vector_and_malformed() -> None:
    assert verify_password(b"secret", PBKDF2_VECTOR)
    assert not verify_password(b"other", PBKDF2_VECTOR)
    for bad in (
        b"{PBKDF2-SHA512}",
        b"{PBKDF2-SHA512}x$y$z",
        b"{PBKDF2-SHA512}10$!!$!!",
        b"{PBKDF2}0$AAAA$AAAA",
    ):
        assert not verify_password(b"secret", bad)


def test_argon2() -> None:
    pytest.importorskip("argon2")
    stored = hash_password(b"secret", "{ARGON2}")
    assert stored.startswith(b"{ARGON2}$argon2id$v=19$m=")
    assert verify_password(b"secret", stored) and not verify_password(b"secrets", stored)
    assert verify_password(b"secret", DEBIAN_ARGON2)  # OpenLDAP's module (argon2i) verifies too
    assert not verify_password(b"Secret", DEBIAN_ARGON2)
    assert not verify_password(b"secret", b"{ARGON2}$argon2id$garbage")


def test_crypt_salt_formats() -> None:
    assert len(hash_password(b"secret", "{CRYPT}")) == len("{CRYPT}") + 13  # slapd's default "%s": DES
    for fmt, prefix in (("$1$%.8s", b"{CRYPT}$1$"), ("$5$%.16s", b"{CRYPT}$5$"), ("$6$%.16s", b"{CRYPT}$6$")):
        stored = hash_password(b"secret", "{CRYPT}", crypt_salt_format=fmt)
        assert stored.startswith(prefix)
        assert verify_password(b"secret", stored) and not verify_password(b"secret2", stored)


@pytest.mark.parametrize(
    "setting",
    ["$1$abcdefgh", "$1$ab", "$5$saltstring", "$6$saltstring", "$5$rounds=10000$saltstringsaltstring",
     "$6$rounds=1000$x"],
)  # fmt: skip
def test_builtin_crypt_matches_system_crypt(setting: str) -> None:
    """The pure-Python MD5-crypt / SHA-crypt used where Python has no crypt module give crypt(3)'s values."""
    import warnings

    from pyldapd.model.passwords import _builtin_crypt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        crypt = pytest.importorskip("crypt")
    for secret in (b"", b"a", b"Hello world!", b"x" * 100, "pässwörd".encode()):
        assert _builtin_crypt(secret, setting) == crypt.crypt(secret.decode(), setting)


@pytest.mark.skipif(not os.path.exists(SLAPPASSWD), reason="slappasswd not installed")
@pytest.mark.parametrize("fmt", ["$1$%.8s", "$5$%.16s", "$6$%.16s"])
def test_slappasswd_crypt_formats(fmt: str) -> None:
    from pyldapd.model.passwords import _builtin_crypt

    out = subprocess.run([SLAPPASSWD, "-s", "s3cr3t", "-c", fmt], capture_output=True, check=True)
    stored = out.stdout.strip()
    assert verify_password(b"s3cr3t", stored) and not verify_password(b"s3cr3", stored)
    value = stored[len(b"{CRYPT}") :].decode()
    assert _builtin_crypt(b"s3cr3t", value) == value


def run_passwd(*args: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "passwd", *args], capture_output=True,
                          text=True, timeout=60)  # fmt: skip


@pytest.mark.skipif(not os.path.exists(SLAPPASSWD), reason="slappasswd not installed")
def test_pyldapd_passwd_mirrors_slappasswd(tmp_path) -> None:
    for args in (
        ["-s", "secret", "-h", "{SHA}"],
        ["-s", "secret", "-h", "{MD5}", "-n"],
        ["-s", "x", "-h", "{FOO}"],
    ):
        ours, theirs = run_passwd(*args), subprocess.run([SLAPPASSWD, *args], capture_output=True, text=True)
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode,
            theirs.stdout,
            theirs.stderr,
        )
    secret_file = tmp_path / "pw"
    secret_file.write_bytes(b"secret\n")
    secret_file.chmod(0o600)
    ours = run_passwd("-T", str(secret_file), "-h", "{SHA}", "-u")
    theirs = subprocess.run(
        [SLAPPASSWD, "-T", str(secret_file), "-h", "{SHA}", "-u"], capture_output=True, text=True
    )
    assert ours.stdout == theirs.stdout  # the whole file, newline included
    for args, prefix in ((["-s", "secret"], "{SSHA}"), (["-c", "$6$%.16s", "-s", "secret"], "{CRYPT}$6$"),
                         (["-h", "{PBKDF2-SHA512}", "-s", "secret"], "{PBKDF2-SHA512}10000$"),
                         (["-h", "{ARGON2}", "-s", "secret"], "{ARGON2}$argon2id$")):  # fmt: skip
        ours = run_passwd(*args)
        assert ours.returncode == 0 and ours.stdout.startswith(prefix) and ours.stdout.endswith("\n")
        assert verify_password(b"secret", ours.stdout.strip().encode())
