"""slapd-style logging: one line per event, gated by OpenLDAP's log level bits.

`conn=N op=M SRCH base="..." scope=2 deref=0 filter="(uid=x)"` and `conn=N op=M SEARCH RESULT tag=101 err=0
nentries=1 text=` read as slapd's stats log does, so admins' grep habits carry over.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from pyldapd.config.model import LOG_LEVELS

STATS = LOG_LEVELS["stats"]
STATS2 = LOG_LEVELS["stats2"]
CONNS = LOG_LEVELS["conns"]
CONFIG = LOG_LEVELS["config"]
SYNC = LOG_LEVELS["sync"]
TRACE = LOG_LEVELS["trace"]
FILTER = LOG_LEVELS["filter"]


class Logger:
    def __init__(self, level: int, stream: TextIO | None = None) -> None:
        self.level = level
        self.stream = stream

    def enabled(self, bits: int) -> bool:
        return bool(self.level & bits)

    def log(self, bits: int, message: str) -> None:
        if self.level & bits:
            self.write(message)

    def write(self, message: str) -> None:
        stamp = time.time()
        (self.stream or sys.stderr).write(f"{int(stamp):x}.{int((stamp % 1) * 1e8):08x} {message}\n")

    def error(self, message: str) -> None:
        """Errors are always shown, whatever the level (slapd prints them at level 0 on stderr)."""
        self.write(message)
