"""`sizelimit`/`timelimit` with qualifiers (`size.soft= size.hard= size.unchecked=`), as slapd applies them:
side by side with Debian's slapd on one slapd.conf, and through pyldapd's cn=config form."""

from __future__ import annotations

import pytest

from pyldapd.config.slapdconf import ConfigError, load_slapd_conf
from tests.data import BASE_LDIF
from tests.servers import ROOTDN, ROOTPW, ldap_tool, slapd_conf, start_pyldapd, start_slapd

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"
DB_LIMITS = "sizelimit size.soft=2 size.hard=4 size.unchecked=6\ntimelimit time.soft=30 time.hard=60"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("sizelimits")
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            (root / name / "db").mkdir(parents=True, exist_ok=True)
            conf = slapd_conf(root / name / "db", modules=True, extra_db=DB_LIMITS)
            server = start(root / name, conf, name=name)
            servers.append(server)
            added = ldap_tool("ldapadd", "-H", server.url, "-x", "-D", ROOTDN, "-w", ROOTPW, input=BASE_LDIF)
            assert added.returncode == 0, f"{name}: {added.stderr}"
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize(
    ("args", "code", "entries"),
    [
        (["-b", PEOPLE, "(objectClass=*)"], 4, 2),  # the soft limit
        (["-z", "3", "-b", PEOPLE, "(objectClass=*)"], 4, 3),  # asked for more: up to the hard limit
        (["-z", "10", "-b", PEOPLE, "(objectClass=*)"], 4, 4),
        (["-b", SUFFIX, "(uid=jdoe)"], 0, 1),  # indexed: one candidate
        (["-b", SUFFIX, "(description=*)"], 11, 0),  # unindexed: every entry a candidate, over 6
        (["-b", "ou=Groups," + SUFFIX, "(description=*)"], 0, 0),  # 3 entries in scope
        (["-D", ROOTDN, "-w", ROOTPW, "-b", SUFFIX, "(description=*)"], 0, 2),  # the rootdn: no limits
    ],
)
def test_database_sizelimit_qualifiers_as_slapd(pair, args: list[str], code: int, entries: int) -> None:
    answers = []
    for server in pair:
        result = ldap_tool("ldapsearch", "-H", server.url, "-x", "-LLL", *args, "1.1")
        answers.append((result.returncode, result.stderr.strip(), result.stdout.count("dn: ")))
    assert answers[1] == answers[0]
    assert answers[1][0] == code and answers[1][2] == entries


@pytest.mark.parametrize("line", ["sizelimit size.bogus=3", "sizelimit time.hard=3", "sizelimit size.hard=x",
                                  "timelimit time.unchecked=3", "sizelimit size.unchecked=-5"])  # fmt: skip
def test_bad_qualifiers_refused(tmp_path, line: str) -> None:
    conf = tmp_path / "slapd.conf"
    conf.write_text(slapd_conf(tmp_path / "db", extra_db=line))
    with pytest.raises(ConfigError):
        load_slapd_conf(str(conf))
