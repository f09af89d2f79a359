"""The quick start (`pyldapd serve` with no -f/-F) serves no passwords: Debian's packaged access rules, hashed
sample passwords and rootpw, cn=Monitor for the rootdn only; the README's `secret` still binds."""

from __future__ import annotations

import sys

import pytest

from tests.servers import free_port, ldap_tool, start_process

SUFFIX = "dc=example,dc=com"
ROOTDN = f"cn=admin,{SUFFIX}"
USERS = [f"uid={u},ou=People,{SUFFIX}" for u in ("jdoe", "asmith", "bwong")]
JDOE = USERS[0]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("quickstart")
    port = free_port()
    ldapi = str(workdir / "qs.sock")
    urls = f"ldap://127.0.0.1:{port}/ ldapi://{ldapi.replace('/', '%2F')}/"
    argv = [sys.executable, "-m", "pyldapd.cli.main", "serve", "--data-dir", "qs", "-h", urls]
    server = start_process("quickstart", argv, port, ldapi, workdir, workdir / "qs" / "slapd.conf")
    try:
        yield server
    finally:
        server.stop()


def search(server, *args: str):
    return ldap_tool("ldapsearch", "-H", server.url, "-LLL", *args)


def test_anonymous_reads_no_password(quickstart):
    result = search(quickstart, "-x", "-b", SUFFIX, "(objectClass=*)", "*", "userPassword")
    assert result.returncode == 0 and "dn: uid=jdoe" in result.stdout and "mail:" in result.stdout
    assert "userPassword" not in result.stdout
    # nor can it test the values with a filter or a compare
    result = search(quickstart, "-x", "-b", SUFFIX, "(userPassword=*)", "1.1")
    assert result.returncode == 0 and result.stdout == ""
    compare = ldap_tool("ldapcompare", "-H", quickstart.url, "-x", JDOE, "userPassword:secret")
    assert compare.returncode == 50, compare
    # the root DSE and the schema stay public (Debian's frontend rules)
    result = search(quickstart, "-x", "-b", "", "-s", "base", "(objectClass=*)", "namingContexts")
    assert result.returncode == 0 and f"namingContexts: {SUFFIX}" in result.stdout
    result = search(quickstart, "-x", "-b", "cn=Subschema", "-s", "base", "(objectClass=*)", "objectClasses")
    assert result.returncode == 0 and "objectClasses:" in result.stdout


def test_passwords_are_hashed_and_secret_binds(quickstart):
    for dn in [*USERS, ROOTDN]:
        result = ldap_tool("ldapwhoami", "-H", quickstart.url, "-x", "-D", dn, "-w", "secret")
        assert (result.returncode, result.stdout) == (0, f"dn:{dn}\n"), result
        wrong = ldap_tool("ldapwhoami", "-H", quickstart.url, "-x", "-D", dn, "-w", "wrong")
        assert wrong.returncode == 49
    stored = search(quickstart, "-x", "-D", ROOTDN, "-w", "secret", "-b", SUFFIX, "(uid=*)", "userPassword")
    values = [line for line in stored.stdout.splitlines() if line.startswith("userPassword")]
    assert len(values) == 3 and all(v.startswith("userPassword:: e1NTSEF9") for v in values)  # "{SSHA}"
    own = search(quickstart, "-x", "-D", JDOE, "-w", "secret", "-b", JDOE, "-s", "base", "userPassword")
    assert "userPassword:: e1NTSEF9" in own.stdout  # self may read (and write) its own
    other = search(quickstart, "-x", "-D", JDOE, "-w", "secret", "-b", USERS[1], "-s", "base", "userPassword")
    assert other.returncode == 0 and "userPassword" not in other.stdout
    config = (quickstart.workdir / "qs" / "slapd.conf").read_text()
    rootpw = [line for line in config.splitlines() if line.startswith("rootpw")]
    assert len(rootpw) == 1 and rootpw[0].startswith("rootpw {SSHA}") and "secret" not in rootpw[0]


def test_monitor_is_for_the_rootdn(quickstart):
    for ident in (["-x"], ["-x", "-D", JDOE, "-w", "secret"]):
        result = search(quickstart, *ident, "-b", "cn=Monitor", "(objectClass=*)", "*", "+")
        assert result.returncode == 32 and result.stdout == "", result
    result = search(
        quickstart, "-x", "-D", ROOTDN, "-w", "secret", "-b", "cn=Monitor", "(objectClass=*)", "1.1"
    )
    assert result.returncode == 0 and "dn: cn=Monitor" in result.stdout
    # and the user the server runs as, over ldapi:// (SASL EXTERNAL)
    result = ldap_tool("ldapsearch", "-H", quickstart.ldapi_url, "-Y", "EXTERNAL", "-Q", "-LLL", "-b", "cn=Monitor",
                       "-s", "base", "(objectClass=*)", "1.1")  # fmt: skip
    assert result.returncode == 0 and "dn: cn=Monitor" in result.stdout, result
