"""X-ORDERED 'VALUES' attributes (olcAccess, olcSyncrepl...) held in a data database and added to cn=config,
side by side with Debian's slapd: a data database stores an added entry's values as written and renumbers them on
modify (mods.c, value.c: insert at `{n}`, delete by number, renumber); cn=config puts an added entry's values in
the order of their numbers (check_vals) and refuses a mix. test059 keeps a consumer's cn=config, olc* entries, in
an ldif database; the same LDIF must give the same values on both servers."""

from __future__ import annotations

from pathlib import Path

from tests.servers import SCHEMA_DIR, ldap_tool, slapd_conf, start_pyldapd, start_slapd

SUFFIX = "cn=consumer"
ROOT = ["-x", "-D", f"cn=admin,{SUFFIX}", "-w", "secret"]
DB = f"olcDatabase={{0}}config,{SUFFIX}"
# each step is one ldapmodify run; the entry is read back after each
DATA_STEPS = [
    f"dn: {SUFFIX}\nchangetype: add\nobjectClass: olcGlobal\ncn: consumer\n",
    f"dn: {DB}\nchangetype: add\nobjectClass: olcDatabaseConfig\nolcDatabase: {{0}}config\n"
    "olcAccess: {1}to * by * read\nolcAccess: {0}to * by * write\n"
    "olcSyncrepl: rid=001 provider=ldap://x/ searchbase=cn=x\n",
    f"dn: {DB}\nchangetype: modify\nadd: olcSyncrepl\nolcSyncrepl: rid=002 provider=ldap://y/ searchbase=cn=y\n-\n"
    'add: olcAccess\nolcAccess: {0}to dn.base="" by * read\nolcAccess: to attrs=cn by * none\n'
    "olcAccess: {7}to attrs=sn by * none\n",
    f"dn: {DB}\nchangetype: modify\ndelete: olcAccess\nolcAccess: {{1}}\n-\n"
    "delete: olcSyncrepl\nolcSyncrepl: {0}rid=001 provider=ldap://x/ searchbase=cn=x\n",
    f"dn: {DB}\nchangetype: modify\nadd: olcAccess\nolcAccess: to * by * read\n",  # the same value, unnumbered
    f"dn: {DB}\nchangetype: modify\nadd: olcAccess\nolcAccess: {{9}}to * by * read\n",  # numbered otherwise
    f"dn: {DB}\nchangetype: modify\ndelete: olcAccess\nolcAccess: {{9}}\n",
    f"dn: {DB}\nchangetype: modify\nadd: olcAccess\nolcAccess: {{x}}to * by self write\n",
    f"dn: {DB}\nchangetype: modify\nadd: olcAccess\nolcAccess: {{1}}to * by self write\n"
    "olcAccess: {3}to * by self write\n",
    f"dn: {DB}\nchangetype: modify\nreplace: olcAccess\nolcAccess: {{1}}to * by * read\nolcAccess: {{0}}to * by * write\n",
    f"dn: olcDatabase={{1}}mdb,{SUFFIX}\nchangetype: add\nobjectClass: olcDatabaseConfig\nolcDatabase: {{1}}mdb\n"
    "olcAccess: {0}to * by * read\nolcAccess: to * by * write\n",
]


def run_steps(server, steps: list[str], tool_args: list[str], base: str, filter_: str) -> list:
    seen = []
    for step in steps:
        done = ldap_tool("ldapmodify", "-H", server.url, *tool_args, input=step)
        found = ldap_tool("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-H", server.url, *tool_args, "-b", base,
                          filter_, "olcAccess", "olcSyncrepl")  # fmt: skip
        seen.append((done.returncode, done.stderr.strip(), found.stdout))
    return seen


def test_data_database_renumbers_on_modify_as_slapd(tmp_path: Path) -> None:
    outcomes = {}
    for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
        folder = tmp_path / name / "db"
        folder.mkdir(parents=True)
        conf = (f"include {SCHEMA_DIR}/core.schema\ndatabase ldif\nsuffix \"{SUFFIX}\"\n"
                f"rootdn \"cn=admin,{SUFFIX}\"\nrootpw secret\ndirectory {folder}\n")  # fmt: skip
        server = start(tmp_path / name, conf, name=name)
        try:
            outcomes[name] = run_steps(server, DATA_STEPS, ROOT, SUFFIX, "(objectClass=olcDatabaseConfig)")
        finally:
            server.stop()
    codes = [code for code, _, _ in outcomes["slapd"]]
    assert codes == [0, 0, 0, 0, 20, 0, 16, 80, 0, 0, 0], outcomes["slapd"]
    for step, (got, expected) in enumerate(zip(outcomes["pyldapd"], outcomes["slapd"], strict=True)):
        assert got == expected, (step, DATA_STEPS[step])


def config_steps(folder: Path) -> list[str]:
    def database(suffix: str, *access: str) -> str:
        (folder / suffix).mkdir(parents=True)
        values = "".join(f"olcAccess: {a}\n" for a in access)
        return (f"dn: olcDatabase=ldif,cn=config\nchangetype: add\nobjectClass: olcDatabaseConfig\n"
                f"objectClass: olcLdifConfig\nolcDatabase: ldif\nolcDbDirectory: {folder / suffix}\n"
                f"olcSuffix: cn={suffix}\n{values}")  # fmt: skip

    return [
        database("a", "{1}to * by * read", "{0}to * by * write"),
        database("b", "{1}to * by * read", "to * by * write"),  # a mix: refused
        database("c", "{5}to * by * read", "{3}to * by * write", "{4}to * by * none"),
        "dn: olcDatabase={2}ldif,cn=config\nchangetype: modify\nadd: olcAccess\n"
        'olcAccess: {1}to dn.base="" by * read\nolcAccess: {9}to attrs=cn by * none\n',
    ]


def test_config_add_orders_values_as_slapd(tmp_path: Path) -> None:
    outcomes = {}
    for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
        conf = slapd_conf(tmp_path / name / "db", modules=True) + "database config\nrootpw configpw\n"
        server = start(tmp_path / name, conf, name=name)
        try:
            steps = config_steps(tmp_path / name / "ldif")
            outcomes[name] = run_steps(server, steps, ["-x", "-D", "cn=config", "-w", "configpw"], "cn=config",
                                       "(objectClass=olcLdifConfig)")  # fmt: skip
        finally:
            server.stop()
    assert [code for code, _, _ in outcomes["slapd"]] == [0, 21, 0, 0], outcomes["slapd"]
    assert "olcAccess: {0}to * by * write\nolcAccess: {1}to * by * read" in outcomes["slapd"][0][2]
    assert outcomes["pyldapd"] == outcomes["slapd"]


FILTERS = [
    "(olcAccess=to * by * read)",
    "(olcAccess={1})",
    "(olcAccess={1}to * by * read)",
    "(olcAccess={0}to * by * read)",
    "(|(olcAccess={1}TO * BY * READ)(olcAccess=nothing))",
    "(olcDatabase=config)",
    "(olcDatabase={0}config)",
    "(olcDatabase={1}config)",
]


def test_filters_on_numbered_values_as_slapd(tmp_path: Path) -> None:
    """Equality on X-ORDERED values (slapd's ordered_value_match): the number counts only when both the value and
    the assertion carry one; `{n}` alone asserts the n-th value. In a data database and in cn=config alike."""
    outcomes = {}
    for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
        folder = tmp_path / name / "ldif"
        folder.mkdir(parents=True)
        conf = (f"include {SCHEMA_DIR}/core.schema\ndatabase config\nrootpw configpw\n"
                f"database ldif\nsuffix \"{SUFFIX}\"\n"
                f"rootdn \"cn=admin,{SUFFIX}\"\nrootpw secret\ndirectory {folder}\n")  # fmt: skip
        server = start(tmp_path / name, conf, name=name)
        try:
            for step in DATA_STEPS[:3]:
                done = ldap_tool("ldapmodify", "-H", server.url, *ROOT, input=step)
                assert done.returncode == 0, done.stderr
            found = []
            for base, auth in ((SUFFIX, ROOT), ("cn=config", ["-x", "-D", "cn=config", "-w", "configpw"])):
                for filter_ in FILTERS:
                    done = ldap_tool(
                        "ldapsearch", "-LLL", "-H", server.url, *auth, "-b", base, filter_, "1.1"
                    )
                    found.append((base, filter_, done.returncode, sorted(done.stdout.split())))
            outcomes[name] = found
        finally:
            server.stop()
    assert any(dns for *_, dns in outcomes["slapd"])
    differing = [(g, e) for g, e in zip(outcomes["pyldapd"], outcomes["slapd"], strict=True) if g != e]
    assert not differing
