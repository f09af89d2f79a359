"""No write waits on the event loop (issue 13): syncprov checkpoints, accesslog's move into its log database and
cn=config's log entries go through the database's writer thread.

Each test makes the write wait: another process holds the LMDB write lock of the database it goes to (LMDB's
lock is shared by every process of an environment) for HOLD seconds. Meanwhile another client's root DSE search
is answered within seconds: had the write run on the event loop, it would have waited there for the lock, and
every client with it. Once the lock is free, the write is done: the log entry is there (and the writing client
was answered only then), the checkpoint is on the suffix entry.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import ldap

from tests.overlays.test_accesslog import conf_for, read_log
from tests.server.test_glue import PEOPLE, SUFFIX, glue_conf
from tests.servers import ROOTDN, ROOTPW, ldap_tool, start_pyldapd

HOLD = 8  # seconds another process holds the write lock
HOLDER = """
import sys, time, lmdb
env = lmdb.open(sys.argv[1], subdir=True, max_dbs=16, lock=True, readahead=False, map_size=1 << 20)
txn = env.begin(write=True)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
txn.abort()
env.close()
"""


def hold_write_lock(directory: Path) -> subprocess.Popen:
    """A process holding the write lock of the LMDB environment in `directory` for HOLD seconds."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), str(HOLD)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def root_dse_times(server, count: int = 4) -> list[float]:
    """Root DSE searches from a fresh connection each: how long each took."""
    took = []
    for _ in range(count):
        began = time.monotonic()
        conn = ldap.initialize(server.url)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
        try:
            found = conn.search_ext_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"], timeout=20)
        finally:
            conn.unbind_s()
        assert found and found[0][0] == ""
        took.append(time.monotonic() - began)
        time.sleep(0.3)
    return took


def in_background(work) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # reported by the caller's assertion
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def modify(server, dn: str, value: str) -> tuple[int, float]:
    ldif = f"dn: {dn}\nchangetype: modify\nreplace: description\ndescription: {value}\n"
    result = ldap_tool(
        "ldapmodify", "-x", "-D", ROOTDN, "-w", ROOTPW, "-H", server.url, input=ldif, timeout=60
    )
    return result.returncode, time.monotonic()


def test_accesslog_move_waits_on_its_writer_not_on_the_loop(tmp_path) -> None:
    conf = conf_for(tmp_path, "logops writes")
    server = start_pyldapd(tmp_path, conf)
    try:
        top = f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"
        added = ldap_tool("ldapadd", "-x", "-D", ROOTDN, "-w", ROOTPW, "-H", server.url, input=top)
        assert added.returncode == 0, added.stderr
        logged = len(read_log(server))
        holder = hold_write_lock(tmp_path / "log")
        try:
            released_at = time.monotonic() + HOLD
            writer, outcome = in_background(lambda: modify(server, SUFFIX, "logged while the log is locked"))
            time.sleep(1)  # the modify is committed; its move waits for the log database's lock
            took = root_dse_times(server)
            assert max(took) < 3, took  # answered while the move waits (on the loop: HOLD seconds each)
            assert not outcome, "the modify was answered before its log entry was stored"
        finally:
            holder.wait(HOLD + 30)
        writer.join(60)
        code, answered_at = outcome[0]
        assert code == 0
        assert answered_at >= released_at - 1  # answered once its log entry is stored, as before
        entries = read_log(server)
        assert len(entries) == logged + 1
        assert "description:= logged while the log is locked" in entries[-1]["reqmod"]
    finally:
        server.stop()


def test_checkpoint_waits_on_its_writer_not_on_the_loop(tmp_path) -> None:
    """A glue superior's syncprov moves its contextCSN with its subordinates' changes and checkpoints it onto its
    own suffix entry: a write to the superior's environment after a commit in the subordinate's."""
    conf = glue_conf(tmp_path / "db", overlays="overlay glue\noverlay syncprov\nsyncprov-checkpoint 1 1")
    server = start_pyldapd(tmp_path, conf)
    try:
        top = (
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n"
            f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: People\n"
        )
        added = ldap_tool("ldapadd", "-x", "-D", ROOTDN, "-w", ROOTPW, "-H", server.url, input=top)
        assert added.returncode == 0, added.stderr
        holder = hold_write_lock(tmp_path / "db" / "top")
        try:
            # committed in its own database; then the superior's checkpoint waits for the lock
            writer, outcome = in_background(lambda: modify(server, PEOPLE, "a subordinate's change"))
            time.sleep(1)
            took = root_dse_times(server)
            assert max(took) < 3, took
            writer.join(20)
            assert outcome and outcome[0][0] == 0, outcome  # answered without waiting for the checkpoint
            assert holder.poll() is None  # all of this while the lock was held
        finally:
            holder.wait(HOLD + 30)
        # the lock is free: the checkpoint carries the subordinate's change's CSN onto the superior
        change_csn = csn_of(server, PEOPLE, "entryCSN")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and change_csn not in csn_of(server, SUFFIX, "contextCSN", True):
            time.sleep(0.2)
        assert change_csn in csn_of(server, SUFFIX, "contextCSN", True)
    finally:
        server.stop()
    assert "checkpoint of contextCSN failed" not in server.log()


def csn_of(server, dn: str, attr: str, stored: bool = False) -> str:
    """An entry's CSN attribute as stored (contextCSN of a suffix entry is the checkpointed copy)."""
    result = ldap_tool("ldapsearch", "-x", "-D", ROOTDN, "-w", ROOTPW, "-H", server.url, "-LLL", "-s", "base",
                       "-b", dn, "(objectClass=*)", attr)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return " ".join(
        line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith(attr + ":")
    )
