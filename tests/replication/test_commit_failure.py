"""Issue 14: no change is lost, and no state moves, when an LMDB commit fails (I/O error, disk full).

The contextCSN vector, a consumer's cookie and the provider's bookkeeping may move only with a commit that
succeeded: a consumer whose commit failed must ask its provider again from the last state it really stored, and a
client whose write could not be committed gets result 80 with nothing changed (as back-mdb answers).

Failures are real (a consumer's database on a small tmpfs that fills up) or injected through pyldapd's test-only
hook PYLDAPD_FAULT_COMMIT (backends/mdb.py): a path fails every write commit while that file exists, `N-M` fails
the Nth to the Mth write commit of the process, `meta=contextCSN` every commit that would store the vector.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.replication.helpers import (
    ADMIN,
    BASE,
    add,
    consumer_conf,
    mesh_conf,
    person,
    provider_conf,
    wait_converged,
    wait_for,
)
from tests.servers import SUFFIX, free_port, ldap_tool, start_pyldapd, start_slapd

FAULT = "PYLDAPD_FAULT_COMMIT"
FAILED = "mdb_txn_commit: "  # then "Input/output error" or "No space left on device"


def start_with_fault(monkeypatch, fault: str, workdir: Path, conf: str, **kw):
    """A pyldapd whose commits fail as `fault` says (the variable reaches this process only)."""
    monkeypatch.setenv(FAULT, fault)
    try:
        return start_pyldapd(workdir, conf, **kw)
    finally:
        monkeypatch.delenv(FAULT)


def db_dir(root: Path, name: str) -> Path:
    directory = root / name / "db"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def search(server, *args: str) -> str:
    result = ldap_tool("ldapsearch", "-H", server.url, *ADMIN, "-LLL", "-o", "ldif-wrap=no", *args)
    assert result.returncode == 0, f"{result.stderr}\n{server.log()[-3000:]}"
    return result.stdout


def context_csn(server) -> list[str]:
    out = search(server, "-s", "base", "-b", SUFFIX, "(objectClass=*)", "contextCSN")
    return sorted(
        line.split(": ", 1)[1] for line in out.splitlines() if line.lower().startswith("contextcsn:")
    )


def identities(server) -> dict[str, tuple[str, str]]:
    """DN -> (entryUUID, entryCSN) of every entry: what must be identical on every replica."""
    out = search(server, "-b", SUFFIX, "(objectClass=*)", "entryUUID", "entryCSN")
    found: dict[str, tuple[str, str]] = {}
    for block in out.strip().split("\n\n"):
        values = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "dn" in values:
            found[values["dn"].lower()] = (values.get("entryUUID", ""), values.get("entryCSN", ""))
    return found


def failures(server) -> int:
    return server.log().count(FAILED)


def wait_same(servers, timeout: float = 60.0) -> dict:
    """Every server holds the same entries with the same entryUUID and entryCSN (bounded in time)."""
    state: list = []

    def same() -> bool:
        state[:] = [identities(s) for s in servers]
        return all(s == state[0] for s in state[1:])

    try:
        wait_for(same, timeout, "the replicas to hold the same entries")
    except AssertionError:
        union = {dn for found in state for dn in found}
        missing = {s.name: sorted(union - set(found))[:10] for s, found in zip(servers, state, strict=True)}
        logs = "\n".join(f"--- {s.name}\n{s.log()[-3000:]}" for s in servers)
        raise AssertionError(f"replicas differ (missing: {missing})\n{logs}") from None
    return state[0]


def big_people(first: int, count: int, size: int = 20_000) -> str:
    blob = "x" * size
    return "\n".join(person(f"big{i}", description=blob) for i in range(first, first + count))


# -- a client's write whose commit fails ------------------------------------------------------------------------


def test_local_write_with_failed_commit_changes_nothing(tmp_path, monkeypatch):
    flag = tmp_path / "fail-commits"
    conf = provider_conf(db_dir(tmp_path, "prov"), server_id=1)
    server = start_with_fault(monkeypatch, str(flag), tmp_path / "prov", conf, name="prov")
    try:
        add(server, BASE + "\n" + person("u1"))
        csn_before, entries_before = context_csn(server), identities(server)
        assert csn_before
        flag.touch()
        attempts = [
            ("ldapadd", person("u2"), "txn_commit failed"),
            ("ldapmodify", f"dn: uid=u1,ou=People,{SUFFIX}\nchangetype: modify\nreplace: cn\ncn: Other\n",
             "commit failed"),
            ("ldapdelete", None, "commit failed"),
            ("ldapmodify", f"dn: uid=u1,ou=People,{SUFFIX}\nchangetype: modrdn\nnewrdn: uid=u9\n"
             "deleteoldrdn: 1\n", "txn_commit failed"),
        ]  # fmt: skip
        for tool, ldif, text in attempts:
            args = [f"uid=u1,ou=People,{SUFFIX}"] if tool == "ldapdelete" else []
            result = ldap_tool(tool, "-H", server.url, *ADMIN, *args, input=ldif)
            assert result.returncode == 80, (tool, result.stdout, result.stderr)
            assert f"additional info: {text}" in result.stderr, result.stderr
        result = ldap_tool("ldappasswd", "-H", server.url, *ADMIN, "-s", "new", f"uid=u1,ou=People,{SUFFIX}")
        assert "error (80)\nAdditional info: commit failed" in result.stdout, (result.stdout, result.stderr)
        # nothing happened: neither the entries nor the contextCSN moved
        assert identities(server) == entries_before
        assert context_csn(server) == csn_before
        flag.unlink()
        add(server, person("u2"))
        after = identities(server)
        assert set(after) == set(entries_before) | {f"uid=u2,ou=people,{SUFFIX}"}
        u2_csn = after[f"uid=u2,ou=people,{SUFFIX}"][1]
        assert context_csn(server) == [u2_csn]
        # what is stored agrees: after a restart the server holds the same vector
        server.stop()
        server = start_pyldapd(tmp_path / "prov", conf, name="prov", port=server.port)
        assert context_csn(server) == [u2_csn]
        assert identities(server) == after
    finally:
        server.stop()


def test_failed_checkpoint_costs_no_client_result_and_no_consumer_change(tmp_path, monkeypatch):
    """A checkpoint (contextCSN copied onto the suffix entry) is a write of its own after a committed change: its
    failure must neither turn the client's committed write into an error nor keep the change from consumers."""
    # one process: the fault counts one process's commits (with workers, the checkpoint is worker 0's only)
    conf = "threads 1\n" + provider_conf(db_dir(tmp_path, "prov")).replace(
        "syncprov-checkpoint 100 10", "syncprov-checkpoint 1 1"
    )
    # The suffix entry is loaded offline: a refreshAndPersist search of an empty database gets 32 (slapd 2.5),
    # and the consumer must be in its persist stage before the change whose checkpoint fails.
    suffix_entry, rest = BASE.split("\n\n", 1)
    (tmp_path / "load.conf").write_text(conf)
    (tmp_path / "suffix.ldif").write_text(suffix_entry + "\n")
    loaded = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "add", "-f", str(tmp_path / "load.conf"),
                             "-l", str(tmp_path / "suffix.ldif")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    # write commits: 1 ou=People, 2 its checkpoint (fails), 3 the next entry, 4 its checkpoint...
    provider = start_with_fault(monkeypatch, "2", tmp_path / "prov", conf, name="prov")
    consumer = None
    try:
        consumer = start_pyldapd(
            tmp_path / "cons", consumer_conf(db_dir(tmp_path, "cons"), provider.url), name="cons"
        )
        wait_for(lambda: "refresh done" in consumer.log(), 20, "the consumer to persist")
        add(provider, rest)  # every entry acknowledged, the first one despite its failed checkpoint
        assert "syncprov: checkpoint of contextCSN failed" in provider.log()
        wait_same([provider, consumer])
        assert context_csn(consumer) == context_csn(provider)
    finally:
        if consumer is not None:
            consumer.stop()
        provider.stop()


def fill_until_refused(server, disk: SmallDisk) -> list[tuple[int, str]]:
    """Add 20 KB entries until the disk is full; then a modify. Returns (result code, text) of both refusals."""
    add(server, BASE)
    blob = "x" * 20_000
    for i in range(400):  # 8 MB at most, twice the disk
        if i == 50:
            disk.fill()
        result = ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=person(f"big{i}", description=blob))
        if result.returncode:
            break
    else:
        raise AssertionError(f"{server.name}: the disk never filled up")
    refused = [(result.returncode, result.stderr.rsplit("additional info: ", 1)[-1].strip())]
    assert f"uid=big{i},ou=people,{SUFFIX}" not in identities(server)
    # a modify that needs 200 KB more than the disk has
    modify = (
        f"dn: uid=big0,ou=People,{SUFFIX}\nchangetype: modify\nadd: description\ndescription: {blob * 10}\n"
    )
    result = ldap_tool("ldapmodify", "-H", server.url, *ADMIN, input=modify)
    refused.append((result.returncode, result.stderr.rsplit("additional info: ", 1)[-1].strip()))
    # the live vector claims no refused write: it is the newest entryCSN stored
    assert context_csn(server) == [max(csn for _, csn in identities(server).values())], server.name
    disk.enlarge()
    add(server, person(f"big{i}", description=blob))  # room again: the same add now succeeds
    return refused


def test_client_writes_on_a_full_disk_are_refused_as_slapd_does(tmp_path, monkeypatch):
    results = {}
    for kind in ("pyldapd", "slapd"):
        disk = SmallDisk(tmp_path / f"{kind}-disk", 4)
        try:
            if kind == "slapd" and not disk.mounted:
                # no tmpfs for slapd here: what slapd 2.5 answered on a full tmpfs (back-mdb's texts)
                results[kind] = [(80, "txn_commit failed"), (80, "commit failed")]
                continue
            conf = provider_conf(disk.path, slapd=(kind == "slapd"))
            if kind == "slapd":
                server = start_slapd(tmp_path / kind, conf, name=kind)
            elif disk.fault is None:
                server = start_pyldapd(tmp_path / kind, conf, name=kind)
            else:
                server = start_with_fault(monkeypatch, disk.fault, tmp_path / kind, conf, name=kind)
            try:
                results[kind] = fill_until_refused(server, disk)
            finally:
                server.stop()
        finally:
            disk.release()
    assert results["pyldapd"] == results["slapd"] == [(80, "txn_commit failed"), (80, "commit failed")]


# -- a consumer whose commit fails ------------------------------------------------------------------------------


def test_consumer_persist_change_with_failed_commit_is_fetched_again(tmp_path, monkeypatch):
    flag = tmp_path / "fail-commits"
    provider = start_pyldapd(tmp_path / "prov", provider_conf(db_dir(tmp_path, "prov")), name="prov")
    consumer = None
    try:
        add(provider, BASE + "\n" + person("u1"))
        conf = consumer_conf(db_dir(tmp_path, "cons"), provider.url)
        consumer = start_with_fault(monkeypatch, str(flag), tmp_path / "cons", conf, name="cons")
        wait_same([provider, consumer])
        flag.touch()
        add(provider, person("lost1"))  # acknowledged by the provider; the consumer cannot store it
        wait_for(lambda: failures(consumer) >= 1, 20, "the consumer's commit to fail")
        assert f"uid=lost1,ou=people,{SUFFIX}" not in identities(consumer)
        flag.unlink()
        add(provider, person("u3"))
        final = wait_same([provider, consumer])
        assert f"uid=lost1,ou=people,{SUFFIX}" in final
        assert context_csn(consumer) == context_csn(provider)
        # the stored state agrees with what the consumer holds: a restart asks for nothing it lacks
        consumer.stop()
        consumer = start_pyldapd(tmp_path / "cons", conf, name="cons", port=consumer.port)
        add(provider, person("u4"))
        wait_same([provider, consumer])
    finally:
        if consumer is not None:
            consumer.stop()
        provider.stop()


def held(server) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """(identities, contextCSN) of a replica that may hold nothing yet (no suffix entry: result 32)."""
    probe = ldap_tool("ldapsearch", "-H", server.url, *ADMIN, "-LLL", "-s", "base", "-b", SUFFIX, "1.1")
    if probe.returncode == 32:
        return {}, []
    assert probe.returncode == 0, f"{probe.stderr}\n{server.log()[-3000:]}"
    return identities(server), context_csn(server)


def requests_from_empty_state(server) -> list[str]:
    """The consumer's sync requests so far; each must carry no CSN (it stored none)."""
    requests = [line for line in server.log().splitlines() if "sync search with cookie" in line]
    assert requests and all("csn=" not in line for line in requests), requests
    return requests


def refreshonly_conf(tmp_path: Path, provider) -> str:
    return consumer_conf(
        db_dir(tmp_path, "cons"), provider.url, type_="refreshOnly", extra="interval=00:00:00:01"
    )


def test_consumer_refresh_whose_commits_fail_stores_nothing_and_moves_nothing(tmp_path, monkeypatch):
    """The refresh's entries and its cookie are applied many to a commit: when those commits fail, nothing of
    the refresh is stored, the vector stays empty and every retry asks from the empty state; once commits work
    again, the consumer converges and its stored vector is the provider's."""
    flag = tmp_path / "fail-commits"
    flag.touch()  # from the start: every commit of the consumer fails
    provider = start_pyldapd(tmp_path / "prov", provider_conf(db_dir(tmp_path, "prov")), name="prov")
    consumer = None
    try:
        add(provider, BASE + "\n" + "\n".join(person(f"u{i}") for i in range(1, 41)))
        conf = refreshonly_conf(tmp_path, provider)
        consumer = start_with_fault(monkeypatch, str(flag), tmp_path / "cons", conf, name="cons")
        wait_for(lambda: failures(consumer) >= 1, 30, "the consumer's commits to fail")
        wait_for(
            lambda: consumer.log().count("sync search with cookie") >= 2, 30, "the consumer to ask again"
        )
        assert held(consumer) == ({}, [])  # neither an entry nor the cookie
        requests_from_empty_state(consumer)  # it asked again from the state it stored: none
        assert held(consumer) == ({}, [])
        flag.unlink()
        wait_for(lambda: held(consumer)[0], 30, "the consumer to store the refresh")
        wait_same([provider, consumer])
        wait_for(lambda: context_csn(consumer) == context_csn(provider), 20, "the consumer's contextCSN")
        # what is stored agrees: after a restart the same entries and vector
        consumer.stop()
        consumer = start_pyldapd(tmp_path / "cons", conf, name="cons", port=consumer.port)
        assert context_csn(consumer) == context_csn(provider)
        wait_same([provider, consumer])
    finally:
        if consumer is not None:
            consumer.stop()
        provider.stop()


def test_consumer_refresh_cookie_with_failed_commit_does_not_move_state(tmp_path, monkeypatch):
    provider = start_pyldapd(tmp_path / "prov", provider_conf(db_dir(tmp_path, "prov")), name="prov")
    consumer = None
    try:
        add(provider, BASE + "\n" + "\n".join(person(f"u{i}") for i in range(1, 6)))
        expected = identities(provider)
        conf = refreshonly_conf(tmp_path, provider)
        # The refresh's entries are stored first (commits that move no vector), then its final cookie in a
        # commit of its own, which fails: every commit that would store a contextCSN fails.
        consumer = start_with_fault(monkeypatch, "meta=contextCSN", tmp_path / "cons", conf, name="cons")
        wait_for(lambda: failures(consumer) >= 1, 30, "the consumer to fail storing its cookie")
        assert identities(consumer) == expected  # the entries were stored; only the cookie was not
        # The vector must not claim the provider's state it could not store (before: it showed it and asked
        # the provider for nothing more, while its database lacked the cookie).
        assert context_csn(consumer) == []
        asked = consumer.log().count("sync search with cookie")
        wait_for(
            lambda: consumer.log().count("sync search with cookie") > asked, 30, "the consumer to ask again"
        )
        requests_from_empty_state(consumer)  # from the state it stored, not from the one it failed to
        assert context_csn(consumer) == []
        consumer.stop()
        consumer = start_pyldapd(tmp_path / "cons", conf, name="cons", port=consumer.port)
        wait_same([provider, consumer])
        wait_for(lambda: context_csn(consumer) == context_csn(provider), 20, "the consumer's contextCSN")
    finally:
        if consumer is not None:
            consumer.stop()
        provider.stop()


def test_mesh_node_with_failed_commits_loses_nothing(tmp_path, monkeypatch):
    flag = tmp_path / "fail-commits"
    ports = [free_port() for _ in range(3)]
    nodes = []
    try:
        for index in range(3):
            name = f"node{index + 1}"
            conf = mesh_conf(db_dir(tmp_path, name), ports, slapd=False)
            if index == 2:
                node = start_with_fault(
                    monkeypatch, str(flag), tmp_path / name, conf, name=name, port=ports[index]
                )
            else:
                node = start_pyldapd(tmp_path / name, conf, name=name, port=ports[index])
            nodes.append(node)
        add(nodes[0], BASE)
        wait_converged(nodes, timeout=60)
        flag.touch()
        add(nodes[0], person("from1"))
        add(nodes[1], person("from2"))
        wait_for(lambda: failures(nodes[2]) >= 1, 30, "node3's commits to fail")
        flag.unlink()
        add(nodes[0], person("after1"))
        add(nodes[1], person("after2"))
        final = wait_same(nodes, timeout=90)
        for uid in ("from1", "from2", "after1", "after2"):
            assert f"uid={uid},ou=people,{SUFFIX}" in final
        wait_for(lambda: len({tuple(context_csn(n)) for n in nodes}) == 1, 30, "one contextCSN everywhere")
    finally:
        for node in nodes:
            node.stop()


# -- a consumer's disk fills up ---------------------------------------------------------------------------------


class SmallDisk:
    """A tmpfs of a few megabytes for a consumer's database (we run as root); enlarged to let it recover. When
    mounting is not possible, the consumer's commits fail through the fault hook instead, for as long as the disk
    is meant to be full."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.flag = path.parent / f"{path.name}.full"
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                                capture_output=True, text=True)  # fmt: skip
        self.mounted = result.returncode == 0

    @property
    def fault(self) -> str | None:
        return None if self.mounted else str(self.flag)

    def fill(self) -> None:
        """Without a tmpfs: from now on the disk is full."""
        if not self.mounted:
            self.flag.touch()

    def enlarge(self) -> None:
        if self.mounted:
            subprocess.run(
                ["mount", "-o", "remount,size=256m", str(self.path)], check=True, capture_output=True
            )
        else:
            self.flag.unlink(missing_ok=True)

    def release(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def start_consumer(
    kind: str, monkeypatch, workdir: Path, directory: Path, provider, fault: str | None, port=None
):
    conf = consumer_conf(directory, provider.url, slapd=(kind == "slapd"))
    if kind == "slapd":
        return start_slapd(workdir, conf, name="slapd-cons", port=port)
    if fault is None:
        return start_pyldapd(workdir, conf, name="cons", port=port)
    return start_with_fault(monkeypatch, fault, workdir, conf, name="cons", port=port)


def test_consumer_on_a_full_disk_loses_no_acknowledged_entry(tmp_path, monkeypatch):
    provider = start_pyldapd(tmp_path / "prov", provider_conf(db_dir(tmp_path, "prov")), name="prov")
    disks = {kind: SmallDisk(tmp_path / f"{kind}-disk", 4) for kind in ("pyldapd", "slapd")}
    consumers: dict = {}
    try:
        add(provider, BASE)
        for kind, disk in disks.items():
            if kind == "slapd" and not disk.mounted:
                continue  # slapd has no fault hook: it is compared only on a real full disk
            consumers[kind] = start_consumer(
                kind, monkeypatch, tmp_path / kind, disk.path, provider, disk.fault
            )
        wait_same([provider, *consumers.values()])
        ours = consumers["pyldapd"]
        first = 0
        for _round in range(40):  # 40 x 10 entries of 20 KB: 8 MB, twice the disk
            if first == 50:
                disks["pyldapd"].fill()
            add(provider, big_people(first, 10))
            first += 10
            if failures(ours):
                break
        assert failures(ours), "the consumer's disk never filled up"
        add(provider, big_people(first, 20))  # acknowledged while the consumer cannot store anything
        for disk in disks.values():
            disk.enlarge()
        for kind, server in list(consumers.items()):
            server.stop()
            consumers[kind] = start_consumer(kind, monkeypatch, tmp_path / kind, disks[kind].path, provider, None,
                                             port=server.port)  # fmt: skip
        final = wait_same([provider, *consumers.values()], timeout=120)
        assert len(final) == 3 + first + 20
        assert context_csn(ours) == context_csn(provider)
    finally:
        for server in consumers.values():
            server.stop()
        provider.stop()
        for disk in disks.values():
            disk.release()
