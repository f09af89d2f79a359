"""The time limit holds on a sync refresh as on any search (issue 14): slapd's syncprov runs the refresh through
back-mdb's search loop, which ends it with timeLimitExceeded once the search's time limit has passed; the
rootdn, asking for no limit, has none.

The refresh is made slow on purpose (a filter of thousands of substring assertions the access rules check one by
one, over some hundreds of entries: several seconds of work) so that a one-second limit is passed whatever the
machine's speed. Debian's slapd does this work far faster, so there is no side-by-side run here."""

from __future__ import annotations

import time

import ldap
import pytest
from ldap.controls import RequestControl

from tests.servers import ROOTDN, ROOTPW, ldap_tool, slapd_conf, start_pyldapd

SUFFIX = "dc=example,dc=com"
SYNC_REQUEST = "1.3.6.1.4.1.4203.1.9.1.1"
ENTRIES = 600
ASSERTIONS = 3000
SLOW_FILTER = "(|" + "".join(f"(description=*y{j}*)" for j in range(ASSERTIONS)) + "(objectClass=*))"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sync-time-limit")
    (root / "db").mkdir(exist_ok=True)
    conf = slapd_conf(root / "db", modules=True, extra_global="moduleload syncprov\ntimelimit 1\nsizelimit unlimited",
                      extra_db="access to * by * read\noverlay syncprov")  # fmt: skip
    running = start_pyldapd(root, conf)
    try:
        ldif = (
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: x\ndc: example\n\n"
            + "".join(
                f"dn: cn=e{i},{SUFFIX}\nobjectClass: organizationalRole\ncn: e{i}\ndescription: {'x' * 40}\n\n"
                for i in range(ENTRIES)
            )
        )
        result = ldap_tool("ldapadd", "-x", "-H", running.url, "-D", ROOTDN, "-w", ROOTPW, input=ldif)
        assert result.returncode == 0, result.stderr
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("mode", [["-E", "sync=ro"], []])
def test_time_limit_ends_a_slow_refresh(server, mode: list[str]) -> None:
    started = time.monotonic()
    result = ldap_tool(
        "ldapsearch", "-x", "-H", server.url, *mode, "-b", SUFFIX, SLOW_FILTER, "1.1", timeout=120
    )
    assert result.returncode == 3, (result.returncode, result.stderr)  # timeLimitExceeded
    assert "result: 3 Time limit exceeded" in result.stdout
    assert time.monotonic() - started < 60


def test_time_limit_ends_a_slow_refresh_and_persist(server) -> None:
    """refreshAndPersist over python-ldap (ldapsearch keeps waiting after the result): the refresh ends with
    timeLimitExceeded and nothing stays open."""
    conn = ldap.initialize(server.url)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    try:
        sync = RequestControl(SYNC_REQUEST, True, b"\x30\x03\x0a\x01\x03")  # mode refreshAndPersist
        msgid = conn.search_ext(SUFFIX, ldap.SCOPE_SUBTREE, SLOW_FILTER, ["1.1"], serverctrls=[sync])
        with pytest.raises(ldap.TIMELIMIT_EXCEEDED):
            for _ in range(ENTRIES + 2):  # bounded: one result per entry, then the end
                kind, _data, _mid, _ctrls = conn.result3(msgid, all=0, timeout=60)[:4]
                assert kind != ldap.RES_SEARCH_RESULT
    finally:
        conn.unbind_s()


def test_rootdn_refresh_has_no_limit(server) -> None:
    result = ldap_tool("ldapsearch", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, "-E", "sync=ro", "-b",
                       SUFFIX, SLOW_FILTER, "1.1", timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\ndn: ") + result.stdout.startswith("dn: ") == ENTRIES + 1
