"""logpurge (slapo-accesslog(5)): on its schedule, the log entries older than the age go, the younger ones stay,
and minCSN on the log's suffix entry moves to the newest CSN purged, so that a syncprov reading the log
(syncprov-sessionlog-source) no longer claims to cover a cookie from before the purge and answers it with a
present phase. Debian's slapd runs the same configuration beside pyldapd."""

from __future__ import annotations

import time

import pytest

from tests.overlays.test_accesslog import PERSON, TOP, admin, log_database, read_log
from tests.replication.test_persistent_sessionlog import cookie_of, refresh
from tests.servers import SUFFIX, ldap_tool, slapd_conf, start_pyldapd, start_slapd, wait_for

AGE = 6  # seconds; the purge runs every second


def conf(workdir) -> str:
    return slapd_conf(workdir / "db", modules=True,
                      extra_global="moduleload syncprov\nmoduleload accesslog\n" + log_database(workdir),
                      extra_db="overlay syncprov\nsyncprov-sessionlog-source cn=accesslog\noverlay accesslog\n"
                               f"logdb cn=accesslog\nlogops writes\nlogpurge 00:00:{AGE:02d} 00:00:01\n")  # fmt: skip


def person(name: str) -> str:
    return f"dn: cn={name},{SUFFIX}\nobjectClass: person\ncn: {name}\nsn: {name}\n\n"


def requests(server) -> list[dict[str, list[str]]]:
    return [e for e in read_log(server) if "reqtype" in e]


def min_csn(server) -> list[str]:
    found = ldap_tool("ldapsearch", *admin(server), "-LLL", "-b", "cn=accesslog", "-s", "base", "(objectClass=*)",
                      "minCSN")  # fmt: skip
    return [
        line.split(": ", 1)[1] for line in found.stdout.splitlines() if line.lower().startswith("mincsn: ")
    ]


@pytest.mark.parametrize("start", [start_slapd, start_pyldapd], ids=["slapd", "pyldapd"])
def test_old_entries_go_young_ones_stay_and_mincsn_follows(tmp_path, start):
    server = start(tmp_path, conf(tmp_path))
    try:
        assert ldap_tool("ldapadd", *admin(server), input=TOP + PERSON).returncode == 0
        cookie = cookie_of(server)
        assert ldap_tool("ldapdelete", *admin(server), f"cn=x,{SUFFIX}").returncode == 0
        old = requests(server)
        assert [e["reqtype"] for e in old] == [["add"], ["add"], ["delete"]]
        assert min_csn(server) == old[0]["entrycsn"]  # the first change logged
        # before the purge, the log covers the cookie: the delete phase names the deleted entry
        answer = refresh(server, cookie)
        assert answer["deleted_uuids"] == 1 and answer["present_sets"] == 0, answer["text"]
        time.sleep(AGE / 2)
        assert ldap_tool("ldapadd", *admin(server), input=person("young")).returncode == 0
        # the three old log entries may straddle a purge tick: wait until none is left, not until one went
        young = [[f"cn=young,{SUFFIX}"]]
        wait_for(
            lambda: [e["reqdn"] for e in requests(server)] == young,
            AGE * 4,
            what="the purge of the old entries",
        )
        left = requests(server)
        # the young entry's log entry stays (it is AGE/2 seconds younger than the others)
        assert [e["reqdn"] for e in left] == young
        assert min_csn(server) == old[-1]["entrycsn"]  # the newest CSN purged
        # the log no longer knows what was deleted since the cookie: a present phase
        answer = refresh(server, cookie)
        assert answer["deleted_uuids"] == 0 and answer["present_sets"] >= 1, answer["text"]
        assert not answer["done_deletes"]
        wait_for(lambda: not requests(server), AGE * 4, what="the purge of the young entry")
    finally:
        server.stop()
