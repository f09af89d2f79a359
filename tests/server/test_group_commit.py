"""Issue 13, the write side: commits run on a writer thread per database, writes that arrive together share one
commit (group commit), and each client is answered only once its write is durable.

Real pyldapd processes, real clients (python-ldap, ldap-utils); `kill -9` at seeded random moments.
"""

from __future__ import annotations

import random
import threading
import time

import ldap
import pytest

from tests.servers import (
    ROOTDN,
    ROOTPW,
    SUFFIX,
    connection_on_worker,
    ldap_tool,
    slapd_conf,
    start_pyldapd,
    wait_workers,
)

SUFFIX_LDIF = f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"
WRITERS = 8


def connect(server) -> ldap.ldapobject.LDAPObject:
    conn = ldap.initialize(server.url)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    conn.set_option(ldap.OPT_TIMEOUT, 60)
    conn.simple_bind_s(ROOTDN, ROOTPW)
    return conn


def start(workdir):
    conf = slapd_conf(workdir / "db")
    return conf, start_pyldapd(workdir, conf)


def person(dn_cn: str, description: str) -> list[tuple[str, list[bytes]]]:
    return [
        ("objectClass", [b"person"]),
        ("cn", [dn_cn.encode()]),
        ("sn", [b"S"]),
        ("description", [description.encode()]),
        ("telephoneNumber", [b"1", b"2", b"3"]),
    ]


def entries(server) -> dict[str, dict[str, list[bytes]]]:
    conn = connect(server)
    try:
        found = conn.search_s(SUFFIX, ldap.SCOPE_ONELEVEL, "(objectClass=person)", ["cn", "description",
                                                                                      "telephoneNumber"])  # fmt: skip
    finally:
        conn.unbind_s()
    return {dn.lower(): {k.lower(): v for k, v in attrs.items()} for dn, attrs in found}


def test_acknowledged_group_commits_survive_kill_9(tmp_path):
    """8 clients add, modify and delete at once; the server is killed at random moments (seeded): every
    acknowledged write is there after the restart, and an unacknowledged one is there whole or not at all."""
    rng = random.Random(1313)
    workdir = tmp_path / "node"
    conf, server = start(workdir)
    assert (
        ldap_tool("ldapadd", "-H", server.url, "-x", "-D", ROOTDN, "-w", ROOTPW, input=SUFFIX_LDIF).returncode
        == 0
    )
    acked_adds: set[str] = set()
    acked_mods: set[str] = set()
    acked_deletes: set[str] = set()
    doomed: set[str] = set()  # a delete was sent
    tried: set[str] = set()
    try:
        for round_no in range(4):

            def write(writer: int, round_no: int = round_no, srv=server) -> None:
                try:
                    conn = connect(srv)
                    for i in range(400):  # bounded; the kill ends it much earlier
                        cn = f"w{writer}-r{round_no}-{i}"
                        dn = f"cn={cn},{SUFFIX}"
                        tried.add(dn.lower())
                        conn.add_s(dn, person(cn, "v1"))
                        acked_adds.add(dn.lower())
                        conn.modify_s(dn, [(ldap.MOD_REPLACE, "description", [b"v2"]),
                                           (ldap.MOD_ADD, "telephoneNumber", [b"4"])])  # fmt: skip
                        acked_mods.add(dn.lower())
                        if i % 3 == 2:  # some are deleted again
                            doomed.add(dn.lower())
                            conn.delete_s(dn)
                            acked_deletes.add(dn.lower())
                except ldap.LDAPError:
                    return  # the server died under this client

            threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.5, 2.5))
            server.kill()
            for thread in threads:
                thread.join(60)
                assert not thread.is_alive()
            server = start_pyldapd(workdir, conf)
            stored = entries(server)
            for dn in acked_adds - doomed:
                assert dn in stored, f"round {round_no}: acknowledged add of {dn} lost"
            for dn in acked_deletes:
                assert dn not in stored, f"round {round_no}: acknowledged delete of {dn} lost"
            for dn in acked_mods:
                if dn in stored:  # (or deleted since, by a delete sent after the modify's answer)
                    assert stored[dn]["description"] == [b"v2"], f"acknowledged modify of {dn} lost"
                    assert sorted(stored[dn]["telephonenumber"]) == [b"1", b"2", b"3", b"4"]
                else:
                    assert dn in doomed, f"round {round_no}: {dn} is gone"
            for dn, attrs in stored.items():
                assert dn in tried
                # never half a modify: both of its changes or neither
                if attrs["description"] == [b"v2"]:
                    assert sorted(attrs["telephonenumber"]) == [b"1", b"2", b"3", b"4"]
                else:
                    assert attrs["description"] == [b"v1"]
                    assert sorted(attrs["telephonenumber"]) == [b"1", b"2", b"3"]
        assert len(acked_mods) > 50, "too few writes were acknowledged to show anything"
        assert len(acked_deletes) > 10
        print(
            f"{len(acked_adds)} adds, {len(acked_mods)} modifies and {len(acked_deletes)} deletes acknowledged "
            "over 4 kill -9 rounds"
        )
    finally:
        server.stop()
    log = server.log()
    assert "Traceback" not in log


def test_concurrent_writers_share_commits(tmp_path):
    """Writes that arrive together are committed together: fewer commits than writes (the server says how many
    at a clean stop)."""
    conf, server = start(tmp_path / "node")
    try:
        assert ldap_tool("ldapadd", "-H", server.url, "-x", "-D", ROOTDN, "-w", ROOTPW,
                         input=SUFFIX_LDIF).returncode == 0  # fmt: skip
        failures: list[BaseException] = []

        def write(writer: int) -> None:
            try:
                conn = connect(server)
                for i in range(60):
                    conn.add_s(f"cn=g{writer}-{i},{SUFFIX}", person(f"g{writer}-{i}", "v1"))
                conn.unbind_s()
            except BaseException as exc:  # noqa: BLE001
                failures.append(exc)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
            assert not thread.is_alive()
        assert not failures, failures
        assert len(entries(server)) == WRITERS * 60
    finally:
        assert server.stop() == 0
    # one line per worker process (each has its writer thread): their sums
    lines = [line for line in server.log().splitlines() if "group commit" in line]
    writes = sum(int(line.split(": ", 1)[1].split()[0]) for line in lines)
    commits = sum(int(line.split(" in ", 1)[1].split()[0]) for line in lines)
    assert writes == WRITERS * 60 + 1
    assert commits < writes, lines


MOST_VALUES = 9_999  # values per modify: a long run of large writes, each on a growing entry


def heavy_modify(server, dn: str, values: int, done: dict) -> None:
    """Add `values` values to dn, MOST_VALUES per modify, one after the other."""
    conn = connect(server)
    try:
        done["start"] = time.monotonic()
        for first in range(0, values, MOST_VALUES):
            batch = [f"value {i}".encode() for i in range(first, min(values, first + MOST_VALUES))]
            conn.modify_s(dn, [(ldap.MOD_ADD, "description", batch)])
            done["modifies"] = done.get("modifies", 0) + 1
        done["result"] = 0
    except ldap.LDAPError as exc:
        done["result"] = exc
    finally:
        done["end"] = time.monotonic()
        conn.unbind_s()


def test_conflicting_writes_in_one_group_keep_their_results(tmp_path):
    """While a heavy modify keeps the writer busy, conflicting writes queue up and are committed in one group;
    each gets the result it would get one by one: one of eight adds of a DN succeeds, the others get 68; a modify
    and a delete of one entry sent at once: the delete succeeds, the modify succeeds or (run after it) gets 32."""
    workdir = tmp_path / "node"
    server = start_pyldapd(workdir, slapd_conf(workdir / "db", extra_global="threads 2"))
    try:
        wait_workers(server, 2)
        assert ldap_tool("ldapadd", "-H", server.url, "-x", "-D", ROOTDN, "-w", ROOTPW,
                         input=SUFFIX_LDIF).returncode == 0  # fmt: skip
        conn = connect(server)
        conn.add_s(f"cn=big,{SUFFIX}", person("big", "v1"))
        conn.add_s(f"cn=target,{SUFFIX}", person("target", "v1"))
        # a group is one worker process's: the conflicting writes all go to worker 0 (connected first: finding
        # connections on one worker takes longer than the heavy modify lasts)
        clients = [connection_on_worker(server, 0, 2)[0] for _ in range(WRITERS + 2)]
        done: dict = {}
        heavy = threading.Thread(target=heavy_modify, args=(server, f"cn=big,{SUFFIX}", 100_000, done))
        heavy.start()
        time.sleep(0.3)  # the heavy modify holds a writer (or LMDB's write lock, from either worker)
        add_ids = [c.add(f"cn=twin,{SUFFIX}", person("twin", "v1")) for c in clients[:WRITERS]]
        modify_id = clients[WRITERS].modify(
            f"cn=target,{SUFFIX}", [(ldap.MOD_REPLACE, "description", [b"v9"])]
        )
        delete_id = clients[WRITERS + 1].delete(f"cn=target,{SUFFIX}")
        codes = []
        for client, msgid in zip(clients[:WRITERS], add_ids, strict=True):
            try:
                client.result(msgid, timeout=60)
                codes.append(0)
            except ldap.ALREADY_EXISTS:
                codes.append(68)
        assert sorted(codes) == [0] + [68] * (WRITERS - 1)
        # two connections: the server may take either first, and answers as that order one by one would
        try:
            clients[WRITERS].result(modify_id, timeout=60)
            modified = 0
        except ldap.NO_SUCH_OBJECT:
            modified = 32
        clients[WRITERS + 1].result(delete_id, timeout=60)  # the delete succeeds in either order
        assert modified in (0, 32)
        with pytest.raises(ldap.NO_SUCH_OBJECT):
            conn.search_s(f"cn=target,{SUFFIX}", ldap.SCOPE_BASE)
        assert len(conn.search_s(f"cn=twin,{SUFFIX}", ldap.SCOPE_BASE)) == 1
        heavy.join(120)
        assert done["result"] == 0
        for client in clients:
            client.unbind_s()
        conn.unbind_s()
    finally:
        assert server.stop() == 0
    lines = [line for line in server.log().splitlines() if "group commit" in line]
    largest = max(int(line.rsplit(" ", 1)[1]) for line in lines)
    assert largest >= WRITERS, f"the conflicting writes were not committed together: {lines}"


def test_heavy_modify_does_not_stall_other_clients(tmp_path):
    """Modifies growing an entry to 100,000 values (each of 9,999 values, on an entry of up to
    100,000 values) run on the writer thread: another connection's root DSE searches keep being answered (each
    within seconds) while they run."""
    conf, server = start(tmp_path / "node")
    try:
        assert ldap_tool("ldapadd", "-H", server.url, "-x", "-D", ROOTDN, "-w", ROOTPW,
                         input=SUFFIX_LDIF).returncode == 0  # fmt: skip
        conn = connect(server)
        conn.add_s(f"cn=big,{SUFFIX}", person("big", "v1"))
        done: dict = {}
        heavy = threading.Thread(target=heavy_modify, args=(server, f"cn=big,{SUFFIX}", 100_000, done))
        heavy.start()
        light = ldap.initialize(server.url)
        light.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
        answered_during: list[float] = []
        deadline = time.monotonic() + 120
        while heavy.is_alive() and time.monotonic() < deadline:
            asked = time.monotonic()
            msgid = light.search("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"])
            light.result(msgid, timeout=5)  # raises ldap.TIMEOUT if the server stalls
            answered = time.monotonic()
            if "start" in done and "end" not in done:
                answered_during.append(answered - asked)
            time.sleep(0.01)
        heavy.join(120)
        assert done["result"] == 0
        assert answered_during, "no root DSE search was answered while the heavy modify ran"
        print(
            f"heavy modifies {done['end'] - done['start']:.2f}s; root DSE answered {len(answered_during)} "
            f"times meanwhile, slowest {max(answered_during) * 1000:.0f} ms"
        )
        stored = conn.search_s(f"cn=big,{SUFFIX}", ldap.SCOPE_BASE, attrlist=["description"])
        assert len(stored[0][1]["description"]) == 100_001
        light.unbind_s()
        conn.unbind_s()
    finally:
        server.stop()
