"""OpenLDAP 2.5.13's own test scripts with pyldapd as slapd (issue 10); the harness is tests/compat/openldap_scripts.py.

Each script runs unchanged, as `make test` runs it (`./run -b mdb testNNN-...` in a tree laid out like OpenLDAP's
build), with pyldapd standing in for slapd, slapadd, slapcat, slapindex, slapmodify and slappasswd and Debian's ldap-utils as
clients. The scripts compare what the server returns with the expected LDIF of OpenLDAP's tests/data, so a pass
means the same results as slapd. Debian's slapd runs the same tree first for the fast scripts, to show the harness
itself drives them right (every script listed passes with it: `python -m tests.compat.openldap_scripts slapd`).
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.compat import openldap_scripts as ols
from tests.servers import free_port, ldap_tool, start_process

# Scripts of the list that do not pass yet, each with the first divergence it hits (none now).
NOT_YET: dict[str, str] = {}

# Scripts that pass with pyldapd: every one of the harness's list but those above.
PASSING = [script for script in ols.SCRIPTS if script not in NOT_YET]

# fast scripts that validate the harness with Debian's slapd (the syncrepl ones take 10-50 s each with it)
SLAPD_CHECK = ["test000-rootdse", "test001-slapadd", "test003-search", "test004-modify", "test005-modrdn"]

SCRIPT_TIMEOUT = 180.0  # seconds; the slowest script (test050) takes about 80 s with slapd


def test_lists_cover_the_scripts() -> None:
    assert set(NOT_YET) <= set(ols.SCRIPTS) and len(set(ols.SCRIPTS)) == len(ols.SCRIPTS)
    assert sorted(PASSING + list(NOT_YET)) == sorted(ols.SCRIPTS)


@pytest.fixture(scope="module")
def slapd_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ols.make_tree(tmp_path_factory.mktemp("openldap-slapd"), "slapd")


@pytest.fixture(scope="module")
def pyldapd_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ols.make_tree(tmp_path_factory.mktemp("openldap-pyldapd"), "pyldapd")


@pytest.mark.parametrize("script", SLAPD_CHECK)
def test_script_with_debian_slapd(slapd_tree: Path, script: str) -> None:
    result = ols.run_script(slapd_tree, script, timeout=SCRIPT_TIMEOUT)
    assert result.passed, result.divergence(40)
    assert ">>>>> Test succeeded" in result.output


@pytest.mark.parametrize("script", PASSING)
def test_script_with_pyldapd(pyldapd_tree: Path, script: str) -> None:
    result = ols.run_script(pyldapd_tree, script, timeout=SCRIPT_TIMEOUT)
    assert result.passed, result.divergence(40)
    assert ">>>>> Test succeeded" in result.output


# --- what test049-sync-config and its kin need before their first replication step, slapd against pyldapd ----


def slapd_program(server: str) -> str:
    return ols.DEBIAN_SLAPD if server == "slapd" else ols.pyldapd_dispatcher()


@pytest.mark.parametrize("server", ["slapd", "pyldapd"])
def test_slappasswd_generate(server: str) -> None:
    """test049's `$SLAPPASSWD -g -n > configpw`: 8 characters of lutil_passwd_generate's alphabet, in clear."""
    program = slapd_program(server)
    done = subprocess.run([program, "-Tpasswd", "-g", "-n"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"[A-Za-z0-9./]{8}", done.stdout), done.stdout
    done = subprocess.run([program, "-Tpasswd", "-g"], capture_output=True, text=True, timeout=60)
    assert re.fullmatch(r"[A-Za-z0-9./]{8}\n", done.stdout), done.stdout
    done = subprocess.run([program, "-Tpasswd", "-s", "x", "-g"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr.strip()) == (1, "New password already provided")


def config_only_ldif(workdir: Path, password: str, modules: bool) -> str:
    """test049's slapd-dynamic.ldif shape: no database but the config one, which has olcRootPW and no olcRootDN
    (Debian's slapd loads back-mdb as a module, as the scripts do for a modular build)."""
    schema = ols.fetch_source() / "servers" / "slapd" / "schema"
    module = (
        "\ndn: cn=module,cn=config\nobjectClass: olcModuleList\ncn: module\nolcModuleLoad: back_mdb\n"
        if modules
        else ""
    )
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {workdir}/slapd.pid
{module}
dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcRootPW: {password}

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

""" + (schema / "core.ldif").read_text()


@pytest.mark.parametrize("server", ["slapd", "pyldapd"])
def test_config_rootdn_and_a_database_added_at_run_time(tmp_path: Path, server: str) -> None:
    """Bind as `cn=config` (the config database's default rootdn) with its olcRootPW, then add a database over
    cn=config and write to it at once, as test049/test050/test059 do."""
    program = slapd_program(server)
    (tmp_path / "slapd.d").mkdir()
    (tmp_path / "db").mkdir(exist_ok=True)
    done = subprocess.run([program, "-Ta", "-F", "slapd.d", "-n", "0"], input=config_only_ldif(tmp_path, "sEcret", server == "slapd"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    port = free_port()
    url = f"ldap://127.0.0.1:{port}/"
    argv = [program, "-s0", "-F", "./slapd.d", "-h", url, "-d", "0"]
    running = start_process(server, argv, port, "", tmp_path, tmp_path / "slapd.d")
    try:
        wrong = ldap_tool("ldapwhoami", "-x", "-H", url, "-D", "cn=config", "-w", "nope")
        assert wrong.returncode == 49, wrong.stderr
        who = ldap_tool("ldapwhoami", "-x", "-H", url, "-D", "cn=config", "-w", "sEcret")
        assert (who.returncode, who.stdout.strip()) == (0, "dn:cn=config"), who.stderr
        # test049's stanza: a syncrepl naming this very server, which slapd ignores (no shadow: writes are taken)
        database = f"""dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: dc=example,dc=com
olcDbDirectory: ./db
olcRootDN: cn=Manager,dc=example,dc=com
olcRootPW: secret
olcSyncRepl: rid=002 provider={url} binddn="cn=Manager,dc=example,dc=com" bindmethod=simple
  credentials=secret searchbase="dc=example,dc=com" type=refreshAndPersist
  retry="3 5 300 5" timeout=3
olcUpdateRef: {url}
"""
        added = ldap_tool("ldapadd", "-x", "-H", url, "-D", "cn=config", "-w", "sEcret", input=database)
        assert added.returncode == 0, added.stderr
        entry = "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"
        added = ldap_tool("ldapadd", "-x", "-H", url, "-D", "cn=Manager,dc=example,dc=com", "-w", "secret",
                          input=entry)  # fmt: skip
        assert added.returncode == 0, added.stderr
        found = ldap_tool("ldapsearch", "-x", "-LLL", "-H", url, "-b", "dc=example,dc=com", "-s", "base", "o")
        assert found.stdout.split() == ["dn:", "dc=example,dc=com", "o:", "Example"], found.stdout
    finally:
        running.stop(signal.SIGHUP)  # how the scripts stop their servers
