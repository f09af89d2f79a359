"""server/log.py's logfile rotation (OpenLDAP 2.6's logfile-rotate) by age and by size, on real files."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from pyldapd.server.log import LogFile


def test_rotation_by_age_keeps_max_files(tmp_path: Path) -> None:
    path = tmp_path / "slapd.log"
    log = LogFile(str(path), keep=2, max_mbytes=0, max_hours=1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640 & ~_umask()
    for n in range(4):
        log.write(f"line {n}\n")
        log.opened = time.time() - 3600  # the file is an hour old: the next line starts a new one
    log.close()
    assert path.read_text() == "line 3\n"
    assert (tmp_path / "slapd.log.01").read_text() == "line 2\n"
    assert (tmp_path / "slapd.log.02").read_text() == "line 1\n"
    assert not (tmp_path / "slapd.log.03").exists()  # line 0 was dropped with the oldest file


def test_no_rotation_when_young_and_small(tmp_path: Path) -> None:
    path = tmp_path / "slapd.log"
    log = LogFile(str(path), keep=3, max_mbytes=1, max_hours=1)
    for n in range(100):
        log.write(f"line {n}\n")
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slapd.log"]
    reopened = LogFile(str(path), keep=3, max_mbytes=1, max_hours=1)  # appends, counting what is there
    assert reopened.size == path.stat().st_size
    reopened.close()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
