"""The shared cn=config lock and operation log (server/configshare.py) between real forked processes: the lock
excludes another process and is freed by its death (kill -9), records one process appends are read by the other
in order, whole, at explicit offsets."""

from __future__ import annotations

import os
import signal
import time

from pyldapd.model.entry import Entry
from pyldapd.server.configshare import ConfigShare, decode_entry, encode_entry


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_lock_excludes_another_process_and_a_killed_holder_frees_it():
    share = ConfigShare.create()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child takes the lock, says so, and waits to be killed
        try:
            share.lock()
            os.write(ready_write, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_read, 1) == b"x"
        assert not share.try_lock()  # held by the other process
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pid = 0
        assert wait_for(share.try_lock)  # the kernel freed a dead process's POSIX lock
        assert share.try_lock()  # nested in this process
        assert not share.unlock()
        assert not share.unlock()  # nothing appended
        assert not share.held
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(ready_read)
        os.close(ready_write)
        share.close()


def test_records_appended_by_one_process_are_read_by_another_in_order():
    share = ConfigShare.create()
    entry = Entry("olcDatabase={1}mdb,cn=config")
    entry.put("olcrootpw", "olcRootPW", [b"\x00\xffsecret"])
    entry.put("olcsizelimit", "olcSizeLimit", [b"10"])
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for number in range(1, 51):
                share.lock()
                share.append({"op": "put", "number": number, "entries": [["x", encode_entry(entry)]]})
                share.unlock()
            code = 0
        finally:
            os._exit(code)
    try:
        seen: list[int] = []
        applied = (0, 0)
        deadline = time.monotonic() + 20
        while len(seen) < 50 and time.monotonic() < deadline:  # read while the other process appends
            for seq, end, record in share.read_after(*applied):
                applied = (seq, end)
                seen.append(record["number"])
                assert decode_entry(record["entries"][0][1]) == entry
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 0
        assert seen == list(range(1, 51))
        assert share.count() == 50
        share.lock()
        assert share.append({"op": "put", "entries": []})[0] == 51
        assert share.unlock()  # appended during the hold: the holder tells the others
        assert [r["op"] for _, _, r in share.read_after(*applied)] == ["put"]
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        share.close()
