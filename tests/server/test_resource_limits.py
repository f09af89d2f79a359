"""Resource limits that hold (issue 14): deep DNs and filters, anonymous Password Modify, idle and half-sent
connections, connection floods, paged-search memory, slow password checks. Compared with Debian's slapd where it
has an answer; every wait is bounded."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import ldap as pyldap
import pytest
from ldap.controls import SimplePagedResultsControl

from pyldapd.model.passwords import hash_password
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap as pdu
from pyldapd.protocol.ber import tlv
from tests.servers import (
    ROOTDN,
    ROOTPW,
    SUFFIX,
    free_port,
    ldap_tool,
    server_rss_kb,
    slapd_conf,
    start_process,
    start_pyldapd,
    start_slapd,
    wait_for,
)

SUFFIX_LDIF = (
    "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Debian's slapd and pyldapd on one config, each holding the suffix entry."""
    root = tmp_path_factory.mktemp("limits")
    servers = {}
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            (root / name / "db").mkdir(parents=True, exist_ok=True)
            servers[name] = start(root / name, slapd_conf(root / name / "db", modules=True))
            added = ldap_tool("ldapadd", "-x", "-H", servers[name].url, "-D", ROOTDN, "-w", ROOTPW,
                              input=SUFFIX_LDIF)  # fmt: skip
            assert added.returncode == 0, added.stderr
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def read_messages(sock: socket.socket, count: int, timeout: float = 10.0) -> list:
    """Up to `count` messages (decoded), then "EOF" if the server closed the connection."""
    framer = pdu.MessageFramer(1 << 24)
    out: list = []
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            out.append("EOF")
            break
        out += [pdu.decode_message(p, 100_000) for p in framer.feed(data)]
    return out


def summary(messages: list) -> list:
    return [m if m == "EOF" else (m.message_id, type(m.op).__name__, getattr(m.op, "result_code", None),
                                  getattr(m.op, "message", None)) for m in messages]  # fmt: skip


def raw_search(base: str, filter_tlv: bytes, message_id: int = 1) -> bytes:
    """A SearchRequest PDU built by hand: the codec's encoder would recurse once per filter level."""
    body = (tlv(0x04, base.encode()) + tlv(0x0A, b"\x00") + tlv(0x0A, b"\x00") + tlv(0x02, b"\x00")
            + tlv(0x02, b"\x00") + tlv(0x01, b"\x00") + filter_tlv + tlv(0x30, tlv(0x04, b"1.1")))  # fmt: skip
    return tlv(0x30, tlv(0x02, bytes([message_id])) + tlv(0x63, body))


def nested_and(depth: int) -> bytes:
    f = tlv(0x87, b"objectClass")
    for _ in range(depth):
        f = tlv(0xA0, f)
    return f


def ask(server, request: bytes, count: int = 2) -> list:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        return summary(read_messages(sock, count))


@pytest.mark.parametrize("rdns", [1600, 10_000])
def test_deep_dn_answered_as_slapd(pair, rdns):
    """10,000 RDNs: slapd's DN length limit (8192 octets) answers invalidDNSyntax; pyldapd recursed and said 80."""
    dn = "cn=a," * (rdns - 2) + SUFFIX  # 1,600 RDNs: 8,007 octets, under the limit
    request = raw_search(dn, tlv(0x87, b"objectClass"))
    # the answer is one SearchResultDone: reading for a second message would wait out the read timeout
    answers = {name: ask(server, request, count=1) for name, server in pair.items()}
    assert answers["pyldapd"] == answers["slapd"]
    expected = 34 if rdns == 10_000 else 32
    assert answers["pyldapd"][0][2] == expected
    assert "Traceback" not in pair["pyldapd"].log()


@pytest.mark.parametrize("depth", [1000, 1001])
def test_deep_filter_answered_as_slapd(pair, depth):
    """1,000 nested and-sets are answered (the entry found); 1,001 end the connection, as slapd's maxfilterdepth."""
    request = raw_search(SUFFIX, nested_and(depth))
    answers = {name: ask(server, request) for name, server in pair.items()}
    assert answers["pyldapd"] == answers["slapd"]
    if depth == 1000:
        assert [a[1] for a in answers["pyldapd"]] == ["SearchResultEntry", "SearchResultDone"]
    else:
        assert answers["pyldapd"] == [(0, "ExtendedResponse", 2, "filter nested too deeply"), "EOF"]


@pytest.mark.parametrize("identity", [None, ROOTDN])
def test_anonymous_password_modify_needs_authentication(pair, identity):
    answers = {}
    for name, server in pair.items():
        conn = pyldap.initialize(server.url)
        with pytest.raises(pyldap.STRONG_AUTH_REQUIRED) as info:
            conn.passwd_s(identity, None, "new")
        answers[name] = info.value.args[0]["info"]
        conn.unbind_s()
    assert answers["pyldapd"] == answers["slapd"] == "only authenticated users may change passwords"


# -- connections ------------------------------------------------------------------------------------------------


def raise_own_descriptor_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= needed, "the test needs more descriptors"


def open_flood(port: int, count: int) -> list[socket.socket]:
    """`count` connections, each established (the server's accept queue took it) before the next."""
    socks = []
    deadline = time.monotonic() + 90
    while len(socks) < count and time.monotonic() < deadline:
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            pass
    assert len(socks) == count, f"only {len(socks)} connections"
    return socks


def wait_accepted(server, count: int) -> None:
    """Until the server has logged `count` more accepts (pyldapd), or 3 seconds (slapd logs nothing here)."""
    if server.name != "pyldapd":
        time.sleep(3)
        return
    wait_for(lambda: server.log().count(" ACCEPT from ") >= count, 60, interval=0.5, what=f"{count} accepts")


def serves_everyone(server, *, timeout: float = 10) -> list[str]:
    """An anonymous search, a rootdn bind and search over ldap://, an EXTERNAL search over ldapi://: what failed."""
    failed = []
    checks = {
        "anonymous": ["-x", "-H", server.url, "-b", "", "-s", "base"],
        "rootdn": ["-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, "-b", SUFFIX, "-s", "base"],
        "ldapi": ["-Y", "EXTERNAL", "-H", server.ldapi_url, "-b", "", "-s", "base"],
    }
    for name, args in checks.items():
        started = time.monotonic()
        try:
            done = ldap_tool("ldapsearch", *args, timeout=timeout)
        except subprocess.TimeoutExpired:
            failed.append(f"{name}: no answer in {timeout}s")
            continue
        if done.returncode != 0 or time.monotonic() - started > timeout:
            failed.append(f"{name}: {done.returncode} {done.stderr.strip()}")
    return failed


def test_silent_connections_beyond_4096_lock_nobody_out(tmp_path):
    """4,200 connections that send nothing: slapd and pyldapd (no connection cap but the descriptors) still
    serve anonymous, rootdn and ldapi clients. pyldapd turned everyone away at 4,096."""
    raise_own_descriptor_limit(4_200 * 2 + 200)
    for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
        (tmp_path / name / "db").mkdir(parents=True, exist_ok=True)
        server = start(tmp_path / name, slapd_conf(tmp_path / name / "db", modules=True))
        socks: list[socket.socket] = []
        try:
            assert ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW,
                             input=SUFFIX_LDIF).returncode == 0  # fmt: skip
            socks = open_flood(server.port, 4_200)
            wait_accepted(server, 4_200)
            assert serves_everyone(server) == [], name
        finally:
            for sock in socks:
                sock.close()
            server.stop()


def prlimited_pyldapd(workdir: Path, conf_text: str, nofile: int):
    """pyldapd with a small descriptor limit, so that a test reaches it with a few thousand sockets."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "pyldapd.conf"
    conf.write_text(conf_text)
    port = free_port()
    sock_path = str(workdir / "pyldapd.sock")
    urls = f"ldap://127.0.0.1:{port}/ ldapi://{sock_path.replace('/', '%2F')}/"
    argv = ["prlimit", f"--nofile={nofile}:{nofile}", sys.executable, "-m", "pyldapd.cli.main", "serve", "-f",
            str(conf), "-h", urls, "-d", "stats"]  # fmt: skip
    return start_process("pyldapd", argv, port, sock_path, workdir, conf)


def test_flood_at_the_descriptor_limit_evicts_idle_connections(tmp_path):
    """2,000 connections (half silent, half sending a byte a second) against a server allowed 536: new anonymous,
    rootdn and ldapi clients are served, a bound rootdn connection opened before the flood survives it."""
    raise_own_descriptor_limit(2_000 + 200)
    db = tmp_path / "s" / "db"
    db.mkdir(parents=True)
    server = prlimited_pyldapd(tmp_path / "s", slapd_conf(db), 600)
    socks: list[socket.socket] = []
    admin = None
    try:
        assert ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW,
                         input=SUFFIX_LDIF).returncode == 0  # fmt: skip
        admin = pyldap.initialize(server.url)
        admin.simple_bind_s(ROOTDN, ROOTPW)
        socks = open_flood(server.port, 2_000)
        wait_accepted(server, 2_000)
        trickle = socks[1::2]
        for _ in range(3):  # a byte a second from every other connection: a request that never ends
            time.sleep(1)
            for sock in trickle:
                try:
                    sock.send(b"\x30" if _ == 0 else b"\x84")
                except OSError:
                    pass
        assert serves_everyone(server) == []
        assert admin.search_s(SUFFIX, pyldap.SCOPE_BASE, attrlist=["1.1"])  # the rootdn is never evicted
        assert "evicted for conn=" in server.log()
    finally:
        for sock in socks:
            sock.close()
        if admin is not None:
            admin.unbind_s()
        server.stop()


def test_request_that_never_completes_is_cut(tmp_path):
    """A request sent a byte at a time does not keep its connection: it must arrive within the idletimeout (or
    30 s), however busy the trickle; complete requests on another connection are unaffected."""
    server = start_pyldapd(tmp_path / "s", "idletimeout 2\n" + slapd_conf(tmp_path / "s" / "db"))
    try:
        request = raw_search("", tlv(0x87, b"objectClass"))
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            started = time.monotonic()
            closed = False
            for octet in request[:-1]:  # one octet every 0.4 s: idle never, complete never
                try:
                    sock.send(bytes([octet]))
                except OSError:
                    closed = True
                    break
                sock.settimeout(0.4)
                try:
                    if sock.recv(4096) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
                if time.monotonic() - started > 15:
                    break
            assert closed
            assert time.monotonic() - started < 10
        assert "request incomplete after 2s" in server.log()
    finally:
        server.stop()


def assert_cut_when_not_reading(server) -> None:
    """A client sends searches for cn=Subschema and never reads: the server's writes block, and once they have
    been blocked for writetimeout the connection ends before all the answers are written."""
    request = pdu.SearchRequest("cn=Subschema", 0, 0, 0, 0, False, pdu.Present("objectClass"), ["*", "+"])
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(2)
        sent = 0
        try:
            for message_id in range(1, 2001):
                sock.sendall(pdu.encode_message(pdu.LDAPMessage(message_id, request)))
                sent += 1
        except (TimeoutError, OSError):
            pass  # the server stopped reading: it waits for the client to read
        wait_for(lambda: "write timeout" in server.log(), 15, what="write timeout")
        done = 0
        framer = pdu.MessageFramer(1 << 24)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                data = sock.recv(1 << 16)
                if not data:
                    break
                done += sum(
                    isinstance(pdu.decode_message(p).op, pdu.SearchResultDone) for p in framer.feed(data)
                )
        except (TimeoutError, ConnectionResetError):
            pass
        assert done < sent  # the connection ended before its answers were all written


def test_writetimeout_closes_a_connection_that_reads_nothing(tmp_path):
    """slapd's writetimeout: a client that sends requests but never reads the answers is disconnected once a
    write has been blocked that long; before, the directive was accepted and ignored."""
    server = start_pyldapd(tmp_path / "s", "writetimeout 2\n" + slapd_conf(tmp_path / "s" / "db"))
    try:
        assert_cut_when_not_reading(server)
        assert ldap_tool("ldapsearch", "-x", "-H", server.url, "-b", "", "-s", "base").returncode == 0
    finally:
        server.stop()


def test_limit_attributes_change_at_run_time_over_cn_config(tmp_path):
    """olcWriteTimeout, olcConnMaxPending[Auth] replaced over ldapi:// take effect at once and are kept."""
    from tests.server.test_cnconfig import Node

    node = Node(tmp_path, "n")
    node.start()
    try:
        change = ("dn: cn=config\nchangetype: modify\nreplace: olcWriteTimeout\nolcWriteTimeout: 2\n-\n"
                  "replace: olcConnMaxPending\nolcConnMaxPending: 20\n-\n"
                  "replace: olcConnMaxPendingAuth\nolcConnMaxPendingAuth: 200\n")  # fmt: skip
        done = node.external("ldapmodify", change)
        assert done.returncode == 0, done.stderr
        shown = ldap_tool("ldapsearch", "-Y", "EXTERNAL", "-Q", "-H", node.ldapi, "-LLL", "-b", "cn=config", "-s",
                          "base", "olcWriteTimeout", "olcConnMaxPending", "olcConnMaxPendingAuth")  # fmt: skip
        assert {"olcWriteTimeout: 2", "olcConnMaxPending: 20", "olcConnMaxPendingAuth: 200"} <= set(
            shown.stdout.splitlines()
        )
        assert_cut_when_not_reading(node.server)
    finally:
        node.stop()


def test_idletimeout_spares_a_persistent_search(tmp_path):
    """slapd closes idle connections, not ones with an operation under way: a refreshAndPersist search outlives
    idletimeout while a silent connection does not."""
    conf = "idletimeout 1\n" + slapd_conf(tmp_path / "s" / "db", extra_db="overlay syncprov")
    server = start_pyldapd(tmp_path / "s", conf)
    try:
        assert ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW,
                         input=SUFFIX_LDIF).returncode == 0  # fmt: skip
        persist = pdu.Control(ctl.SYNC_REQUEST, True,
                              ctl.encode_sync_request(ctl.SyncRequest(ctl.SYNC_MODE_REFRESH_AND_PERSIST)))  # fmt: skip
        request = pdu.SearchRequest(SUFFIX, 2, 0, 0, 0, False, pdu.Present("objectClass"), ["1.1"])
        with (
            socket.create_connection(("127.0.0.1", server.port)) as sync,
            socket.create_connection(("127.0.0.1", server.port)) as idle,
        ):
            sync.sendall(pdu.encode_message(pdu.LDAPMessage(1, request, [persist])))
            assert read_messages(sync, 2)  # the refresh
            time.sleep(3.5)
            idle.settimeout(1)
            assert idle.recv(4096) == b""  # closed by idletimeout
            added = ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW,
                              input=f"dn: cn=late,{SUFFIX}\nobjectClass: person\ncn: late\nsn: x\n")  # fmt: skip
            assert added.returncode == 0
            news = read_messages(sync, 1, timeout=5)
            assert news and news[0] != "EOF" and news[0].message_id == 1  # still open, still told
    finally:
        server.stop()


# -- slow password schemes --------------------------------------------------------------------------------------


def bind_pdu(message_id: int, dn: str, password: bytes) -> bytes:
    return pdu.encode_message(pdu.LDAPMessage(message_id, pdu.BindRequest(3, dn, password)))


def test_argon2_wrong_passwords_do_not_stop_service(tmp_path):
    """4 clients sending wrong passwords for an {ARGON2} account (each check ~0.1-0.3 s of CPU): another
    client's root DSE searches are answered within seconds each, and the binds all get invalidCredentials."""
    server = start_pyldapd(tmp_path / "s", slapd_conf(tmp_path / "s" / "db"))
    try:
        hashed = hash_password(b"right", "{ARGON2}").decode()
        ldif = (
            SUFFIX_LDIF
            + f"\ndn: cn=slow,{SUFFIX}\nobjectClass: person\ncn: slow\nsn: x\nuserPassword: {hashed}\n"
        )
        assert (
            ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=ldif).returncode
            == 0
        )
        binders = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
        try:
            for sock in binders:  # 8 binds each, pipelined: 32 checks queued at once
                sock.sendall(b"".join(bind_pdu(i, f"cn=slow,{SUFFIX}", b"wrong") for i in range(1, 9)))
            slowest = 0.0
            for _ in range(5):
                started = time.monotonic()
                done = ldap_tool("ldapsearch", "-x", "-H", server.url, "-b", "", "-s", "base", timeout=30)
                slowest = max(slowest, time.monotonic() - started)
                assert done.returncode == 0
            assert slowest < 3.0, f"a root DSE search took {slowest:.1f}s"
            for sock in binders:
                answers = read_messages(sock, 8, timeout=60)
                assert [a.op.result_code for a in answers] == [pdu.ResultCode.invalidCredentials] * 8
                assert [a.message_id for a in answers] == list(range(1, 9))
        finally:
            for sock in binders:
                sock.close()
        good = pyldap.initialize(server.url)
        good.simple_bind_s(f"cn=slow,{SUFFIX}", "right")
        assert good.whoami_s() == f"dn:cn=slow,{SUFFIX}"
        good.unbind_s()
    finally:
        server.stop()


# -- paged searches ---------------------------------------------------------------------------------------------


def paged_page(conn, filterstr: str, cookie: bytes = b"", size: int = 10):
    """(entries, cookie) of one page, or (exception name, result code, text)."""
    control = SimplePagedResultsControl(True, size=size, cookie=cookie)
    try:
        mid = conn.search_ext(SUFFIX, pyldap.SCOPE_ONELEVEL, filterstr, ["1.1"], serverctrls=[control])
        _type, data, _mid, controls = conn.result3(mid)
    except pyldap.LDAPError as exc:
        return type(exc).__name__, exc.args[0].get("result"), exc.args[0].get("info")
    found = [c for c in controls if c.controlType == SimplePagedResultsControl.controlType]
    return len(data), found[0].cookie if found else None


def test_paged_cookies_checked_as_slapd(pair):
    """A cookie never issued is a protocol error, one already used is 'invalid or old' (slapd's pagedresults
    checks); the open search goes on after a refused cookie."""
    people = "".join(f"dn: cn=p{i},{SUFFIX}\nobjectClass: person\ncn: p{i}\nsn: x\n\n" for i in range(30))
    answers = {}
    for name, server in pair.items():
        assert ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, "-c",
                         input=people).returncode in (0, 68)  # fmt: skip
        conn = pyldap.initialize(server.url)
        conn.simple_bind_s(ROOTDN, ROOTPW)
        first = paged_page(conn, "(sn=x)")
        second = paged_page(conn, "(sn=x)", first[1])
        answers[name] = [
            first[0],
            second[0],
            paged_page(conn, "(sn=x)", first[1]),  # used already
            paged_page(conn, "(sn=x)", b"\xff" * 8),  # never issued
            paged_page(conn, "(sn=x)", b"123"),  # not a cookie of this server
            paged_page(conn, "(sn=x)", second[1])[0],  # the open search is intact
        ]
        conn.unbind_s()
    assert answers["pyldapd"] == answers["slapd"]
    assert answers["pyldapd"][2] == ("UNWILLING_TO_PERFORM", 53, "paged results cookie is invalid or old")
    assert answers["pyldapd"][3] == ("PROTOCOL_ERROR", 2, "paged results cookie is invalid")


def server_rss_mb(server) -> float:
    return server_rss_kb(server) / 1024  # the worker processes' too


def test_paged_searches_hold_bounded_memory(tmp_path):
    """600 paged searches left open after their first page (300 on each of 2 connections, 4,000 entries each):
    a connection keeps only its latest one, as slapd, so the server's memory does not grow with them (before:
    every cookie kept its list of entries, 18 MB here, 0.8 MB a search over 20,000 entries)."""
    conf = slapd_conf(tmp_path / "db")
    (tmp_path / "db").mkdir(exist_ok=True)
    (tmp_path / "load.conf").write_text(conf)
    ldif = SUFFIX_LDIF + "".join(f"\ndn: uid=u{i},{SUFFIX}\nobjectClass: inetOrgPerson\nuid: u{i}\ncn: user {i}\n"
                                 f"sn: x\n" for i in range(4_000))  # fmt: skip
    loaded = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "add", "-f", str(tmp_path / "load.conf")],
                            input=ldif, text=True, capture_output=True, timeout=120)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    server = start_pyldapd(tmp_path / "s", conf, debug="0")
    try:
        request = pdu.SearchRequest(SUFFIX, 1, 0, 0, 0, False, pdu.Present("objectClass"), ["1.1"])
        paged = pdu.Control(ctl.PAGED_RESULTS, True, ctl.encode_paged_results(ctl.PagedResults(1, b"")))
        warm = socket.create_connection(("127.0.0.1", server.port))  # caches warmed by one search first
        warm.sendall(pdu.encode_message(pdu.LDAPMessage(1, request, [paged])))
        assert read_messages(warm, 2)
        warm.close()
        before = server_rss_mb(server)
        socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        try:
            for sock in socks:
                sock.sendall(b"".join(pdu.encode_message(pdu.LDAPMessage(i, request, [paged]))
                                      for i in range(1, 301)))  # fmt: skip
            for sock in socks:
                answers = read_messages(sock, 600, timeout=120)
                done = [a for a in answers if isinstance(a.op, pdu.SearchResultDone)]
                assert len(done) == 300 and all(d.op.result_code == 0 for d in done)
            grown = server_rss_mb(server) - before
        finally:
            for sock in socks:
                sock.close()
        assert grown < 8, f"{grown:.1f} MB more with 600 paged searches open"
        wait_for(lambda: server_rss_mb(server) - before < 8, 10, what="memory given back")
    finally:
        server.stop()


# -- configuration ----------------------------------------------------------------------------------------------


def test_limit_directives_become_the_olc_attributes_slaptest_writes(tmp_path):
    """writetimeout and conn_max_pending[_auth] reach cn=config as slaptest converts them, and come back."""
    from pyldapd.config.cnconfig import config_from_entries, entries_from_config
    from pyldapd.config.slapdconf import load_slapd_conf

    (tmp_path / "db").mkdir(exist_ok=True)
    conf = tmp_path / "slapd.conf"
    conf.write_text("writetimeout 7\nconn_max_pending 50\nconn_max_pending_auth 500\n"
                    + slapd_conf(tmp_path / "db", modules=True))  # fmt: skip
    (tmp_path / "slapd.d").mkdir()
    made = subprocess.run(["/usr/sbin/slapadd", "-f", str(conf)], input=SUFFIX_LDIF, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr  # slaptest opens the database read-only: it must exist
    converted = subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(tmp_path / "slapd.d")],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    assert converted.returncode == 0, converted.stderr
    theirs = {}
    for line in (tmp_path / "slapd.d" / "cn=config.ldif").read_text().splitlines():
        name, _, value = line.partition(": ")
        if name in ("olcWriteTimeout", "olcConnMaxPending", "olcConnMaxPendingAuth"):
            theirs[name] = value
    config = load_slapd_conf(str(conf))
    assert (config.writetimeout, config.conn_max_pending, config.conn_max_pending_auth) == (7, 50, 500)
    root = entries_from_config(config)[0]
    ours = {name: root.get(name.lower())[0].decode() for name in theirs}
    assert (
        ours == theirs == {"olcWriteTimeout": "7", "olcConnMaxPending": "50", "olcConnMaxPendingAuth": "500"}
    )
    again = config_from_entries(entries_from_config(config))
    assert (again.writetimeout, again.conn_max_pending, again.conn_max_pending_auth) == (7, 50, 500)


def passwd_pdu(message_id: int, user: str, old: bytes, new: bytes) -> bytes:
    value = tlv(0x30, tlv(0x80, user.encode()) + tlv(0x81, old) + tlv(0x82, new))
    request = pdu.ExtendedRequest(ctl.PASSWORD_MODIFY, value)
    return pdu.encode_message(pdu.LDAPMessage(message_id, request))


def test_argon2_password_changes_do_not_stop_service(tmp_path):
    """Password Modify under `password-hash {ARGON2}` (hash the new, check the old) from 4 bound clients at once:
    root DSE searches from another client are answered within seconds each; every change is made, in order."""
    acl = "access to attrs=userPassword by self write by anonymous auth\naccess to * by * read"
    conf = "password-hash {ARGON2}\n" + slapd_conf(tmp_path / "s" / "db", extra_db=acl)
    server = start_pyldapd(tmp_path / "s", conf)
    try:
        hashed = hash_password(b"p0", "{ARGON2}").decode()
        ldif = SUFFIX_LDIF + "".join(f"\ndn: cn=u{k},{SUFFIX}\nobjectClass: person\ncn: u{k}\nsn: x\n"
                                     f"userPassword: {hashed}\n" for k in range(4))  # fmt: skip
        assert (
            ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=ldif).returncode
            == 0
        )
        clients = []
        try:
            for k in range(4):
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.sendall(
                    bind_pdu(1, f"cn=u{k},{SUFFIX}", b"p0")
                )  # one slow check to bind, then 4 changes
                sock.sendall(b"".join(passwd_pdu(i, f"cn=u{k},{SUFFIX}", f"p{i - 2}".encode(), f"p{i - 1}".encode())
                                      for i in range(2, 6)))  # fmt: skip
                clients.append(sock)
            slowest = 0.0
            for _ in range(5):
                started = time.monotonic()
                assert (
                    ldap_tool(
                        "ldapsearch", "-x", "-H", server.url, "-b", "", "-s", "base", timeout=30
                    ).returncode
                    == 0
                )
                slowest = max(slowest, time.monotonic() - started)
            assert slowest < 3.0, f"a root DSE search took {slowest:.1f}s"
            for sock in clients:
                answers = read_messages(sock, 5, timeout=90)
                assert [(a.message_id, a.op.result_code) for a in answers] == [(i, 0) for i in range(1, 6)]
        finally:
            for sock in clients:
                sock.close()
        for k in range(4):
            conn = pyldap.initialize(server.url)
            conn.simple_bind_s(f"cn=u{k},{SUFFIX}", "p4")
            conn.unbind_s()
    finally:
        server.stop()
