"""Change sequence numbers and sync cookies, in OpenLDAP's formats.

A CSN is `YYYYmmddHHMMSS.uuuuuuZ#cccccc#sss#mmmmmm`: UTC time to the microsecond, a change counter (6 hex),
the originating server ID (3 hex) and a modification number (6 hex). All fields are fixed width, so CSNs compare
as plain strings; `CSN` tuples order the same way.

A cookie is `rid=NNN[,sid=SSS][,csn=CSN[;CSN...]][,delcsn=CSN]` (OpenLDAP's ldapsync.c format).
"""

from __future__ import annotations

import calendar
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "CSN",
    "parse_csn",
    "is_csn",
    "normalize_csn",
    "format_csn",
    "sid_of",
    "CSNGenerator",
    "CSNSet",
    "Cookie",
    "parse_cookie",
    "format_cookie",
]

MAX_SID = 0xFFF
_MAX_COUNT = 0xFFFFFF

_CSN_RE = re.compile(
    r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})\.(\d{6})Z#([0-9a-fA-F]{6})#([0-9a-fA-F]{3})#([0-9a-fA-F]{6})\Z"
)
# OpenLDAP 2.3 format: YYYYmmddHHMMSSZ#cccccc#ss#mmmmmm (32 characters)
_CSN23_RE = re.compile(r"(\d{14})Z#([0-9a-fA-F]{6})#([0-9a-fA-F]{2})#([0-9a-fA-F]{6})\Z")


_last_second: tuple[int, str] = (-1, "")  # (Unix second, its YYYYmmddHHMMSS) of the CSN formatted last


class CSN(NamedTuple):
    """A parsed CSN. Tuple order (time, count, sid, mod) is the string order."""

    time_us: int  # microseconds since the Unix epoch, UTC
    count: int
    sid: int
    mod: int = 0

    def format(self) -> str:
        global _last_second
        seconds, micro = divmod(self.time_us, 1_000_000)
        last_seconds, prefix = _last_second
        if seconds != last_seconds:
            t = time.gmtime(seconds)
            prefix = (
                f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}"
            )
            _last_second = (seconds, prefix)  # CSNs come in bursts within one second
        return f"{prefix}.{micro:06d}Z#{self.count:06x}#{self.sid:03x}#{self.mod:06x}"

    def __str__(self) -> str:
        return self.format()


def format_csn(time_us: int, count: int = 0, sid: int = 0, mod: int = 0) -> str:
    return CSN(time_us, count, sid, mod).format()


def _time_us(year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int) -> int:
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise ValueError("invalid CSN: bad date")
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError("invalid CSN: bad time")
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) * 1_000_000 + micro


def parse_csn(s: str | bytes) -> CSN:
    """Parse a CSN (the 40-character form, or the 32-character OpenLDAP 2.3 form); ValueError if invalid."""
    if isinstance(s, bytes):
        s = s.decode("ascii", "replace")
    m = _CSN_RE.match(s)
    if m is not None:
        y, mo, d, h, mi, se, us = (int(g) for g in m.groups()[:7])
        return CSN(_time_us(y, mo, d, h, mi, se, us), int(m[8], 16), int(m[9], 16), int(m[10], 16))
    m = _CSN23_RE.match(s)
    if m is not None:
        ts = m[1]
        parts = (int(ts[0:4]), int(ts[4:6]), int(ts[6:8]), int(ts[8:10]), int(ts[10:12]), int(ts[12:14]), 0)
        return CSN(_time_us(*parts), int(m[2], 16), int(m[3], 16), int(m[4], 16))
    raise ValueError(f"invalid CSN: {s!r}")


def is_csn(s: str | bytes) -> bool:
    try:
        parse_csn(s)
    except ValueError:
        return False
    return True


def normalize_csn(s: str | bytes) -> str:
    """The canonical 40-character form (lowercase hex; 2.3-format CSNs converted), as slapd's csnNormalize."""
    if isinstance(s, bytes):
        s = s.decode("ascii", "replace")
    if len(s) == 40 and _CSN_RE.match(s):
        return s[:29] + s[29:].lower() if not s.islower() else s
    return parse_csn(s).format()


def sid_of(csn: str | bytes) -> int:
    """The server ID of a CSN (third '#' field, hex); ValueError if there is none."""
    if isinstance(csn, bytes):
        csn = csn.decode("ascii", "replace")
    parts = csn.split("#")
    if len(parts) < 3:
        raise ValueError(f"invalid CSN: {csn!r}")
    try:
        sid = int(parts[2], 16)
    except ValueError:
        raise ValueError(f"invalid CSN: {csn!r}") from None
    if not 0 <= sid <= MAX_SID:
        raise ValueError(f"invalid CSN: {csn!r}")
    return sid


class CSNGenerator:
    """Issues strictly increasing CSNs for one server.

    When the clock repeats a microsecond or steps back, the last time is kept and the counter grows (slapd
    prints the older clock time instead, which can sort lower; we never do). `observe()` takes CSNs received
    from elsewhere so that no CSN issued afterwards is lower than them. Thread-safe.
    """

    def __init__(
        self, server_id: int, clock: Callable[[], float] = time.time, *, lane: int = 0, lanes: int = 1
    ) -> None:
        """lane/lanes: generators that share a server ID at the same time (processes of one bulk load) stay
        apart by using only the counters equal to their lane modulo lanes."""
        if not 0 <= server_id <= MAX_SID:
            raise ValueError(f"server ID out of range 0..4095: {server_id}")
        if not 0 <= lane < lanes:
            raise ValueError(f"lane {lane} out of range 0..{lanes - 1}")
        self.server_id = server_id
        self._clock = clock
        self._lock = threading.Lock()
        self._time_us = 0
        self._count = lane
        self._lane = lane
        self._lanes = lanes

    def next(self) -> str:
        return self.next_csn().format()

    def next_csn(self) -> CSN:
        now = int(self._clock() * 1_000_000)
        with self._lock:
            if now > self._time_us:
                self._time_us = now
                self._count = self._lane
            elif self._count + self._lanes <= _MAX_COUNT:
                self._count += self._lanes
            else:
                self._time_us += 1
                self._count = self._lane
            return CSN(self._time_us, self._count, self.server_id, 0)

    def observe(self, csn: str | bytes | CSN) -> None:
        """Note a CSN seen elsewhere: later CSNs from this generator are greater."""
        c = csn if isinstance(csn, CSN) else parse_csn(csn)
        with self._lock:
            # next() then issues (time, count + 1) at least, which sorts above the observed CSN whatever its sid
            if (c.time_us, c.count) > (self._time_us, self._count):
                # the next CSN is above it, in this generator's lane
                self._time_us = c.time_us
                self._count = c.count - (c.count - self._lane) % self._lanes


class CSNSet(Mapping[int, str]):
    """A CSN vector: one CSN per server ID (a contextCSN value set, or a cookie's csn= list)."""

    __slots__ = ("_csns",)

    def __init__(self, csns: Iterable[str] | Mapping[int, str] | None = None) -> None:
        self._csns: dict[int, str] = {}
        if csns is not None:
            self.merge(csns.values() if isinstance(csns, Mapping) else csns)

    @classmethod
    def from_values(cls, values: Iterable[str | bytes]) -> CSNSet:
        """From contextCSN attribute values; invalid values are skipped."""
        out = cls()
        for v in values:
            try:
                out.merge([normalize_csn(v)])
            except ValueError:
                continue
        return out

    def __getitem__(self, sid: int) -> str:
        return self._csns[sid]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._csns))

    def __len__(self) -> int:
        return len(self._csns)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CSNSet):
            return self._csns == other._csns
        if isinstance(other, Mapping):
            return self._csns == dict(other)
        return NotImplemented

    def __hash__(self) -> int:  # mutable
        raise TypeError("CSNSet is unhashable")

    def __repr__(self) -> str:
        return f"CSNSet({self.to_values()!r})"

    def update_csn(self, csn: str) -> bool:
        """Keep `csn` if it is newer than the one held for its server ID; True if the set changed."""
        sid = sid_of(csn)
        old = self._csns.get(sid)
        if old is None or csn > old:
            self._csns[sid] = csn
            return True
        return False

    def merge(self, other: Iterable[str] | Mapping[int, str]) -> bool:
        """Per-server-ID maximum with `other` (CSNs, or a sid -> CSN mapping); True if anything changed."""
        values = other.values() if isinstance(other, Mapping) else other
        changed = False
        for csn in values:
            changed = self.update_csn(csn) or changed
        return changed

    def to_values(self) -> list[str]:
        """The CSNs sorted by server ID (slapd's order for contextCSN values and cookies)."""
        return [self._csns[sid] for sid in sorted(self._csns)]

    def max(self) -> str | None:
        return max(self._csns.values()) if self._csns else None

    def copy(self) -> CSNSet:
        out = CSNSet()
        out._csns = dict(self._csns)
        return out

    def as_dict(self) -> dict[int, str]:
        return dict(self._csns)


@dataclass
class Cookie:
    rid: int | None = None
    sid: int | None = None
    csns: dict[int, str] = field(default_factory=dict)
    delcsn: str | None = None

    def format(self) -> str:
        return format_cookie(self.rid, self.sid, self.csns, self.delcsn)

    def csn_set(self) -> CSNSet:
        return CSNSet(self.csns)


def parse_cookie(s: str | bytes) -> Cookie:
    """Parse a sync cookie. Fields in any order, unknown ones ignored; a CSN that fails validation ends the
    csn= list (as slapd does). ValueError for a bad rid= or sid= or a cookie of 4 characters or fewer."""
    if isinstance(s, bytes):
        s = s.decode("utf-8", "replace")
    if len(s) <= 4:
        raise ValueError(f"invalid cookie: {s!r}")
    cookie = Cookie()
    for part in s.split(","):
        name, eq, value = part.partition("=")
        if not eq:
            continue
        name = name.strip().lower()
        if name == "rid":
            if not value.isdigit() or not value.isascii() or int(value) > 999:
                raise ValueError(f"invalid cookie rid: {value!r}")
            cookie.rid = int(value)
        elif name == "sid":
            try:
                sid = int(value, 16)
            except ValueError:
                raise ValueError(f"invalid cookie sid: {value!r}") from None
            if not 0 <= sid <= MAX_SID or not value.isalnum():
                raise ValueError(f"invalid cookie sid: {value!r}")
            cookie.sid = sid
        elif name == "csn":
            for item in value.split(";"):
                try:
                    csn = normalize_csn(item)
                except ValueError:
                    break
                sid = sid_of(csn)
                old = cookie.csns.get(sid)
                if old is None or csn > old:
                    cookie.csns[sid] = csn
        elif name == "delcsn":
            try:
                cookie.delcsn = normalize_csn(value)
            except ValueError:
                pass
    cookie.csns = dict(sorted(cookie.csns.items()))
    return cookie


def format_cookie(
    rid: int | None,
    sid: int | None = None,
    csns: Mapping[int, str] | Iterable[str] | None = None,
    delcsn: str | None = None,
) -> str:
    """`rid=NNN[,sid=SSS][,csn=a;b][,delcsn=c]` with CSNs sorted by server ID (pass sid=None to omit it, as
    slapd does for server ID 0 on provider cookies)."""
    parts: list[str] = []
    if rid is not None:
        parts.append(f"rid={rid:03d}")
    if sid is not None:
        parts.append(f"sid={sid:03x}")
    if csns:
        values = CSNSet(csns).to_values()
        if values:
            parts.append("csn=" + ";".join(values))
    if delcsn:
        parts.append(f"delcsn={delcsn}")
    return ",".join(parts)
