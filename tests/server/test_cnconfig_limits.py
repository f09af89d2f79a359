"""olcSizeLimit/olcTimeLimit keep every specifier of slapd's sizelimit/timelimit (size.soft, size.hard, size.pr,
size.prtotal, size.unchecked, time.soft, time.hard): `pyldapd test -f -F` writes what slaptest writes for the same
slapd.conf, reading either slapd.d back gives the same limits, and a change over ldapi reads back and applies as
in Debian's slapd."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pyldapd.config import cnconfig
from pyldapd.config.slapdconf import load_slapd_conf
from tests.server.test_cnconfig import ADMIN, Node, pyldapd, start_slapd_with_cn_config
from tests.servers import ldap_tool, slapd_conf

GLOBAL = "sizelimit size.soft=5 size.hard=10 size.pr=3\ntimelimit time.soft=10 time.hard=20"
FIRST = "sizelimit size.soft=7 size.hard=unlimited size.unchecked=100 size.prtotal=disabled\ntimelimit 30"
SECOND = (
    'database mdb\nsuffix "dc=other,dc=com"\ndirectory {directory}\n'
    "sizelimit unlimited\ntimelimit time.hard=40 time.soft=unlimited\n"
)
ATTRS = ("olcsizelimit", "olctimelimit")


def limit_values(directory: Path) -> dict[str, dict[str, list[str]]]:
    """olcSizeLimit/olcTimeLimit of the cn=config entry, the frontend and each database (named by suffix)."""
    out = {}
    for entry in cnconfig.read_slapd_d(directory):
        name = entry.dn.split(",", 1)[0].lower()
        if entry.get("olcsuffix"):
            name = entry.get("olcsuffix")[0].decode().lower()
        elif name not in ("cn=config", "olcdatabase={-1}frontend"):
            continue
        out[name] = {a: [v.decode() for v in entry.get(a)] for a in ATTRS}
    return out


def write_conf(tmp_path: Path) -> Path:
    for name in ("db1", "db2"):
        (tmp_path / name).mkdir()
    text = slapd_conf(tmp_path / "db1", modules=True, extra_global=GLOBAL, extra_db=FIRST)
    text += SECOND.format(directory=tmp_path / "db2")
    conf = tmp_path / "slapd.conf"
    conf.write_text(text)
    return conf


def effective(config) -> list:
    return [cnconfig.limits_of(config, None)] + [
        cnconfig.limits_of(config, db) for db in config.data_databases()
    ]


def test_conversion_writes_what_slaptest_writes(tmp_path):
    conf = write_conf(tmp_path)
    # slaptest fails to open the empty databases after writing slapd.d; pyldapd test does the same
    (tmp_path / "theirs").mkdir()
    subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(tmp_path / "theirs")], capture_output=True,
                   timeout=60, check=False)  # fmt: skip
    (tmp_path / "ours").mkdir()
    pyldapd("test", "-f", str(conf), "-F", str(tmp_path / "ours"))
    theirs, ours = limit_values(tmp_path / "theirs"), limit_values(tmp_path / "ours")
    assert ours == theirs
    assert theirs["olcdatabase={-1}frontend"]["olcsizelimit"] == [" size.soft=5  size.hard=10  size.pr=3"]
    assert theirs["dc=example,dc=com"]["olcsizelimit"] == [
        " size.soft=7  size.hard=unlimited  size.unchecked=100  size.pr=3  size.prtotal=disabled"
    ]
    # read back, from either slapd.d: the limits slapd.conf gives
    from_conf = effective(load_slapd_conf(str(conf)))
    for directory in ("theirs", "ours"):
        config = cnconfig.config_from_entries(cnconfig.read_slapd_d(tmp_path / directory))
        assert effective(config) == from_conf, directory
        # and written again: the same text
        again = tmp_path / f"{directory}-again"
        again.mkdir()
        cnconfig.write_slapd_d(again, cnconfig.entries_from_config(config))
        assert limit_values(again) == theirs


def test_change_over_ldapi_like_slapd(tmp_path):
    """A frontend olcSizeLimit with a hard limit: read back as slapd does, and the hard limit holds (a client
    asking for 5 entries gets 5, not the soft 3)."""
    node = Node(tmp_path, "py", "mdb")
    node.start()
    (tmp_path / "s").mkdir()
    slapd, slapd_ldapi, slapd_url = start_slapd_with_cn_config(tmp_path / "s")
    try:
        people = "".join(
            f"dn: cn=p{i},dc=example,dc=com\nobjectClass: organizationalRole\ncn: p{i}\n\n" for i in range(8)
        )
        suffix = (
            "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: x\ndc: example\n\n"
        )
        assert ldap_tool("ldapadd", "-H", slapd_url, *ADMIN, input=suffix + people).returncode == 0
        assert ldap_tool("ldapadd", "-H", node.url, *ADMIN, input=people).returncode == 0
        change = (
            "dn: olcDatabase={-1}frontend,cn=config\nchangetype: modify\nreplace: olcSizeLimit\n"
            "olcSizeLimit: size.hard=6 size.soft=3\n-\nreplace: olcTimeLimit\nolcTimeLimit: time.hard=50\n"
        )
        for ldapi in (slapd_ldapi, node.ldapi):
            result = ldap_tool("ldapmodify", "-Y", "EXTERNAL", "-Q", "-H", ldapi, input=change)
            assert result.returncode == 0, result.stderr
        read = []
        for ldapi in (slapd_ldapi, node.ldapi):
            result = ldap_tool("ldapsearch", "-Y", "EXTERNAL", "-Q", "-H", ldapi, "-LLL", "-o", "ldif-wrap=no",
                               "-b", "olcDatabase={-1}frontend,cn=config", "olcSizeLimit", "olcTimeLimit")  # fmt: skip
            read.append(result.stdout)
        assert read[1] == read[0]
        assert "olcSizeLimit: size.hard=6 size.soft=3\n" in read[0]  # kept as written, as slapd keeps it
        counts = []
        for url in (slapd_url, node.url):
            result = ldap_tool("ldapsearch", "-x", "-H", url, "-LLL", "-z", "5", "-b", "dc=example,dc=com",
                               "(cn=p*)", "1.1")  # fmt: skip
            counts.append((result.returncode, result.stdout.count("dn: ")))
        assert counts[1] == counts[0] == (4, 5)
    finally:
        slapd.stop()
        node.stop()
