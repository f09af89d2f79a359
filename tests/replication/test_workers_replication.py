"""Replication with worker processes (issue 13): a pyldapd provider with `threads 2` whose writes land on both
workers (StartTLS connections chosen by the worker that accepted them: a plain connection that writes moves to
worker 0, server/handoff.py, a TLS one writes where it is), its persistent sync searches and its consumers
(pyldapd and Debian's slapd), a multi-provider pair with slapd, the session log across workers, accesslog.

What makes it work is server/journal.py: CSNs from the stored vector at each write's start, and every change
published by every worker from the journal, in commit order.
"""

from __future__ import annotations

import threading
import time

import ldap
import pytest
from ldap.ldapobject import SimpleLDAPObject
from ldap.syncrepl import SyncreplConsumer

from pyldapd.model.csn import parse_cookie
from tests.certs import TestPKI, make_pki, tls_conf
from tests.overlays.test_accesslog import PERSON, TOP, conf_for, read_log
from tests.replication.helpers import (
    BASE,
    add,
    consumer_conf,
    mesh_conf,
    modify,
    person,
    provider_conf,
    wait_converged,
    wait_for,
)
from tests.replication.test_persistent_sessionlog import provider_conf as logged_provider_conf
from tests.servers import (
    ROOTDN,
    ROOTPW,
    SUFFIX,
    connection_on_worker,
    free_port,
    start_pyldapd,
    start_slapd,
    wait_workers,
    worker_of,
)

PEOPLE = f"ou=People,{SUFFIX}"


def start_provider(root, name: str = "provider", *, sessionlog: int = 1000, threads: int = 2):
    directory = root / name / "db"
    directory.mkdir(parents=True, exist_ok=True)
    conf = workers_global(threads) + provider_conf(directory, sessionlog=sessionlog)
    server = start_pyldapd(root / name, conf, name=name)
    try:
        wait_workers(server, threads)
    except BaseException:
        server.stop()
        raise
    return server


def start_consumer(root, name: str, kind: str, provider_url: str, port: int | None = None):
    directory = root / name / "db"
    directory.mkdir(parents=True, exist_ok=True)
    conf = consumer_conf(directory, provider_url, slapd=(kind == "slapd"))
    if kind == "slapd":
        return start_slapd(root / name, conf, name=name, port=port)
    return start_pyldapd(root / name, workers_global() + conf, name=name, port=port)


PKI: TestPKI | None = None


@pytest.fixture(scope="module", autouse=True)
def pki(tmp_path_factory):
    global PKI
    PKI = make_pki(tmp_path_factory.mktemp("workers-pki"))
    yield PKI
    PKI = None


def workers_global(count: int = 2) -> str:
    """`threads count`, and TLS for the StartTLS writers of `on_workers`."""
    assert PKI is not None
    return f"threads {count}\n" + tls_conf(PKI)


def on_workers(server, count: int = 2) -> list[SimpleLDAPObject]:
    """A connection on each worker, each writing where it is: StartTLS keeps a connection on its worker when it
    writes (a plain one moves to worker 0, server/handoff.py), so that every worker commits."""
    assert PKI is not None
    return [connection_on_worker(server, index, count, tls_ca=PKI.ca_cert)[0] for index in range(count)]


def entry_attrs(uid: str, description: str) -> list[tuple[str, list[bytes]]]:
    return [("objectClass", [b"inetOrgPerson"]), ("cn", [uid.encode()]), ("sn", [b"s"]), ("uid", [uid.encode()]),
            ("description", [description.encode()])]  # fmt: skip


def context_csn(conn: SimpleLDAPObject) -> list[bytes]:
    return sorted(
        conn.search_s(SUFFIX, ldap.SCOPE_BASE, "(objectClass=*)", ["contextCSN"])[0][1]["contextCSN"]
    )


def server_context_csn(server) -> list[bytes]:
    conn = ldap.initialize(server.url)
    conn.simple_bind_s(ROOTDN, ROOTPW)
    try:
        return context_csn(conn)
    finally:
        conn.unbind_s()


def entry_csns(conn: SimpleLDAPObject) -> dict[str, bytes]:
    found = conn.search_s(PEOPLE, ldap.SCOPE_ONELEVEL, "(objectClass=*)", ["entryCSN"])
    return {dn: attrs["entryCSN"][0] for dn, attrs in found}


def wait_same_csn(dn: str, *conns: SimpleLDAPObject, timeout: float = 30.0) -> None:
    """Poll until every connection's server holds the entry with one entryCSN (bounded in time)."""
    deadline = time.monotonic() + timeout
    while True:
        csns = {conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["entryCSN"])[0][1]["entryCSN"][0]
                for conn in conns}  # fmt: skip
        if len(csns) == 1:
            return
        assert time.monotonic() < deadline, f"{dn}: entryCSNs still differ after {timeout}s: {csns}"
        time.sleep(0.05)


class SyncClient(SyncreplConsumer, SimpleLDAPObject):
    """A refreshAndPersist client (python-ldap's syncrepl): the cookies it got, in order, and what it holds."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.cookies: list[str] = []
        self.entries: dict[bytes, str] = {}
        self.deleted: list[bytes] = []
        self.refresh_deletes: bool | None = None

    def syncrepl_get_cookie(self):
        return self.cookies[-1] if self.cookies else None

    def syncrepl_set_cookie(self, cookie) -> None:
        self.cookies.append(cookie.decode() if isinstance(cookie, bytes) else cookie)

    def syncrepl_entry(self, dn, attributes, uuid) -> None:
        self.entries[uuid] = dn

    def syncrepl_delete(self, uuids) -> None:
        self.deleted += uuids
        for uuid in uuids:
            self.entries.pop(uuid, None)

    def syncrepl_present(self, uuids, refreshDeletes=False) -> None:  # noqa: N803 (python-ldap's name)
        if uuids is None:
            self.refresh_deletes = refreshDeletes


def sync_client_on_worker(server, index: int, count: int = 2, attempts: int = 200, kind: type = SyncClient):
    """A bound SyncClient whose connection worker `index` accepted (as tests.servers.connection_on_worker)."""
    import os
    import socket

    for _ in range(attempts):
        client = kind(server.url)
        client.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
        client.simple_bind_s(ROOTDN, ROOTPW)
        sock = socket.socket(fileno=os.dup(client.get_option(ldap.OPT_DESC)))
        try:
            local_port = sock.getsockname()[1]
        finally:
            sock.close()
        if worker_of(server, local_port) == index:
            return client
        client.unbind_s()
    raise RuntimeError(f"no connection landed on worker {index}")


def poll_until(client: SyncClient, predicate, timeout: float = 30.0) -> None:
    """Read the client's persistent search until predicate() holds (bounded in time)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"sync client: condition not reached in {timeout}s ({len(client.cookies)} cookies)"
            )
        try:
            client.syncrepl_poll(timeout=0.5)
        except ldap.TIMEOUT:
            pass


def cookie_csns(cookies: list[str]) -> list[str]:
    out = []
    for cookie in cookies:
        parsed = parse_cookie(cookie)
        out.append(max(parsed.csns.values()) if parsed.csns else "")
    return out


def write_concurrently(connections: list[SimpleLDAPObject], count: int, prefix: str) -> None:
    """Each connection (one per worker) adds `count` entries in its own thread, all at once."""
    errors: list[BaseException] = []

    def writer(index: int, conn: SimpleLDAPObject) -> None:
        try:
            for i in range(count):
                uid = f"{prefix}{index}-{i}"
                conn.add_s(f"uid={uid},{PEOPLE}", entry_attrs(uid, f"written on worker {index}"))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i, c)) for i, c in enumerate(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and not any(t.is_alive() for t in threads), errors


def test_persistent_consumers_fed_by_both_workers_converge_exactly(tmp_path):
    """A pyldapd consumer (itself 2 workers) and a slapd consumer, refreshAndPersist, from a 2-worker provider
    whose adds, modifies, renames and deletes alternate between its workers, some at the same time: the same
    entries and values everywhere, and the same contextCSN."""
    provider = start_provider(tmp_path)
    servers = [provider]
    try:
        add(provider, BASE)
        servers.append(start_consumer(tmp_path, "ours", "pyldapd", provider.url))
        servers.append(start_consumer(tmp_path, "slapd", "slapd", provider.url))
        wait_converged(servers)
        workers = on_workers(provider)
        for i in range(12):  # each change on the other worker than the one before
            uid = f"p{i}"
            workers[i % 2].add_s(f"uid={uid},{PEOPLE}", entry_attrs(uid, "added"))
            workers[(i + 1) % 2].modify_s(
                f"uid={uid},{PEOPLE}", [(ldap.MOD_REPLACE, "description", [b"modified"])]
            )
        for i in range(0, 12, 3):
            workers[i % 2].rename_s(f"uid=p{i},{PEOPLE}", f"uid=r{i}", delold=1)
            workers[(i + 1) % 2].delete_s(f"uid=p{i + 1},{PEOPLE}")
        write_concurrently(workers, 25, "c")
        common = wait_converged(servers, timeout=60)
        dns = [dn for dn, _ in common]
        assert f"dn: uid=r3,{PEOPLE}" in dns and f"dn: uid=p4,{PEOPLE}" not in dns
        assert sum(1 for dn in dns if dn.startswith("dn: uid=c")) == 50
        # the provider's vector (as each of its workers shows it) and both consumers' agree, and it is the
        # newest entryCSN written
        newest = max(entry_csns(workers[0]).values())
        wait_for(lambda: all(context_csn(w) == [newest] for w in workers), what="the provider's contextCSN")
        wait_for(lambda: all(server_context_csn(s) == [newest] for s in servers[1:]),
                 what="the consumers' contextCSN")  # fmt: skip
        for conn in workers:
            conn.unbind_s()
    finally:
        for server in servers:
            server.stop()


def test_csns_unique_and_increasing_across_workers_with_concurrent_writers(tmp_path):
    """Both workers write at once. Every entryCSN is unique, and a persistent search on each worker gets every
    change once, with cookies whose CSNs only go up: commit order is CSN order, whichever worker wrote."""
    provider = start_provider(tmp_path)
    try:
        add(provider, BASE)
        clients = [sync_client_on_worker(provider, index) for index in range(2)]
        for client in clients:
            client.syncrepl_search(SUFFIX, ldap.SCOPE_SUBTREE, mode="refreshAndPersist", attrlist=["*", "+"])
            poll_until(client, lambda c=client: c.refresh_deletes is not None)
            client.cookies.clear()
        workers = on_workers(provider)
        write_concurrently(workers, 60, "w")
        csns = entry_csns(workers[0])
        written = {dn: csn for dn, csn in csns.items() if dn.startswith("uid=w")}
        assert len(written) == 120 and len(set(written.values())) == 120
        for client in clients:
            poll_until(client, lambda c=client: len([x for x in c.entries.values() if x.startswith("uid=w")]) >= 120
                       and len(c.cookies) >= 120)  # fmt: skip
            seen = cookie_csns(client.cookies)
            assert seen == sorted(seen) and len(set(seen)) == len(seen), "cookies went backwards or repeated"
            assert {csn.encode() for csn in seen} == set(written.values())
        for conn in workers:
            conn.unbind_s()
        for client in clients:
            client.unbind_s()
    finally:
        provider.stop()


def test_two_worker_provider_in_a_multiprovider_pair_with_slapd_converges(tmp_path):
    """A 2-worker pyldapd node and a slapd node, each a provider of the other: the same entry changed on
    slapd and at once on both pyldapd workers (while slapd's change reaches pyldapd), adds on all three; one
    version everywhere.

    slapd's change is made before the workers' and not beside them: slapd's consumer checks an incoming entry's
    entryCSN against a read of the entry (syncrepl.c dn_callback) and writes its diff later, without a lock
    against local writes. A local modify committed in between is overwritten by the older replicated version,
    and nothing ever sends the newer one back (its sync log shows it: be_search, the local write's CSN, then
    be_modify of the older CSN). pyldapd is not the one being tested there."""
    ports = [free_port(), free_port()]
    nodes = []
    try:
        ours_dir, theirs_dir = tmp_path / "node1" / "db", tmp_path / "node2" / "db"
        ours_dir.mkdir(parents=True)
        theirs_dir.mkdir(parents=True)
        nodes.append(start_pyldapd(tmp_path / "node1", mesh_conf(ours_dir, ports, slapd=False, extra_global=workers_global()),
                                   name="node1", port=ports[0]))  # fmt: skip
        wait_workers(nodes[0], 2)
        nodes.append(start_slapd(tmp_path / "node2", mesh_conf(theirs_dir, ports, slapd=True), name="node2",
                                 port=ports[1]))  # fmt: skip
        add(nodes[0], BASE + "\n" + person("shared", description="first"))
        wait_converged(nodes, timeout=60)
        workers = on_workers(nodes[0])
        on_slapd = ldap.initialize(nodes[1].url)
        on_slapd.simple_bind_s(ROOTDN, ROOTPW)
        target = f"uid=shared,{PEOPLE}"
        done: list[BaseException] = []
        for round_ in range(5):

            def change(conn, text: str) -> None:
                try:
                    conn.modify_s(target, [(ldap.MOD_REPLACE, "description", [text.encode()])])
                except BaseException as exc:  # noqa: BLE001
                    done.append(exc)

            threads = [threading.Thread(target=change, args=(w, f"worker {i} round {round_}"))
                       for i, w in enumerate(workers)]  # fmt: skip
            wait_same_csn(target, workers[0], on_slapd)  # nothing of pyldapd's still on its way to slapd
            modify(
                nodes[1],
                f"dn: {target}\nchangetype: modify\nreplace: description\ndescription: slapd {round_}\n",
            )
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert not done, done
            workers[round_ % 2].add_s(f"uid=m{round_},{PEOPLE}", entry_attrs(f"m{round_}", "pyldapd"))
            add(nodes[1], person(f"s{round_}", description="slapd"))
        common = wait_converged(nodes, timeout=90)
        dns = [dn for dn, _ in common]
        assert all(f"dn: uid=m{i},{PEOPLE}" in dns and f"dn: uid=s{i},{PEOPLE}" in dns for i in range(5))
        for conn in [*workers, on_slapd]:
            conn.unbind_s()
    finally:
        for node in nodes:
            node.stop()


def test_deletes_made_on_both_workers_are_replayed_from_the_session_log(tmp_path):
    """A consumer's cookie predates deletes made on both workers: a refresh from it, served by either worker,
    is a delete phase from that worker's session log (which holds the other worker's deletes too); a pyldapd
    and a slapd consumer restarted after the deletes converge."""
    provider = start_provider(tmp_path)
    consumers = []
    try:
        add(provider, BASE + "".join("\n" + person(f"d{i}") for i in range(8)))
        consumers = [start_consumer(tmp_path, "ours", "pyldapd", provider.url),
                     start_consumer(tmp_path, "slapd", "slapd", provider.url)]  # fmt: skip
        wait_converged([provider, *consumers])
        ports = [c.port for c in consumers]
        for consumer in consumers:
            consumer.stop()
        probe = sync_client_on_worker(provider, 0)
        probe.syncrepl_search(SUFFIX, ldap.SCOPE_SUBTREE, mode="refreshOnly")
        poll_until(probe, lambda: probe.refresh_deletes is not None)
        cookie = probe.cookies[-1]
        uuids = {dn: uuid for uuid, dn in probe.entries.items()}
        probe.unbind_s()
        workers = on_workers(provider)
        for i in range(6):
            workers[i % 2].delete_s(f"uid=d{i},{PEOPLE}")
        for index in range(2):
            client = sync_client_on_worker(provider, index)
            client.cookies.append(cookie)
            client.syncrepl_search(SUFFIX, ldap.SCOPE_SUBTREE, mode="refreshOnly", cookie=cookie)
            poll_until(client, lambda c=client: c.refresh_deletes is not None)
            assert client.refresh_deletes is True, (
                f"worker {index} did not replay the deletes from its session log"
            )
            assert set(client.deleted) == {uuids[f"uid=d{i},{PEOPLE}"] for i in range(6)}
            client.unbind_s()
        consumers = [start_consumer(tmp_path, "ours", "pyldapd", provider.url, port=ports[0]),
                     start_consumer(tmp_path, "slapd", "slapd", provider.url, port=ports[1])]  # fmt: skip
        common = wait_converged([provider, *consumers], timeout=60)
        assert [dn for dn, _ in common if "uid=d" in dn] == [f"dn: uid=d{i},{PEOPLE}" for i in (6, 7)]
        for conn in workers:
            conn.unbind_s()
    finally:
        for server in [provider, *consumers]:
            server.stop()


class PresentRecordingClient(SyncClient):
    """A SyncClient that also keeps the entryUUIDs of a present phase."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.present: list[bytes] = []

    def syncrepl_present(self, uuids, refreshDeletes=False) -> None:  # noqa: N803 (python-ldap's name)
        if uuids is not None:
            self.present += uuids
        super().syncrepl_present(uuids, refreshDeletes)


def test_a_delete_made_while_a_worker_restarts_is_not_lost_to_its_session_log(tmp_path):
    """Worker 1 is killed; while its restart has opened the database but not yet followed the journal, worker
    0 deletes an entry. A refresh from a cookie older than the delete, then served by the restarted worker,
    must tell the delete (in a delete phase from its session log, or by leaving the entry out of a present
    phase): the restarted worker's session log starts from the vector of the journal position it publishes
    from, never from the older one it read at open. PYLDAPD_TEST_JOURNAL_GATE holds a worker before it
    follows the journal until the gate file exists."""
    import os
    import re
    import signal

    gate = tmp_path / "gate"
    gate.touch()
    (tmp_path / "provider" / "db").mkdir(parents=True)
    conf = workers_global() + provider_conf(tmp_path / "provider" / "db", sessionlog=100)
    provider = start_pyldapd(tmp_path / "provider", conf, name="provider",
                             env={**os.environ, "PYLDAPD_TEST_JOURNAL_GATE": str(gate)})  # fmt: skip
    try:
        wait_workers(provider, 2)
        add(provider, BASE + "".join("\n" + person(f"r{i}") for i in range(3)))
        probe = sync_client_on_worker(provider, 1)
        probe.syncrepl_search(SUFFIX, ldap.SCOPE_SUBTREE, mode="refreshOnly")
        poll_until(probe, lambda: probe.refresh_deletes is not None)
        cookie = probe.cookies[-1]
        victim_uuid = {dn: uuid for uuid, dn in probe.entries.items()}[f"uid=r0,{PEOPLE}"]
        probe.unbind_s()
        gate.unlink()
        pid = int(re.findall(r"pyldapd: worker 1 started \(pid (\d+)\)", provider.log())[-1])
        os.kill(pid, signal.SIGKILL)
        waiting = tmp_path / "gate.waiting"
        wait_for(waiting.exists, 30, what="the restarted worker at the gate")
        writer = connection_on_worker(provider, 0, 2)[0]
        writer.delete_s(f"uid=r0,{PEOPLE}")
        writer.unbind_s()
        gate.touch()
        wait_for(lambda: provider.log().count("pyldapd: worker 1 started") >= 2 and not waiting.exists(), 30,
                 what="the restarted worker past the gate")  # fmt: skip
        # a change the restarted worker publishes: its session log is not empty (an empty one covers nothing)
        writer = connection_on_worker(provider, 0, 2)[0]
        writer.modify_s(f"uid=r1,{PEOPLE}", [(ldap.MOD_REPLACE, "description", [b"after the restart"])])
        writer.unbind_s()
        reader = connection_on_worker(provider, 1, 2)[0]
        reader.search_s(
            SUFFIX, ldap.SCOPE_BASE
        )  # the suffix entry: read after the journal (server/journal.py)
        reader.unbind_s()
        client = sync_client_on_worker(provider, 1, kind=PresentRecordingClient)
        client.cookies.append(cookie)
        client.syncrepl_search(SUFFIX, ldap.SCOPE_SUBTREE, mode="refreshOnly", cookie=cookie)
        poll_until(client, lambda: client.refresh_deletes is not None)
        if client.refresh_deletes:
            assert victim_uuid in client.deleted, (
                "the delete phase left out the delete made during the restart"
            )
        else:
            assert client.present and victim_uuid not in client.present
        client.unbind_s()
    finally:
        provider.stop()


def test_deletes_on_both_workers_replayed_after_a_provider_restart(tmp_path):
    """syncprov-sessionlog-source cn=accesslog: deletes made on both workers, then the 2-worker provider
    restarts; a refresh from a cookie older than the deletes, on either worker, is a delete phase from the
    log (each delete logged once, whichever worker made it), and a consumer restarted then converges."""
    conf = workers_global() + logged_provider_conf(tmp_path / "provider", slapd=False)
    provider = start_pyldapd(tmp_path / "provider", conf, name="provider")
    consumer = None
    try:
        wait_workers(provider, 2)
        add(provider, BASE + "".join("\n" + person(f"d{i}") for i in range(8)))
        consumer = start_consumer(tmp_path, "slapd", "slapd", provider.url)
        wait_converged([provider, consumer])
        consumer_port = consumer.port
        consumer.stop()
        probe = sync_client_on_worker(provider, 1)
        probe.syncrepl_search(SUFFIX, ldap.SCOPE_SUBTREE, mode="refreshOnly")
        poll_until(probe, lambda: probe.refresh_deletes is not None)
        cookie = probe.cookies[-1]
        uuids = {dn: uuid for uuid, dn in probe.entries.items()}
        probe.unbind_s()
        workers = on_workers(provider)
        for i in range(6):
            workers[i % 2].delete_s(f"uid=d{i},{PEOPLE}")
        for conn in workers:
            conn.unbind_s()
        provider.stop()
        provider = start_pyldapd(tmp_path / "provider", conf, name="provider", port=provider.port)
        wait_workers(provider, 2)
        for index in range(2):
            client = sync_client_on_worker(provider, index)
            client.cookies.append(cookie)
            client.syncrepl_search(SUFFIX, ldap.SCOPE_SUBTREE, mode="refreshOnly", cookie=cookie)
            poll_until(client, lambda c=client: c.refresh_deletes is not None)
            assert client.refresh_deletes is True, f"worker {index}: no delete phase after the restart"
            assert set(client.deleted) == {uuids[f"uid=d{i},{PEOPLE}"] for i in range(6)}
            client.unbind_s()
        consumer = start_consumer(tmp_path, "slapd", "slapd", provider.url, port=consumer_port)
        common = wait_converged([provider, consumer], timeout=60)
        assert [dn for dn, _ in common if "uid=d" in dn] == [f"dn: uid=d{i},{PEOPLE}" for i in (6, 7)]
        deletes = [e for e in read_log(provider) if e.get("reqtype") == ["delete"]]
        assert sorted(e["reqdn"][0] for e in deletes) == sorted(f"uid=d{i},{PEOPLE}" for i in range(6))
    finally:
        for server in (provider, consumer):
            if server is not None:
                server.stop()


def test_accesslog_with_two_workers_logs_every_change_once_in_order(tmp_path):
    conf = workers_global() + conf_for(tmp_path, "logops writes\n")
    server = start_pyldapd(tmp_path, conf)
    try:
        wait_workers(server, 2)
        add(server, TOP + PERSON)
        workers = on_workers(server)
        errors: list[BaseException] = []

        def writer(index: int, conn) -> None:
            try:
                for i in range(40):
                    dn = f"cn=x,{SUFFIX}" if i % 2 else f"cn=n{index}-{i},{SUFFIX}"
                    if i % 2:
                        conn.modify_s(dn, [(ldap.MOD_REPLACE, "description", [f"{index}-{i}".encode()])])
                    else:
                        conn.add_s(dn, [("objectClass", [b"person"]), ("cn", [f"n{index}-{i}".encode()]),
                                        ("sn", [b"s"])])  # fmt: skip
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i, w)) for i, w in enumerate(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        expected = 2 + 2 * 40
        wait_for(
            lambda: len([e for e in read_log(server) if "reqtype" in e]) >= expected, 30, "the log entries"
        )
        logged = [e for e in read_log(server) if "reqtype" in e]
        assert len(logged) == expected  # each change once
        csns = [e["entrycsn"][0] for e in logged]  # in reqStart order
        assert len(set(csns)) == expected and csns == sorted(csns), "log order is not commit order"
        # the logged changes are the database's: each entry's entryCSN is that of its last logged change
        found = workers[0].search_s(SUFFIX, ldap.SCOPE_SUBTREE, "(cn=*)", ["entryCSN"])
        last = {}
        for entry in logged:
            last[entry["reqdn"][0].lower()] = entry["entrycsn"][0]
        for dn, attrs in found:
            assert last[dn.lower()] == attrs["entryCSN"][0].decode()
        assert len([e for e in logged if e["reqtype"] == ["modify"]]) == 40
        for conn in workers:
            conn.unbind_s()
    finally:
        server.stop()


def test_a_move_into_the_log_that_failed_in_one_worker_is_done_by_the_other(tmp_path, monkeypatch):
    """PYLDAPD_FAULT_COMMIT=2 fails each worker's second write commit: the worker that commits a change (its
    first commit) fails to move the log entry (its second), and the other worker, publishing the same change
    from the journal, moves it (its first commit). The change is logged once, without a restart."""
    conf = workers_global() + conf_for(tmp_path, "logops writes\n")
    server = start_pyldapd(tmp_path, conf)
    try:
        wait_workers(server, 2)
        add(server, TOP + PERSON)  # before the faults: a server started without them
    finally:
        server.stop()
    monkeypatch.setenv("PYLDAPD_FAULT_COMMIT", "2")
    server = start_pyldapd(tmp_path, conf, name="faulty")
    monkeypatch.delenv("PYLDAPD_FAULT_COMMIT")
    try:
        wait_workers(server, 2)
        modify(server, f"dn: cn=x,{SUFFIX}\nchangetype: modify\nreplace: description\ndescription: moved\n")

        def logged() -> list:
            return [e for e in read_log(server) if "description:= moved" in e.get("reqmod", [])]

        wait_for(lambda: len(logged()) >= 1, 20, "the log entry of the modify")
        assert [e["reqresult"] for e in logged()] == [["0"]]
    finally:
        server.stop()


def monitor_context_csn(conn: SimpleLDAPObject) -> list[bytes]:
    found = conn.search_s("cn=Database 1,cn=Databases,cn=Monitor", ldap.SCOPE_BASE, "(objectClass=*)",
                          ["contextCSN", "namingContexts"])  # fmt: skip
    assert found[0][1]["namingContexts"] == [SUFFIX.encode()], found
    return sorted(found[0][1].get("contextCSN", []))


def test_both_consumer_workers_show_the_vector_a_refresh_stored(tmp_path):
    """A 2-worker consumer started behind its provider: worker 0's consumer refreshes, and merges the provider's
    cookie at the end (a commit of the vector alone: no journal record, no bus message). As soon as worker 0
    shows that vector, cn=Monitor and the suffix entry show it on worker 1 too (`pyldapd status` reads either)."""
    servers = []
    try:
        provider = start_provider(tmp_path)
        servers.append(provider)
        add(provider, BASE + "\n" + person("before"))
        directory = tmp_path / "consumer" / "db"
        directory.mkdir(parents=True)
        conf = workers_global() + consumer_conf(directory, provider.url) + "\ndatabase monitor\n"
        for round_ in range(3):
            add(provider, person(f"r{round_}"))
            expected = server_context_csn(provider)
            consumer = start_pyldapd(tmp_path / "consumer", conf, name="consumer")
            servers.append(consumer)
            wait_workers(consumer, 2)
            workers = on_workers(consumer)
            wait_for(
                lambda w=workers[0], e=expected: context_csn(w) == e, 30, what="worker 0 to hold the vector"
            )
            # at once, no waiting: worker 1 must not show an older vector than worker 0
            shown = [
                monitor_context_csn(workers[1]),
                context_csn(workers[1]),
                monitor_context_csn(workers[0]),
            ]
            assert shown == [expected] * 3, (round_, shown, expected)
            for conn in workers:
                conn.unbind_s()
            consumer.stop()
            servers.remove(consumer)
    finally:
        for server in servers:
            server.stop()
