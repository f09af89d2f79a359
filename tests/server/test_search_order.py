"""Side by side with Debian's slapd: the order of a search over a whole database (back-mdb lists it by entry id,
glue the superior's part then each subordinate's: slapd's test011 and test012), and a database whose suffix is
the empty DN holding top-level entries (slapd's test027), each server loaded by its own slapadd."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOTPW, SCHEMA_DIR, SLAPD, RunningServer, ldap_tool, start_pyldapd, start_slapd

SUFFIX = "dc=example,dc=com"
ROOTDN = f"cn=Manager,{SUFFIX}"
PEOPLE = f"ou=People,{SUFFIX}"
GROUPS = f"ou=Groups,{SUFFIX}"
EMPTY_ROOTDN = "cn=Manager,c=US"  # the empty-DN database's (test027's)


def header() -> list[str]:
    lines = [f"include {SCHEMA_DIR}/{name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")]
    return [*lines, "modulepath /usr/lib/ldap", "moduleload back_mdb"]


def database(directory: Path, suffix: str, rootdn: str, *extra: str) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    password = [f"rootpw {ROOTPW}"] if "subordinate" not in extra else []  # (slapd: only under the suffix)
    return ["database mdb", f'suffix "{suffix}"', *extra, f'rootdn "{rootdn}"', *password,
            f"directory {directory}", "index objectClass eq"]  # fmt: skip


def glue_conf(root: Path) -> str:
    """test011's layout: two subordinates configured before their superior."""
    return "\n".join([*header(), *database(root / "people", PEOPLE, ROOTDN, "subordinate"),
                      *database(root / "groups", GROUPS, ROOTDN, "subordinate"),
                      *database(root / "top", SUFFIX, ROOTDN)]) + "\n"  # fmt: skip


def empty_dn_conf(root: Path) -> str:
    """test027's layout: a database for dc=example,dc=com and one whose suffix is ""."""
    return "\n".join([*header(), *database(root / "example", SUFFIX, ROOTDN),
                      *database(root / "empty", "", EMPTY_ROOTDN), "access to * by * read"]) + "\n"  # fmt: skip


def record(dn: str, *lines: str) -> str:
    return "\n".join([f"dn: {dn}", *lines]) + "\n"


def unit(dn: str) -> str:
    return record(dn, "objectClass: organizationalUnit", f"ou: {dn.split(',')[0][3:]}")


def role(dn: str) -> str:
    return record(dn, "objectClass: organizationalRole", f"cn: {dn.split(',')[0][3:]}")


# The superior's cn=Manager comes after deeper entries of its own, as in test-ordered.ldif; one entry comes before
# its parent (which then takes the id slapadd gave it, before its child's)
GLUED_LDIF = "\n".join([
    record(SUFFIX, "objectClass: dcObject", "objectClass: organization", "dc: example", "o: Example"),
    unit(f"ou=Other,{SUFFIX}"),
    unit(PEOPLE),
    unit(GROUPS),
    role(f"cn=p1,{PEOPLE}"),
    role(f"cn=g1,{GROUPS}"),
    role(f"cn=Dept,ou=Units,{SUFFIX}"),
    role(f"cn=o1,ou=Other,{SUFFIX}"),
    unit(f"ou=Units,{SUFFIX}"),
    role(ROOTDN),
    role(f"cn=o2,ou=Other,{SUFFIX}"),
    role(f"cn=p2,{PEOPLE}"),
])  # fmt: skip

# top-level entries of the empty-DN database, one before its parent
EMPTY_DN_LDIF = "\n".join([
    record("c=US", "objectClass: country", "c: US"),
    record("o=Example,c=US", "objectClass: organization", "o: Example"),
    record("o=Beispiel,c=DE", "objectClass: organization", "o: Beispiel"),
    record("c=IT", "objectClass: country", "c: IT"),
    record("c=DE", "objectClass: country", "c: DE"),
])  # fmt: skip


def slapadd(server: str, conf: Path, ldif: str, *args: str) -> None:
    if server == "slapd":
        argv = [SLAPD, "-Tadd", "-f", str(conf), *args]
    else:
        argv = [sys.executable, "-m", "pyldapd.cli.main", "add", "-f", str(conf), *args]
    added = subprocess.run(argv, input=ldif, capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, f"{server}: {added.stderr}"


def started(root: Path, make_conf, loads: list[tuple[str, tuple[str, ...]]]):
    """(slapd, pyldapd) from one config, each loaded by its own slapadd, then started."""
    servers: list[RunningServer] = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            conf_text = make_conf(root / name / "db")
            conf = root / name / f"{name}.conf"
            conf.write_text(conf_text)
            for ldif, args in loads:
                slapadd(name, conf, ldif, *args)
            servers.append(start(root / name, conf_text, name=name))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def glued(tmp_path_factory: pytest.TempPathFactory):
    yield from started(tmp_path_factory.mktemp("order-glue"), glue_conf, [(GLUED_LDIF, ())])


@pytest.fixture(scope="module")
def empty_dn(tmp_path_factory: pytest.TempPathFactory):
    yield from started(tmp_path_factory.mktemp("order-emptydn"), empty_dn_conf, [(EMPTY_DN_LDIF, ("-b", ""))])


def search(
    server: RunningServer, base: str, scope: str, filter_: str = "(objectClass=*)"
) -> tuple[int, list[str]]:
    """Return code and DNs in the order sent (no client-side sorting, as the OpenLDAP scripts compare)."""
    found = ldap_tool("ldapsearch", "-x", "-H", server.url, "-LLL", "-o", "ldif-wrap=no", "-b", base, "-s", scope,
                      filter_, "1.1")  # fmt: skip
    return found.returncode, [line[4:] for line in found.stdout.splitlines() if line.startswith("dn: ")]


def write(server: RunningServer, who: str, tool: str, ldif: str, *args: str) -> int:
    return ldap_tool(tool, "-x", "-H", server.url, "-D", who, "-w", ROOTPW, *args, input=ldif).returncode


@pytest.mark.parametrize(
    "base, scope, filter_",
    [
        (SUFFIX, "sub", "(objectClass=*)"),
        (SUFFIX, "children", "(objectClass=*)"),
        (SUFFIX, "sub", "(objectClass=organizationalRole)"),
        (PEOPLE, "sub", "(objectClass=*)"),
    ],
)
def test_glued_tree_lists_in_slapds_order(glued, base, scope, filter_):
    """The superior's entries by id (cn=Manager after the deeper entries stored before it, ou=Units before its
    child that came first), then each subordinate's: test011's comparison, which sorts nothing."""
    slapd, pyldapd = (search(server, base, scope, filter_) for server in glued)
    assert pyldapd == slapd and pyldapd[0] == 0 and pyldapd[1]


def test_glued_tree_after_ldap_writes_lists_in_slapds_order(glued):
    """Entries added over LDAP take the next ids (test012 loads its tree with ldapadd), and an entry moved under
    a newer parent keeps its id, so it comes before that parent."""
    for server in glued:
        assert write(server, ROOTDN, "ldapadd", "\n".join([unit(f"ou=Late,{SUFFIX}"), role(f"cn=p3,{PEOPLE}"),
                                                            role(f"cn=x,ou=Other,{SUFFIX}")])) == 0  # fmt: skip
        moved = "\n".join([f"dn: cn=o1,ou=Other,{SUFFIX}", "changetype: modrdn", "newrdn: cn=o1",
                           "deleteoldrdn: 1", f"newsuperior: ou=Late,{SUFFIX}", ""])  # fmt: skip
        assert write(server, ROOTDN, "ldapmodify", moved) == 0
    slapd, pyldapd = (search(server, SUFFIX, "sub") for server in glued)
    assert pyldapd == slapd
    assert pyldapd[1].index(f"cn=o1,ou=Late,{SUFFIX}") < pyldapd[1].index(f"ou=Late,{SUFFIX}")


@pytest.mark.parametrize(
    "base, scope",
    [("", "sub"), ("", "one"), ("", "children"), ("", "base"), ("c=DE", "sub"), ("c=FR", "sub"),
     ("o=Nowhere,c=US", "base")],
)  # fmt: skip
def test_empty_dn_database_searches_as_slapd(empty_dn, base, scope):
    """A subtree search from "" is the empty-DN database's alone (not the dc=example,dc=com one's), by id; a base
    search of "" is the root DSE; a missing top-level entry is noSuchObject."""
    slapd, pyldapd = (search(server, base, scope) for server in empty_dn)
    assert pyldapd == slapd


def test_empty_dn_database_takes_writes_as_slapd(empty_dn):
    """Top-level entries added, renamed and deleted over LDAP by the database's rootdn; refused without a parent
    or as another database's rootdn (test027's second part). Until the first delete the listing is by id, as
    slapd's; after it slapd walks its tree instead (the ids in use no longer fill their range: back-mdb's
    candidates outnumber the subtree), so only the entries are compared."""
    steps = [
        (EMPTY_ROOTDN, "ldapadd", record("c=FR", "objectClass: country", "c: FR")),
        (EMPTY_ROOTDN, "ldapadd", record("o=Exemple,c=FR", "objectClass: organization", "o: Exemple")),
        (EMPTY_ROOTDN, "ldapadd", record("o=Nowhere,c=XX", "objectClass: organization", "o: Nowhere")),
        (EMPTY_ROOTDN, "ldapmodify", "dn: c=IT\nchangetype: modrdn\nnewrdn: c=ES\ndeleteoldrdn: 1\n"),
        (ROOTDN, "ldapmodify", "dn: c=US\nchangetype: delete\n"),
        (EMPTY_ROOTDN, "ldapadd", record("c=US", "objectClass: country", "c: US")),
    ]
    for who, tool, ldif in steps:
        codes = [write(server, who, tool, ldif) for server in empty_dn]
        assert codes[1] == codes[0], (who, tool, ldif)
    slapd, pyldapd = (search(server, "", "sub") for server in empty_dn)
    assert pyldapd == slapd and "c=FR" in pyldapd[1] and "c=ES" in pyldapd[1]
    for server in empty_dn:
        deleted = "dn: o=Beispiel,c=DE\nchangetype: delete\n\ndn: c=DE\nchangetype: delete\n"
        assert write(server, EMPTY_ROOTDN, "ldapmodify", deleted) == 0
    slapd, pyldapd = (search(server, "", "sub") for server in empty_dn)
    assert sorted(pyldapd[1]) == sorted(slapd[1]) and "c=DE" not in pyldapd[1]


def test_empty_dn_database_keeps_its_context_csn_without_a_suffix_entry(tmp_path):
    """The contextCSN vector of a database whose suffix is "" has no suffix entry to be copied onto (its root is
    the root DSE): slapadd -w and the stop keep it in the metadata, and say nothing of a missing entry. (A dry run
    finds the top-level entries' parent too.)"""
    conf_text = empty_dn_conf(tmp_path / "db")
    conf = tmp_path / "pyldapd.conf"
    conf.write_text(conf_text)
    slapadd("pyldapd", conf, EMPTY_DN_LDIF, "-b", "", "-u")
    slapadd("pyldapd", conf, EMPTY_DN_LDIF, "-b", "", "-w")
    server = start_pyldapd(tmp_path, conf_text)
    try:
        assert write(server, EMPTY_ROOTDN, "ldapadd", record("c=FR", "objectClass: country", "c: FR")) == 0
    finally:
        assert server.stop() == 0
    assert "contextCSN not copied" not in server.log(), server.log()
