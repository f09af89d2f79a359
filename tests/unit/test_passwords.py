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
