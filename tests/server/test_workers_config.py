"""cn=config in every worker process (issue 13, server/configshare.py): with `threads 2`, a change made over LDAP
on a connection one worker serves is in effect on connections the other worker serves (limits, access, schema,
a database added, an overlay added); changes made at once from both workers end in one configuration, the same
in every worker and in slapd.d; a worker killed and restarted serves the current configuration; and the same
with a slapd.conf whose cn=config lives in memory only."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import ldap
import ldap.modlist
import pytest

from pyldapd.config import cnconfig
from tests.servers import (
    ROOTDN,
    ROOTPW,
    SUFFIX,
    RunningServer,
    connection_on_worker,
    free_port,
    ldap_tool,
    slapd_conf,
    start_process,
    wait_for,
    wait_workers,
    worker_pids,
)

CONFIG_ROOT = ("cn=config", "configsecret")
WORKERS = 2
DB = "olcDatabase={1}mdb,cn=config"
PEOPLE = 8


def config_text(tmp_path: Path) -> str:
    extra = f'threads {WORKERS}\ndatabase config\nrootdn "cn=config"\nrootpw {CONFIG_ROOT[1]}\n'
    return slapd_conf(tmp_path / "db", extra_global=extra, modules=True)


def start(tmp_path: Path, *, in_memory: bool) -> RunningServer:
    """pyldapd with 2 workers: from a slapd.d that slaptest made of the slapd.conf, or (in_memory)
    from the slapd.conf itself, its cn=config in memory."""
    conf = tmp_path / "slapd.conf"
    conf.write_text(config_text(tmp_path))
    if in_memory:
        source = ["-f", str(conf)]
    else:
        slapd_d = tmp_path / "slapd.d"
        slapd_d.mkdir()
        import subprocess

        made = subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(slapd_d)], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert (slapd_d / "cn=config.ldif").exists(), made.stderr
        source = ["-F", str(slapd_d)]
    port = free_port()
    ldapi = str(tmp_path / "ldapi")
    urls = f"ldap://127.0.0.1:{port}/ ldapi://{ldapi.replace('/', '%2F')}/"
    argv = [sys.executable, "-m", "pyldapd.cli.main", "serve", *source, "-h", urls, "-d", "stats"]
    server = start_process("pyldapd", argv, port, ldapi, tmp_path, conf)
    try:
        wait_workers(server, WORKERS)
        people = "".join(f"\ndn: uid=u{i},{SUFFIX}\nobjectClass: account\nuid: u{i}\n" for i in range(PEOPLE))
        ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, check=True,
                  input=f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: ex\n"
                  + people)  # fmt: skip
    except BaseException:
        server.kill()
        raise
    return server


@pytest.fixture
def slapd_d_server(tmp_path):
    server = start(tmp_path, in_memory=False)
    yield server
    server.stop()


@pytest.fixture
def in_memory_server(tmp_path):
    server = start(tmp_path, in_memory=True)
    yield server
    server.stop()


def on_worker(server: RunningServer, index: int, who: tuple[str, str] = CONFIG_ROOT, count: int = WORKERS):
    """A connection bound as `who`, served by worker `index` of `count`. Between attempts a pause: the worker
    that just served the previous attempt is not always the first awake for the next accept (on this shared
    2-CPU machine it could win every race)."""
    for _ in range(50):
        try:
            return connection_on_worker(server, index, count, who=who[0], password=who[1], attempts=4)[0]
        except RuntimeError:
            time.sleep(0.1)
    raise RuntimeError(f"no connection landed on worker {index}")


def anonymous_on(server: RunningServer, index: int):
    return on_worker(server, index, ("", ""))


def config_on(server: RunningServer, index: int, dn: str) -> dict[str, list[bytes]]:
    conn = on_worker(server, index)
    try:
        return conn.search_s(dn, ldap.SCOPE_BASE)[0][1]
    finally:
        conn.unbind_s()


def people_seen(conn) -> tuple[int, bool]:
    """(entries returned, whether the size limit was exceeded) for an anonymous one-level search of the base."""
    msgid = conn.search_ext(SUFFIX, ldap.SCOPE_ONELEVEL, "(objectClass=account)", ["uid"])
    seen = 0
    try:
        while True:
            kind, data = conn.result(msgid, all=0, timeout=30)
            if kind == ldap.RES_SEARCH_RESULT:
                return seen, False
            seen += len(data)
    except ldap.SIZELIMIT_EXCEEDED:
        return seen, True
    except ldap.NO_SUCH_OBJECT:  # the base hidden by olcAccess, as slapd hides it
        return 0, False


def eventually(check, what: str) -> None:
    """What only the bus brings (a persistent search's news, a consumer's change): soon, not at once."""
    wait_for(check, 15, what=what)


def test_a_change_on_one_worker_is_in_effect_on_the_other(slapd_d_server):
    server = slapd_d_server
    writer = on_worker(server, 0)
    reader = anonymous_on(server, 1)
    try:
        assert people_seen(reader) == (PEOPLE, False)
        # a size limit on the database (olcSizeLimit), made on worker 0, bounds anonymous searches on worker 1
        config_reader = on_worker(server, 1)
        writer.modify_s(DB, [(ldap.MOD_REPLACE, "olcSizeLimit", [b"3"])])
        # cn=config read on worker 1 right after the answer: the change is there (read-your-writes)
        assert config_reader.search_s(DB, ldap.SCOPE_BASE, "(objectClass=*)", ["olcSizeLimit"])[0][1] == {
            "olcSizeLimit": [b"3"]}  # fmt: skip
        config_reader.unbind_s()
        assert people_seen(reader) == (3, True), "the size limit on worker 1"
        # olcLimits: the rootdn of the database unbounded, on worker 1 too
        writer.modify_s(DB, [(ldap.MOD_ADD, "olcLimits", [f'dn.exact="{ROOTDN}" size=unlimited'.encode()])])
        admin = on_worker(server, 1, (ROOTDN, ROOTPW))
        assert people_seen(admin) == (PEOPLE, False), "olcLimits on worker 1"
        # olcAccess: anonymous reads refused
        writer.modify_s(DB, [(ldap.MOD_ADD, "olcAccess", [b"{0}to * by anonymous none by * read"])])
        assert people_seen(reader) == (0, False), "olcAccess on worker 1"
        # a new schema element: an entry using it can be added on worker 1
        writer.add_s("cn=cfgbus,cn=schema,cn=config", ldap.modlist.addModlist({
            "objectClass": [b"olcSchemaConfig"], "cn": [b"cfgbus"],
            "olcAttributeTypes": [b"( 1.3.6.1.4.1.99999.1.1 NAME 'cfgbusColor' EQUALITY caseIgnoreMatch "
                                  b"SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )"],
            "olcObjectClasses": [b"( 1.3.6.1.4.1.99999.2.1 NAME 'cfgbusThing' SUP top AUXILIARY "
                                 b"MAY cfgbusColor )"]}))  # fmt: skip
        assert try_modify(admin, f"uid=u0,{SUFFIX}", [(ldap.MOD_ADD, "objectClass", [b"cfgbusThing"]),
                   (ldap.MOD_ADD, "cfgbusColor", [b"blue"])]), "the new schema on worker 1"  # fmt: skip
        # a database added on worker 0 serves on worker 1
        new_dir = server.workdir / "db2"
        new_dir.mkdir()
        writer.add_s("olcDatabase=mdb,cn=config", ldap.modlist.addModlist({
            "objectClass": [b"olcDatabaseConfig", b"olcMdbConfig"], "olcDatabase": [b"mdb"],
            "olcSuffix": [b"dc=other,dc=com"], "olcDbDirectory": [str(new_dir).encode()],
            "olcRootDN": [b"cn=admin,dc=other,dc=com"], "olcRootPW": [b"other"]}))  # fmt: skip
        other = on_worker(server, 1, ("cn=admin,dc=other,dc=com", "other"))
        assert try_add(other, "dc=other,dc=com", {"objectClass": [b"dcObject", b"organization"],
                   "dc": [b"other"], "o": [b"other"]}), "the new database on worker 1"  # fmt: skip
        # an overlay: syncprov on the first database answers a critical Sync Request on worker 1
        assert not sync_request_served(admin)
        writer.add_s(f"olcOverlay=syncprov,{DB}", ldap.modlist.addModlist({
            "objectClass": [b"olcOverlayConfig", b"olcSyncProvConfig"], "olcOverlay": [b"syncprov"]}))  # fmt: skip
        assert sync_request_served(admin), "syncprov on worker 1"
        for conn in (admin, other):
            conn.unbind_s()
        # the same cn=config everywhere, and in slapd.d
        assert_same_config(server)
    finally:
        writer.unbind_s()
        reader.unbind_s()


def try_modify(conn, dn: str, changes) -> bool:
    try:
        conn.modify_s(dn, changes)
    except (ldap.UNDEFINED_TYPE, ldap.OBJECT_CLASS_VIOLATION, ldap.INVALID_SYNTAX):
        return False
    return True


def try_add(conn, dn: str, attributes: dict) -> bool:
    try:
        conn.add_s(dn, ldap.modlist.addModlist(attributes))
    except (ldap.NO_SUCH_OBJECT, ldap.INVALID_CREDENTIALS, ldap.REFERRAL, ldap.UNWILLING_TO_PERFORM):
        return False
    return True


def sync_request_served(conn) -> bool:
    from ldap.syncrepl import SyncRequestControl

    control = SyncRequestControl(criticality=True, mode="refreshOnly")
    try:
        conn.search_ext_s(SUFFIX, ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"], serverctrls=[control])
    except ldap.UNAVAILABLE_CRITICAL_EXTENSION:
        return False
    return True


def config_tree(conn) -> dict[str, dict[str, list[bytes]]]:
    entries = conn.search_s("cn=config", ldap.SCOPE_SUBTREE, "(objectClass=*)", ["*", "+"])
    return {dn.lower(): {k.lower(): v for k, v in attrs.items()} for dn, attrs in entries}


def assert_same_config(server: RunningServer, slapd_d: bool = True) -> dict:
    trees = []
    for index in range(WORKERS):
        conn = on_worker(server, index)
        try:
            trees.append(config_tree(conn))
        finally:
            conn.unbind_s()
    assert trees[0] == trees[1]
    if slapd_d:
        on_disk = {e.dn.lower(): {k: list(a.values) for k, a in e.attrs.items()}
                   for e in cnconfig.read_slapd_d(server.workdir / "slapd.d")}  # fmt: skip
        served = trees[0]
        assert set(on_disk) == set(served)
        for dn, attrs in on_disk.items():
            for name in ("olcaccess", "olclimits", "olcsizelimit", "olcattributetypes", "olcobjectclasses",
                         "olcsuffix", "entrycsn", "entryuuid"):  # fmt: skip
                assert attrs.get(name, []) == served[dn].get(name, []), (dn, name)
    return trees[0]


def test_concurrent_changes_from_both_workers_end_in_one_config(slapd_d_server):
    server = slapd_d_server
    per_client = 12
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            conn = on_worker(server, index)
            try:
                for number in range(per_client):
                    rule = f'dn.exact="uid=w{index}n{number},{SUFFIX}" size={index * 100 + number + 1}'
                    conn.modify_s(DB, [(ldap.MOD_ADD, "olcLimits", [rule.encode()])])
                    conn.modify_s("cn=config", [(ldap.MOD_REPLACE, "olcIdleTimeout", [str(index * 100 + number
                                                                                          + 1).encode()])])  # fmt: skip
            finally:
                conn.unbind_s()
        except BaseException as exc:  # noqa: BLE001 (reported by the test thread)
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    wait_for(lambda: all(len(config_on(server, i, DB).get("olcLimits", [])) == WORKERS * per_client
                         for i in range(WORKERS)), 15, what="every limit in every worker")  # fmt: skip
    tree = assert_same_config(server)
    limits = tree[DB.lower()]["olclimits"]
    assert sorted(v.split(b"}", 1)[1] for v in limits) == sorted(
        f'dn.exact="uid=w{i}n{n},{SUFFIX}" size={i * 100 + n + 1}'.encode()
        for i in range(WORKERS) for n in range(per_client))  # fmt: skip
    assert [int(v.split(b"}", 1)[0][1:]) for v in limits] == list(
        range(WORKERS * per_client)
    )  # numbered in order
    # each client's own changes keep their order
    for index in range(WORKERS):
        mine = [v for v in limits if f"uid=w{index}n".encode() in v]
        assert mine == sorted(mine, key=lambda v: int(v.rsplit(b"size=", 1)[1]))
    # the two entries' last changes, made in different workers, got different CSNs
    assert tree["cn=config"]["entrycsn"] != tree[DB.lower()]["entrycsn"]


def kill_worker(server: RunningServer, index: int) -> None:
    """kill -9 of the worker serving `index`'s connections; waits for the supervisor to start another."""
    before = set(worker_pids(server))
    victim = worker_pid_of(server, index)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in worker_pids(server) and len(worker_pids(server)) == WORKERS
             and set(worker_pids(server)) != before, 30, what="the worker restarted")  # fmt: skip
    wait_for(
        lambda: server.log().count(f"pyldapd: worker {index} started") >= 2, 30, what="the restart logged"
    )


def worker_pid_of(server: RunningServer, index: int) -> int:
    import re

    started = re.findall(rf"pyldapd: worker {index} started \(pid (\d+)\)", server.log())
    return int(started[-1])


def restarted_worker_has_current_config(server: RunningServer, slapd_d: bool) -> None:
    writer = on_worker(server, 0)
    try:
        writer.modify_s(DB, [(ldap.MOD_REPLACE, "olcSizeLimit", [b"2"])])
        writer.add_s(f"olcOverlay=syncprov,{DB}", ldap.modlist.addModlist({
            "objectClass": [b"olcOverlayConfig", b"olcSyncProvConfig"], "olcOverlay": [b"syncprov"]}))  # fmt: skip
        writer.add_s("cn=shade,cn=schema,cn=config", ldap.modlist.addModlist({
            "objectClass": [b"olcSchemaConfig"], "cn": [b"shade"],
            "olcAttributeTypes": [b"( 1.3.6.1.4.1.99999.1.2 NAME 'cfgbusShade' "
                                  b"SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )"]}))  # fmt: skip
        # two databases added, the first deleted again: the second is renumbered {2}
        for name in ("gone", "kept"):
            (server.workdir / name).mkdir()
            writer.add_s("olcDatabase=mdb,cn=config", ldap.modlist.addModlist({
                "objectClass": [b"olcDatabaseConfig", b"olcMdbConfig"], "olcDatabase": [b"mdb"],
                "olcSuffix": [f"dc={name},dc=com".encode()],
                "olcDbDirectory": [str(server.workdir / name).encode()]}))  # fmt: skip
        writer.delete_s("olcDatabase={2}mdb,cn=config")
    finally:
        writer.unbind_s()
    expected = config_on(server, 0, DB)
    eventually(lambda: config_on(server, 1, DB) == expected, "the change on worker 1")
    kill_worker(server, 1)
    # the new worker 1: its cn=config is the current one, and in effect
    assert config_on(server, 1, DB) == expected
    assert config_on(server, 1, "olcDatabase={2}mdb,cn=config")["olcSuffix"] == [b"dc=kept,dc=com"]
    root_dse = anonymous_on(server, 1)
    try:
        contexts = root_dse.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"])[0][1]
        assert contexts["namingContexts"] == [SUFFIX.encode(), b"dc=kept,dc=com"]
    finally:
        root_dse.unbind_s()
    reader = anonymous_on(server, 1)
    admin = on_worker(server, 1, (ROOTDN, ROOTPW))
    try:
        assert people_seen(reader) == (2, True)
        assert sync_request_served(admin)
        admin.modify_s(f"uid=u1,{SUFFIX}", [(ldap.MOD_ADD, "objectClass", [b"extensibleObject"]),
                                            (ldap.MOD_ADD, "cfgbusShade", [b"dark"])])  # fmt: skip
    finally:
        reader.unbind_s()
        admin.unbind_s()
    # a change made on the restarted worker reaches worker 0
    writer = on_worker(server, 1)
    try:
        writer.modify_s(DB, [(ldap.MOD_REPLACE, "olcSizeLimit", [b"5"])])
    finally:
        writer.unbind_s()
    reader = anonymous_on(server, 0)
    try:
        eventually(lambda: people_seen(reader) == (5, True), "the restarted worker's change on worker 0")
    finally:
        reader.unbind_s()
    assert_same_config(server, slapd_d=slapd_d)


def test_a_restarted_worker_has_the_current_config(slapd_d_server):
    restarted_worker_has_current_config(slapd_d_server, slapd_d=True)


def test_in_memory_cn_config_of_a_slapd_conf_in_every_worker(in_memory_server):
    server = in_memory_server
    writer = on_worker(server, 1)
    reader = anonymous_on(server, 0)
    try:
        writer.modify_s(DB, [(ldap.MOD_ADD, "olcAccess", [b"{0}to * by anonymous none by * read"])])
        eventually(lambda: people_seen(reader) == (0, False), "olcAccess on worker 0")
        writer.modify_s(DB, [(ldap.MOD_DELETE, "olcAccess", [b"{0}"])])
        eventually(lambda: people_seen(reader) == (PEOPLE, False), "olcAccess deleted on worker 0")
    finally:
        writer.unbind_s()
        reader.unbind_s()
    assert not (server.workdir / "slapd.d").exists()  # nothing written, as slapd -f
    restarted_worker_has_current_config(server, slapd_d=False)


# -- replication of cn=config with workers: worker 0's consumer, every worker's syncprov -----------------------


@pytest.fixture
def config_nodes(tmp_path):
    from tests.replication.test_config_replication import Node

    nodes: list = []

    def make(name: str):
        node = Node(tmp_path, name, "pyldapd")
        nodes.append(node)
        node.start()
        wait_workers(node.server, WORKERS)  # no `threads`: one worker per CPU, 2 on the test machine
        return node

    yield make
    for node in nodes:
        node.stop()


def test_a_cn_config_consumer_in_worker_0_changes_every_worker(config_nodes):
    from tests.replication.test_config_replication import CONFIG_PW, config_syncrepl, syncprov_on

    if len(os.sched_getaffinity(0)) != WORKERS:
        pytest.fail("this test expects the default worker count (one per CPU) to be 2")
    provider, consumer = config_nodes("provider"), config_nodes("consumer")
    provider.config("ldapadd", syncprov_on("olcDatabase={0}config,cn=config"))
    consumer.config("ldapmodify", config_syncrepl("001", provider))
    provider.config(
        "ldapmodify", "dn: cn=config\nchangetype: modify\nreplace: olcIdleTimeout\nolcIdleTimeout: 77\n"
    )
    provider.config("ldapadd", "dn: cn=cfgbus,cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: cfgbus\n"
                               "olcAttributeTypes: ( 1.3.6.1.4.1.99999.1.3 NAME 'cfgbusHue' "
                               "SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n")  # fmt: skip
    root = ("cn=config", CONFIG_PW)

    def arrived(index: int) -> bool:
        conn = on_worker(consumer.server, index, root)
        try:
            tree = config_tree(conn)
        finally:
            conn.unbind_s()
        return tree.get("cn=config", {}).get("olcidletimeout") == [b"77"] and any(
            dn.startswith("cn={") and dn.endswith("cfgbus,cn=schema,cn=config") for dn in tree
        )

    for index in range(WORKERS):
        eventually(lambda index=index: arrived(index), f"the provider's changes in consumer worker {index}")
    trees = []
    for index in range(WORKERS):
        conn = on_worker(consumer.server, index, root)
        try:
            trees.append(config_tree(conn))
        finally:
            conn.unbind_s()
    assert trees[0] == trees[1]
    written = [p.name for p in (consumer.dir / "slapd.d" / "cn=config" / "cn=schema").iterdir()]
    assert sum("cfgbus" in name for name in written) == 1


def test_a_persistent_search_of_cn_config_on_one_worker_sees_changes_made_on_the_other(config_nodes):
    from ldap.syncrepl import SyncRequestControl

    from tests.replication.test_config_replication import CONFIG_PW, syncprov_on

    provider = config_nodes("provider")
    provider.config("ldapadd", syncprov_on("olcDatabase={0}config,cn=config"))
    root = ("cn=config", CONFIG_PW)
    watcher = on_worker(provider.server, 1, root)
    writer = on_worker(provider.server, 0, root)
    try:
        control = SyncRequestControl(criticality=True, mode="refreshAndPersist")
        msgid = watcher.search_ext("cn=config", ldap.SCOPE_SUBTREE, "(objectClass=*)", ["olcIdleTimeout"],
                                   serverctrls=[control])  # fmt: skip
        writer.modify_s("cn=config", [(ldap.MOD_REPLACE, "olcIdleTimeout", [b"91"])])
        deadline = time.monotonic() + 30
        seen = False
        while not seen and time.monotonic() < deadline:
            try:
                data = watcher.result4(msgid, all=0, timeout=5, add_intermediates=1)[1]
            except ldap.TIMEOUT:
                continue
            for item in data or []:
                if isinstance(item, tuple) and len(item) >= 2 and isinstance(item[1], dict):
                    seen = seen or item[1].get("olcIdleTimeout") == [b"91"]
        assert seen, "the change made on worker 0 never came through worker 1's persistent search"
        watcher.abandon(msgid)
    finally:
        watcher.unbind_s()
        writer.unbind_s()


def test_a_worker_added_by_olcthreads_has_the_current_config(slapd_d_server):
    server = slapd_d_server
    writer = on_worker(server, 1)
    try:
        writer.modify_s(DB, [(ldap.MOD_REPLACE, "olcSizeLimit", [b"4"])])
        writer.modify_s("cn=config", [(ldap.MOD_REPLACE, "olcThreads", [b"3"])])
    finally:
        writer.unbind_s()
    wait_for(lambda: len(worker_pids(server)) == 3, 30, what="a third worker")
    wait_for(
        lambda: "pyldapd: 3 worker processes (were 2)" in server.log(), 30, what="the third one listening"
    )
    reader = on_worker(server, 2, ("", ""), count=3)
    try:
        assert people_seen(reader) == (4, True)
    finally:
        reader.unbind_s()
    trees = []
    for index in range(3):
        conn = on_worker(server, index, count=3)
        try:
            trees.append(config_tree(conn))
        finally:
            conn.unbind_s()
    assert trees[0] == trees[1] == trees[2]
    assert trees[2]["cn=config"]["olcthreads"] == [b"3"]


def test_a_write_waiting_for_the_lock_leaves_its_worker_serving(slapd_d_server):
    """While another holder has cn=config's lock (here the test, through the memfd a worker inherited), a
    cn=config write waits for it without blocking its worker: other clients of that worker are answered; once
    the lock is free the write completes, and reaches the other worker."""
    import fcntl

    server = slapd_d_server
    pid = worker_pid_of(server, 0)
    memfd = next(f"/proc/{pid}/fd/{name}" for name in os.listdir(f"/proc/{pid}/fd")
                 if "pyldapd-cn-config" in os.readlink(f"/proc/{pid}/fd/{name}"))  # fmt: skip
    fd = os.open(memfd, os.O_RDWR)
    writer = on_worker(server, 0)
    other = anonymous_on(server, 0)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
        msgid = writer.modify(DB, [(ldap.MOD_REPLACE, "olcSizeLimit", [b"6"])])
        for _ in range(3):  # the same worker answers others while its write waits
            assert other.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"])
            assert people_seen(other) == (PEOPLE, False)
        with pytest.raises(ldap.TIMEOUT):
            writer.result(msgid, timeout=2)
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
        assert writer.result(msgid, timeout=30)[0] == ldap.RES_MODIFY
    finally:
        os.close(fd)
        writer.unbind_s()
        other.unbind_s()
    reader = anonymous_on(server, 1)
    try:
        eventually(lambda: people_seen(reader) == (6, True), "the change on worker 1")
    finally:
        reader.unbind_s()
