"""Glue (`subordinate`, slapo-glue) side by side with Debian's slapd: one slapd.conf with two subordinate databases
glued under a superior, loaded by each server's slapadd with no -b (each entry routed to the database holding
it), then the same slapcat, searches (subtree and one-level across the glue, size limits counted across it,
paged results, bases inside a subordinate), writes into each part and the root DSE, with the same results."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import (
    ROOTDN,
    ROOTPW,
    SCHEMA_DIR,
    SLAPD,
    RunningServer,
    ldap_tool,
    start_pyldapd,
    start_slapd,
)

SUFFIX = "dc=example,dc=com"
GROUPS = f"ou=Groups,{SUFFIX}"
PEOPLE = f"ou=People,{SUFFIX}"
OTHER = f"ou=Other,{SUFFIX}"


def entry(dn: str, *lines: str) -> str:
    return "\n".join([f"dn: {dn}", *lines]) + "\n"


def people(n: int) -> list[str]:
    return [entry(f"uid=u{i},{PEOPLE}", "objectClass: inetOrgPerson", f"uid: u{i}", f"cn: User {i}", f"sn: S{i}")
            for i in range(n)]  # fmt: skip


# children listed before a subordinate's suffix entry and after it: slapadd takes each where it belongs
LDIF = "\n".join([
    entry(SUFFIX, "objectClass: dcObject", "objectClass: organization", "dc: example", "o: Example"),
    entry(GROUPS, "objectClass: organizationalUnit", "ou: Groups"),
    entry(f"cn=g0,{GROUPS}", "objectClass: groupOfNames", "cn: g0", f"member: {ROOTDN}"),
    entry(OTHER, "objectClass: organizationalUnit", "ou: Other"),
    entry(PEOPLE, "objectClass: organizationalUnit", "ou: People"),
    *people(4),
    entry(f"cn=g1,{GROUPS}", "objectClass: groupOfNames", "cn: g1", f"member: {ROOTDN}"),
    entry(f"cn=o0,{OTHER}", "objectClass: organizationalRole", "cn: o0"),
])  # fmt: skip


def glue_conf(root: Path, *, overlays: str = "", global_lines: str = "", monitor: bool = False) -> str:
    """Two subordinates (Groups not advertised, People advertised) before their superior, as slapd wants them."""
    lines = [f"include {SCHEMA_DIR}/{name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")]
    lines += ["modulepath /usr/lib/ldap", "moduleload back_mdb", global_lines]
    for name, suffix, flag in (("groups", GROUPS, "subordinate"), ("people", PEOPLE, "subordinate advertise"),
                               ("top", SUFFIX, "")):  # fmt: skip
        (root / name).mkdir(parents=True, exist_ok=True)
        lines += ["database mdb", f'suffix "{suffix}"', flag, f'rootdn "{ROOTDN}"', f"directory {root / name}",
                  "index objectClass eq"]  # fmt: skip
    lines += [f"rootpw {ROOTPW}", overlays]
    if monitor:
        lines[lines.index("moduleload back_mdb")] += "\nmoduleload back_monitor"
        lines += ["database monitor", f'access to * by dn.exact="{ROOTDN}" read by * none']
    return "\n".join(lines) + "\n"


def tool(
    server: str, name: str, conf: Path, *args: str, input: str | None = None
) -> subprocess.CompletedProcess:
    """slapadd/slapcat of Debian's slapd, or pyldapd's add/cat, on one config."""
    if server == "slapd":
        argv = [SLAPD, f"-T{name}", "-f", str(conf), *args]
    else:
        argv = [sys.executable, "-m", "pyldapd.cli.main", name, "-f", str(conf), *args]
    return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120)


def dns(output: str) -> list[str]:
    """The DNs of LDIF (unwrapped: -o ldif-wrap=no), lowercased, in order."""
    return [line[4:].strip().lower() for line in output.splitlines() if line.startswith("dn: ")]


def part_of(dn: str) -> str:
    """Which glued database holds a DN."""
    for label, suffix in (("groups", GROUPS), ("people", PEOPLE)):
        if dn == suffix.lower() or dn.endswith("," + suffix.lower()):
            return label
    return "top"


def parts_in_order(found: list[str]) -> list[str]:
    """The databases in the order their entries come (runs collapsed): glue's search order."""
    order: list[str] = []
    for dn in found:
        if not order or order[-1] != part_of(dn):
            order.append(part_of(dn))
    return order


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    """(slapd, pyldapd) each loaded by its own slapadd from the same glued config, then started."""
    root = tmp_path_factory.mktemp("glue")
    servers: list[RunningServer] = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            conf_text = glue_conf(root / name / "db", global_lines="sizelimit 3", monitor=True)
            conf = root / name / f"{name}.conf"
            conf.write_text(conf_text)
            added = tool(name, "add", conf, "-q", input=LDIF)  # no -b, no -n: the superior and its glue
            assert added.returncode == 0, f"{name}: {added.stderr}"
            servers.append(start(root / name, conf_text, name=name))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def search(server: RunningServer, *args: str, bind: bool = True) -> tuple[int, list[str], str]:
    auth = ["-D", ROOTDN, "-w", ROOTPW] if bind else []
    result = ldap_tool("ldapsearch", "-x", "-H", server.url, "-LLL", "-o", "ldif-wrap=no", *auth, *args)
    return result.returncode, dns(result.stdout), result.stderr.strip()


def test_slapadd_routes_and_slapcat_lists_the_glued_tree(pair):
    """After slapadd with no -b: each database holds its own entries (slapcat -b of each suffix), and slapcat
    with no -b lists the superior then each subordinate, on both."""
    per_server = []
    for server in pair:
        conf = server.config_path
        listing = {suffix: dns(tool(server.name, "cat", conf, "-b", suffix, "-o", "ldif-wrap=no").stdout)
                   for suffix in (GROUPS, PEOPLE)}  # fmt: skip
        whole = dns(tool(server.name, "cat", conf, "-o", "ldif-wrap=no").stdout)
        per_server.append((listing, whole))
    (slapd_parts, slapd_whole), (py_parts, py_whole) = per_server
    assert py_parts == slapd_parts
    assert sorted(py_parts[GROUPS]) == sorted(
        [GROUPS.lower(), f"cn=g0,{GROUPS}".lower(), f"cn=g1,{GROUPS}".lower()]
    )
    assert sorted(py_whole) == sorted(slapd_whole) and len(py_whole) == 11
    assert parts_in_order(py_whole) == parts_in_order(slapd_whole) == ["top", "groups", "people"]


@pytest.mark.parametrize(
    "args",
    [("-n", "2"), ("-b", f"uid=u1,{PEOPLE}"), ("-a", "(objectClass=organizationalUnit)"), ("-g",),
     ("-n", "3", "-g"), ("-b", SUFFIX, "-a", "(cn=User 1)")],
    ids=["n-sub", "b-in-sub", "filter", "no-glue", "n-top-no-glue", "b-top-filter"],
)  # fmt: skip
def test_slapcat_selections_alike(pair, args):
    """slapcat's -n, -b, -a and -g over the glued databases list the same entries in the same order of
    databases. (-s is left out: Debian's slapcat 2.5.13 aborts with it on this config, "munmap_chunk(): invalid
    pointer".)"""
    listed = []
    for server in pair:
        result = tool(server.name, "cat", server.config_path, "-o", "ldif-wrap=no", *args)
        listed.append((result.returncode, dns(result.stdout)))
    (slapd_rc, slapd_dns), (py_rc, py_dns) = listed
    assert (py_rc, sorted(py_dns)) == (slapd_rc, sorted(slapd_dns))
    assert parts_in_order(py_dns) == parts_in_order(slapd_dns)


@pytest.mark.parametrize(
    "args",
    [
        ("-b", SUFFIX, "-s", "sub", "(objectClass=*)"),
        ("-b", SUFFIX, "-s", "one", "(objectClass=*)"),
        ("-b", SUFFIX, "-s", "sub", "(cn=User 2)"),
        ("-b", GROUPS, "-s", "sub", "(objectClass=*)"),
        ("-b", GROUPS, "-s", "base", "(objectClass=*)"),
        ("-b", PEOPLE, "-s", "one", "(objectClass=*)"),
        ("-b", SUFFIX, "-s", "children", "(objectClass=*)"),
        ("-b", f"ou=Missing,{SUFFIX}", "-s", "sub", "(objectClass=*)"),
        ("-b", f"uid=nobody,{PEOPLE}", "-s", "sub", "(objectClass=*)"),
        ("-b", SUFFIX, "-s", "sub", "-z", "5", "(objectClass=*)"),
        ("-b", SUFFIX, "-s", "sub", "-E", "pr=2/noprompt", "(objectClass=*)"),
    ],
    ids=[
        "sub",
        "one",
        "filter",
        "sub-base",
        "sub-suffix",
        "in-sub",
        "children",
        "missing",
        "missing-in-sub",
        "client-size-limit",
        "paged",
    ],  # fmt: skip
)
def test_glued_searches_alike(pair, args):
    (slapd_rc, slapd_found, slapd_err), (py_rc, py_found, py_err) = (search(s, *args) for s in pair)
    assert (py_rc, sorted(py_found)) == (slapd_rc, sorted(slapd_found)), (py_err, slapd_err)
    assert parts_in_order(py_found) == parts_in_order(slapd_found)
    assert ("matched DN" in py_err) == ("matched DN" in slapd_err)
    if "-z" in args:
        assert py_rc == 4 and len(py_found) == 5  # the limit counts across the glued databases


def entries(server: RunningServer, *args: str) -> list[str]:
    """Each entry of an ldapsearch as one sorted block of lines (the entries sorted): order-free comparison."""
    result = ldap_tool("ldapsearch", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, "-LLL", "-o", "ldif-wrap=no",
                       *args)  # fmt: skip
    assert result.returncode == 0, result.stderr
    blocks = [block for block in result.stdout.split("\n\n") if block.strip()]
    return sorted("\n".join(sorted(block.lower().splitlines())) for block in blocks)


def test_glued_entries_read_alike(pair):
    """The whole tree with its user attributes and hasSubordinates (computed in each database), alike."""
    found = [entries(server, "-b", SUFFIX, "*", "hasSubordinates", "entryDN") for server in pair]
    assert found[1] == found[0] and len(found[0]) == 11


def page_sizes(server: RunningServer, size: int) -> tuple[int, list[int]]:
    """A paged subtree search of the tree (ldapsearch -E pr=N/noprompt): its result and the entries of each page."""
    result = ldap_tool("ldapsearch", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, "-o", "ldif-wrap=no", "-b",
                       SUFFIX, "-E", f"pr={size}/noprompt", "1.1")  # fmt: skip
    pages, count = [], 0
    for line in result.stdout.splitlines():
        if line.startswith("dn: "):
            count += 1
        elif line.startswith("# search result"):
            pages.append(count)
            count = 0
    return result.returncode, pages


@pytest.mark.parametrize("size", [1, 3, 4, 20])
def test_paged_results_across_the_glue(pair, size):
    """Pages over the glued tree hold what slapd's hold (each page full until the end)."""
    theirs, ours = page_sizes(pair[0], size), page_sizes(pair[1], size)
    assert ours == theirs and sum(theirs[1]) == 11 and theirs[0] == 0


def test_server_size_limit_counts_across_the_glue(pair):
    """`sizelimit 3` for an anonymous search of the whole tree: 3 entries and sizeLimitExceeded on both."""
    (slapd_rc, slapd_found, _), (py_rc, py_found, _) = (search(s, "-b", SUFFIX, bind=False) for s in pair)
    assert (py_rc, len(py_found)) == (slapd_rc, len(slapd_found)) == (4, 3)


def test_root_dse_names_only_advertised_subordinates(pair):
    found = [ldap_tool("ldapsearch", "-x", "-H", s.url, "-LLL", "-s", "base", "-b", "", "namingContexts").stdout
             for s in pair]  # fmt: skip
    contexts = [sorted(line.split(": ", 1)[1].lower() for line in text.splitlines() if ":" in line and
                       line.lower().startswith("namingcontexts")) for text in found]  # fmt: skip
    assert contexts[1] == contexts[0] == sorted([SUFFIX, PEOPLE.lower()])


def test_monitor_shows_the_glue(pair):
    """cn=Monitor's database entries: a subordinate names its superior (monitorSuperiorDN), the superior lists
    the glue overlay slapd puts on it."""
    found = []
    for server in pair:
        result = ldap_tool("ldapsearch", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, "-LLL", "-o",
                           "ldif-wrap=no", "-b", "cn=Databases,cn=Monitor", "-s", "one", "(monitoredInfo=mdb)",
                           "namingContexts", "monitorSuperiorDN", "monitorOverlay")  # fmt: skip
        assert result.returncode == 0, result.stderr
        found.append(sorted(line.lower() for line in result.stdout.splitlines() if line.strip()))
    assert found[1] == found[0]
    assert f"monitorsuperiordn: {SUFFIX}" in found[0] and "monitoroverlay: glue" in found[0]


WRITES = [
    ("ldapadd", entry(f"uid=new,{PEOPLE}", "objectClass: inetOrgPerson", "uid: new", "cn: New", "sn: N")),
    ("ldapadd", entry(f"cn=g2,{GROUPS}", "objectClass: groupOfNames", "cn: g2", f"member: {ROOTDN}")),
    ("ldapadd", entry(f"cn=o1,{OTHER}", "objectClass: organizationalRole", "cn: o1")),
    ("ldapmodify", f"dn: uid=u1,{PEOPLE}\nchangetype: modify\nreplace: sn\nsn: Changed\n"),
    ("ldapmodify", f"dn: cn=g0,{GROUPS}\nchangetype: modrdn\nnewrdn: cn=g9\ndeleteoldrdn: 1\n"),
    (
        "ldapmodify",
        f"dn: cn=o0,{OTHER}\nchangetype: modrdn\nnewrdn: cn=o0\ndeleteoldrdn: 1\nnewsuperior: {PEOPLE}\n",
    ),
    ("ldapmodify", f"dn: uid=u3,{PEOPLE}\nchangetype: delete\n"),
    ("ldapmodify", f"dn: {PEOPLE}\nchangetype: delete\n"),
    ("ldapmodify", f"dn: {GROUPS}\nchangetype: modrdn\nnewrdn: ou=Groups2\ndeleteoldrdn: 1\n"),
]


def test_writes_go_to_the_database_holding_the_dn(pair):
    """Adds, modifies, renames and deletes in each part (and across parts: affectsMultipleDSAs) with the same
    results; then the whole tree and each database's own entries are the same on both."""
    for command, ldif in WRITES:
        results = [
            ldap_tool(command, "-x", "-H", s.url, "-D", ROOTDN, "-w", ROOTPW, input=ldif) for s in pair
        ]
        assert results[1].returncode == results[0].returncode, (ldif, results[0].stderr, results[1].stderr)
    (_, slapd_found, _), (_, py_found, _) = (search(s, "-b", SUFFIX) for s in pair)
    assert sorted(py_found) == sorted(slapd_found)
    assert f"uid=new,{PEOPLE}".lower() in py_found and f"cn=o1,{OTHER}".lower() in py_found
    for suffix in (GROUPS, PEOPLE):
        (_, slapd_part, _), (_, py_part, _) = (search(s, "-b", suffix, "-s", "sub") for s in pair)
        assert sorted(py_part) == sorted(slapd_part)


def sync_refresh(server: RunningServer) -> list[str]:
    """The entries a refreshOnly sync search of the whole tree sends (RFC 4533, ldapsearch -E sync=ro)."""
    result = ldap_tool("ldapsearch", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, "-LLL", "-o",
                       "ldif-wrap=no", "-b", SUFFIX, "-E", "!sync=ro", "1.1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return sorted(dns(result.stdout))


def persist_sees(
    server: RunningServer, change: str, wanted: str, refresh_size: int, timeout: float = 20.0
) -> bool:
    """A refreshAndPersist sync search of the tree is open (its refresh of `refresh_size` entries read) while
    `change` is made; True once `wanted` (a DN) comes in its persist stage."""
    argv = ["ldapsearch", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, "-LLL", "-o", "ldif-wrap=no", "-b",
            SUFFIX, "-E", "!sync=rp", "1.1"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + timeout
        output, before = "", -1
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                output += os.read(fd, 65536).decode(errors="replace")
            if before < 0 and output.count("dn: ") >= refresh_size:
                result = ldap_tool(
                    "ldapmodify", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=change
                )
                assert result.returncode == 0, result.stderr
                before = len(output)
            if before >= 0 and f"dn: {wanted}".lower() in output[before:].lower():
                return True
        return False
    finally:
        process.kill()
        process.wait(5)


@pytest.fixture(scope="module")
def providers(tmp_path_factory: pytest.TempPathFactory):
    """(slapd, pyldapd) with `overlay glue` then `overlay syncprov` on the superior, loaded by slapadd."""
    root = tmp_path_factory.mktemp("glue-syncprov")
    servers: list[RunningServer] = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            conf_text = glue_conf(root / name / "db", overlays="overlay glue\noverlay syncprov",
                                  global_lines="moduleload syncprov\nserverID 1")  # fmt: skip
            conf = root / name / f"{name}.conf"
            conf.write_text(conf_text)
            added = tool(name, "add", conf, "-q", input=LDIF)
            assert added.returncode == 0, f"{name}: {added.stderr}"
            servers.append(start(root / name, conf_text, name=name))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def test_syncprov_above_glue_serves_the_whole_tree(providers):
    """syncprov configured after an explicit glue overlay: its refresh holds the subordinates' entries and its
    persist stage carries a change made in a subordinate, on both."""
    refreshed = [sync_refresh(server) for server in providers]
    assert refreshed[1] == refreshed[0] and len(refreshed[0]) == 11
    change = f"dn: uid=u2,{PEOPLE}\nchangetype: modify\nreplace: sn\nsn: Persisted\n"
    assert [persist_sees(server, change, f"uid=u2,{PEOPLE}", 11) for server in providers] == [True, True]


def test_subordinate_over_cn_config_alike(tmp_path):
    """olcSubordinate over cn=config at run time, on slapd and pyldapd run from slapd.d's that slaptest made: a
    database inserted before its superior with olcSubordinate: TRUE is glued at once, a glue overlay on it is
    refused, a bad value is refused, and deleting olcSubordinate unglues it."""
    from tests.server.test_cnconfig_databases import ADMIN, Node

    nodes = [Node(tmp_path, "slapd", "slapd"), Node(tmp_path, "py", "pyldapd")]
    extra = f"ou=Extra,{SUFFIX}"
    try:
        for node in nodes:
            node.start()
            (node.dir / "extra").mkdir()

        def both(tool: str, make, *args: str, auth=None) -> list[tuple[int, str]]:
            results = []
            for node in nodes:
                kwargs = {"auth": auth} if auth is not None else {}
                result = node.tool(tool, *args, input=make(node) if callable(make) else make, **kwargs)
                results.append((result.returncode, result.stderr.replace(str(node.dir), "DIR").strip()))
            return results

        def tree(*args: str) -> list[list[str]]:
            return [sorted(dns(node.tool("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", SUFFIX, *args, "1.1",
                                         auth=ADMIN).stdout)) for node in nodes]  # fmt: skip

        sub = lambda n: (  # noqa: E731
            "dn: olcDatabase={1}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n"
            f"olcDatabase: {{1}}mdb\nolcSuffix: {extra}\nolcSubordinate: TRUE\nolcDbDirectory: {n.dir / 'extra'}\n"
            f"olcRootDN: cn=admin,{SUFFIX}\n"
        )
        assert both("ldapadd", sub) == [(0, "")] * 2
        data = lambda n: "\n".join([  # noqa: E731
            entry(SUFFIX, "objectClass: dcObject", "objectClass: organization", "dc: example", "o: Example"),
            entry(extra, "objectClass: organizationalUnit", "ou: Extra"),
            entry(f"cn=x,{extra}", "objectClass: organizationalRole", "cn: x"),
        ])  # fmt: skip
        added = both("ldapadd", data, auth=ADMIN)
        assert added[0] == added[1] and added[0][0] == 0, added
        whole = tree()
        assert whole[0] == whole[1] == sorted([SUFFIX, extra.lower(), f"cn=x,{extra}".lower()])
        one = tree("-s", "one")
        assert one[0] == one[1] == [extra.lower()]
        glue_on_sub = "dn: olcOverlay=glue,olcDatabase={1}mdb,cn=config\nobjectClass: olcOverlayConfig\nolcOverlay: glue\n"
        refused = both("ldapadd", glue_on_sub)
        assert refused[0][0] != 0 and refused[1][0] == refused[0][0], refused
        bad = "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nreplace: olcSubordinate\nolcSubordinate: maybe\n"
        refused = both("ldapmodify", bad)
        assert refused[0][0] != 0 and refused[1][0] == refused[0][0], refused
        unglue = "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\ndelete: olcSubordinate\n"
        assert both("ldapmodify", unglue) == [(0, "")] * 2
        alone = tree()
        assert alone[0] == alone[1] == [SUFFIX]
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.parametrize(
    "extra",
    [
        entry(f"uid=bad,{PEOPLE}", "objectClass: inetOrgPerson", "uid: bad", "cn: Bad"),
        entry("dc=other,dc=org", "objectClass: dcObject", "objectClass: organization", "dc: other", "o: O"),
        entry(f"cn=g0,{GROUPS}", "objectClass: groupOfNames", "cn: g0", f"member: {ROOTDN}"),
    ],
    ids=["schema-in-sub", "outside", "duplicate-in-sub"],
)
def test_slapadd_refusals_alike(tmp_path, extra):
    """A glued slapadd whose LDIF has, amid the People entries, an entry its schema refuses in a subordinate, an
    entry no database holds, or a duplicate in a subordinate: the same exit status, with and without -c, and the
    same entries stored (slapd stops at the bad entry in LDIF order, whichever database the others go to)."""
    outcomes = []
    for name in ("slapd", "pyldapd"):
        for flags in ((), ("-c",)):
            root = tmp_path / name / ("c" if flags else "plain")
            root.mkdir(parents=True)
            conf = root / "slapd.conf"
            conf.write_text(glue_conf(root / "db"))
            cut = LDIF.index(f"dn: uid=u2,{PEOPLE}")
            added = tool(name, "add", conf, "-q", *flags, input=LDIF[:cut] + extra + "\n" + LDIF[cut:])
            stored = sorted(dns(tool(name, "cat", conf, "-o", "ldif-wrap=no").stdout))
            outcomes.append((name, flags, added.returncode, stored))
    slapd_runs, py_runs = outcomes[:2], outcomes[2:]
    for theirs, ours in zip(slapd_runs, py_runs, strict=True):
        assert ours[2:] == theirs[2:], (theirs, ours)
