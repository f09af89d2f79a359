"""LDIF (RFC 2849): reading content and change records, writing entries the way slapcat does."""

from __future__ import annotations

import base64
import binascii
import os
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "LDIFError",
    "LDIFControl",
    "LDIFContent",
    "LDIFChange",
    "LDIFRecord",
    "parse_ldif",
    "format_entry",
    "format_line",
    "is_safe_string",
]

# slapcat's default output: lines of at most 78 characters (its ldif_wrap default of 76, plus 2)
DEFAULT_WRAP = 78


class LDIFError(ValueError):
    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


@dataclass
class LDIFControl:
    oid: str
    critical: bool = False
    value: bytes | None = None


@dataclass
class LDIFContent:
    dn: str
    attributes: list[tuple[str, list[bytes]]] = field(default_factory=list)
    line: int = 0


@dataclass
class LDIFChange:
    """A change record. `changetype` is 'add', 'delete', 'modify', 'modrdn' or 'moddn' (as written, lowercased).

    add: `attributes`; modify: `modifications` as (operation, attribute, values) with operation 'add',
    'delete', 'replace' or 'increment'; modrdn/moddn: `newrdn`, `deleteoldrdn`, `newsuperior`.
    """

    dn: str
    changetype: str
    attributes: list[tuple[str, list[bytes]]] = field(default_factory=list)
    modifications: list[tuple[str, str, list[bytes]]] = field(default_factory=list)
    newrdn: str | None = None
    deleteoldrdn: bool = False
    newsuperior: str | None = None
    controls: list[LDIFControl] = field(default_factory=list)
    line: int = 0


LDIFRecord = LDIFContent | LDIFChange

_MOD_OPS = ("add", "delete", "replace", "increment")
_MOD_OPS_BYTES = tuple(op.encode() for op in _MOD_OPS)


def _logical_lines(data: bytes, first_line: int = 1) -> Iterator[tuple[int, bytes | None]]:
    """(line number, unfolded line) pairs; None marks a record separator (blank line). Comments dropped."""
    current: list[bytes] | None = None
    start = 0
    in_comment = False
    for number, raw in enumerate(data.split(b"\n"), first_line):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw.startswith(b" "):
            if in_comment:
                continue
            if current is None:
                raise LDIFError("continuation line without a line to continue", number)
            current.append(raw[1:])
            continue
        if current is not None:
            yield start, b"".join(current)
            current = None
        in_comment = False
        if not raw.strip():
            yield number, None
        elif raw.startswith(b"#"):
            in_comment = True
        else:
            current = [raw]
            start = number
    if current is not None:
        yield start, b"".join(current)


def _split_line(line: bytes, number: int, allow_urls: bool) -> tuple[str, bytes]:
    """'name: value' / 'name:: base64' / 'name:< url' -> (name, value bytes)."""
    colon = line.find(b":")
    if colon <= 0:
        raise LDIFError(f"missing ':' after attribute description in {line[:40]!r}", number)
    try:
        name = line[:colon].decode("ascii").strip()
    except UnicodeDecodeError:
        raise LDIFError("attribute description is not ASCII", number) from None
    if not name:
        raise LDIFError("empty attribute description", number)
    rest = line[colon + 1 :]
    if rest.startswith(b":"):
        try:
            return name, base64.b64decode(rest[1:].strip(), validate=True)
        except (binascii.Error, ValueError):
            raise LDIFError(f"invalid base64 value for {name}", number) from None
    if rest.startswith(b"<"):
        url = rest[1:].strip().decode("utf-8", "replace")
        return name, _read_url(url, number, allow_urls)
    return name, rest.lstrip(b" ")


def _read_url(url: str, number: int, allow_urls: bool) -> bytes:
    if not allow_urls:
        raise LDIFError(f"URL values are not allowed here: {url}", number)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme.lower() != "file":
        raise LDIFError(f"unsupported URL scheme in {url} (only file:// URLs)", number)
    path = urllib.request.url2pathname(parsed.path)
    try:
        with open(os.path.normpath(path), "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise LDIFError(f"cannot read {url}: {exc.strerror}", number) from None


def _text(value: bytes, what: str, number: int) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise LDIFError(f"{what} is not UTF-8", number) from None


def _group(pairs: Iterable[tuple[str, bytes]]) -> list[tuple[str, list[bytes]]]:
    """Group values by attribute description (case-insensitively), in order of first appearance."""
    out: list[tuple[str, list[bytes]]] = []
    index: dict[str, int] = {}
    for name, value in pairs:
        k = index.get(name.lower())
        if k is None:
            index[name.lower()] = len(out)
            out.append((name, [value]))
        else:
            out[k][1].append(value)
    return out


def _parse_control(value: bytes, number: int) -> LDIFControl:
    # control: oid [SPACE ("true" / "false")] [value-spec]  where value-spec is ': v' / ':: b64' / ':< url'
    text = value
    value_part: bytes | None = None
    k = text.find(b":")
    if k >= 0:
        value_part = text[k:]
        text = text[:k]
    fields = text.decode("ascii", "replace").split()
    if not fields:
        raise LDIFError("control without an OID", number)
    oid = fields[0]
    critical = False
    if len(fields) > 1:
        flag = fields[1].lower()
        if flag not in ("true", "false") or len(fields) > 2:
            raise LDIFError(f"invalid control criticality {fields[1]!r}", number)
        critical = flag == "true"
    cvalue: bytes | None = None
    if value_part is not None:
        _, cvalue = _split_line(b"x" + value_part, number, allow_urls=True)
    return LDIFControl(oid, critical, cvalue)


def parse_ldif(
    text: str | bytes,
    *,
    allow_urls: bool = True,
    first_line: int = 1,
    header: bool = True,
    implicit_modify: bool = False,
) -> Iterator[LDIFRecord]:
    """Read LDIF content or change records. Raises LDIFError (with its line number) on malformed input.

    A part of a longer LDIF cut at a blank line reads the same with the number of its first line and
    header=False (only the start of a file may hold the "version:" line).
    implicit_modify: a record without a changetype whose first line is a modify operation (`add:`, `delete:`,
    `replace:`, `increment:`) is a modify record, as ldapmodify and slapmodify read one; other records without a
    changetype stay content records.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    if _needs_line_reader(data):
        return _parse_lines(data, allow_urls, first_line, header, implicit_modify)
    return _parse_plain(data, allow_urls, first_line, header, implicit_modify)


def _parse_lines(data: bytes, allow_urls: bool, first_line: int, header: bool,
                 implicit_modify: bool = False) -> Iterator[LDIFRecord]:  # fmt: skip
    record: list[tuple[int, bytes]] = []
    first = header
    for number, line in _logical_lines(data, first_line):
        if line is None:
            if record:
                yield from _records(record, allow_urls, implicit_modify)
                record = []
            continue
        if first and not record:
            first = False
            if line.lower().startswith(b"version:"):
                version = line[8:].strip()
                if version != b"1":
                    raise LDIFError(f"unsupported LDIF version {version.decode('ascii', 'replace')}", number)
                continue
        record.append((number, line))
    if record:
        yield from _records(record, allow_urls, implicit_modify)


def _records(
    lines: list[tuple[int, bytes]], allow_urls: bool, implicit_modify: bool = False
) -> Iterator[LDIFRecord]:
    """One record, after the records of the LDIF files its leading `include: file://...` lines name: slapd's LDIF
    reader takes those in place before a record starts (ldif_read_record), one line or several in a row, as in
    the cn=config LDIF of OpenLDAP's test063 and test083."""
    while lines and lines[0][1][:8].lower() == b"include:":
        number, first = lines.pop(0)
        url = first[8:].strip().decode("utf-8", "replace")
        if not url.lower().startswith("file:"):  # slapd opens a URL (ldif_open_url), never a bare path
            raise LDIFError(f"ldif_read_record: include {url} failed", number)
        try:
            included = _read_url(url, number, allow_urls)
        except LDIFError as exc:
            raise LDIFError(f"include: {str(exc).removeprefix(f'line {number}: ')}", number) from None
        try:
            yield from parse_ldif(included, allow_urls=allow_urls, implicit_modify=implicit_modify)
        except RecursionError:  # a file that includes itself, directly or not
            raise LDIFError(f"include {url}: nested too deeply", number) from None
    if lines:
        yield _record(lines, allow_urls, implicit_modify)


_LINE_READER_MARKS = (b"\n ", b"\n#", b"\n\t", b"\n\v", b"\n\f", b"\r")


def _needs_line_reader(data: bytes) -> bool:
    """What only the line-by-line reader handles: folded lines, comments, CR LF, lines of blanks (separators).
    (Six substring scans are much faster than one regular expression over a large chunk.)"""
    return data[:1] in (b" ", b"#", b"\t", b"\v", b"\f") or any(mark in data for mark in _LINE_READER_MARKS)


def _parse_plain(data: bytes, allow_urls: bool, line: int, header: bool,
                 implicit_modify: bool = False) -> Iterator[LDIFRecord]:  # fmt: skip
    """parse_ldif for LDIF without folded lines, comments or CRs (what slapcat and most tools write): records
    are the text between blank lines, lines are split once. Anything unusual goes to `_record`."""
    for block in data.split(b"\n\n"):
        text = block.lstrip(b"\n")
        start = line + len(block) - len(text)  # each leading newline is one more blank line
        line += block.count(b"\n") + 2
        if not text:
            continue
        lines = text.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        if header:
            header = False
            if lines[0][:8].lower() == b"version:":
                version = lines[0][8:].strip()
                if version != b"1":
                    raise LDIFError(f"unsupported LDIF version {version.decode('ascii', 'replace')}", start)
                del lines[0]
                start += 1
                if not lines:
                    continue
        if lines[0][:8].lower() == b"include:":
            yield from _records(list(enumerate(lines, start)), allow_urls, implicit_modify)
            continue
        if (
            implicit_modify
            and len(lines) > 1
            and lines[1].partition(b":")[0].strip().lower() in _MOD_OPS_BYTES
        ):
            yield _record(list(enumerate(lines, start)), allow_urls, implicit_modify)
            continue
        yield _plain_record(lines, start, allow_urls)


def _plain_record(lines: list[bytes], start: int, allow_urls: bool) -> LDIFRecord:
    name, colon, value = lines[0].partition(b":")
    if name.lower() == b"dn" and value[:1] not in (b":", b"<"):
        pairs: list[tuple[str, list[bytes]]] = []
        index: dict[str, list[bytes]] = {}
        for raw in lines[1:]:
            name, colon, value = raw.partition(b":")
            if not colon or value[:1] in (b":", b"<") or not name.isascii():
                break
            text = name.decode("ascii").strip()
            low = text.lower()
            if not text or low in ("dn", "changetype", "control"):
                break
            values = index.get(low)
            if values is None:
                index[low] = values = []
                pairs.append((text, values))
            values.append(value.lstrip(b" "))
        else:
            try:
                dn = lines[0][3:].lstrip(b" ").decode("utf-8")
            except UnicodeDecodeError:
                raise LDIFError("DN is not UTF-8", start) from None
            return LDIFContent(dn, pairs, start)
    return _record(list(enumerate(lines, start)), allow_urls)


def _record(lines: list[tuple[int, bytes]], allow_urls: bool, implicit_modify: bool = False) -> LDIFRecord:
    number, first = lines[0]
    name, value = _split_line(first, number, allow_urls)
    if name.lower() != "dn":
        raise LDIFError(f"record must start with 'dn:', found {name!r}", number)
    dn = _text(value, "DN", number)
    start = number
    pos = 1
    controls: list[LDIFControl] = []
    changetype: str | None = None
    while pos < len(lines):
        number, line = lines[pos]
        lower = line[:11].lower()
        if lower.startswith(b"control:"):
            controls.append(_parse_control(line[8:].strip(), number))
            pos += 1
            continue
        if lower.startswith(b"changetype:"):
            _, ct = _split_line(line, number, allow_urls)
            changetype = _text(ct, "changetype", number).strip().lower()
            pos += 1
        break
    if changetype is None and implicit_modify and pos < len(lines):
        if lines[pos][1].partition(b":")[0].strip().lower() in _MOD_OPS_BYTES:
            changetype = "modify"
    if changetype is None:
        if controls:
            raise LDIFError("control lines are only allowed in change records", lines[1][0])
        pairs = [_split_line(line, n, allow_urls) for n, line in lines[pos:]]
        for (n, _), (name, _) in zip(lines[pos:], pairs, strict=True):
            if name.lower() in ("dn", "changetype", "control"):
                raise LDIFError(f"unexpected {name!r} line", n)
        return LDIFContent(dn, _group(pairs), start)
    change = LDIFChange(dn, changetype, controls=controls, line=start)
    rest = lines[pos:]
    if changetype == "add":
        change.attributes = _group(_split_line(line, n, allow_urls) for n, line in rest)
        if not change.attributes:
            raise LDIFError("add record without attributes", start)
    elif changetype == "delete":
        if rest:
            raise LDIFError("delete record with extra lines", rest[0][0])
    elif changetype in ("modrdn", "moddn"):
        fields: dict[str, tuple[int, bytes]] = {}
        for n, line in rest:
            key, val = _split_line(line, n, allow_urls)
            key = key.lower()
            if key not in ("newrdn", "deleteoldrdn", "newsuperior") or key in fields:
                raise LDIFError(f"unexpected {key!r} line in {changetype} record", n)
            fields[key] = (n, val)
        if "newrdn" not in fields:
            raise LDIFError(f"{changetype} record without newrdn", start)
        change.newrdn = _text(fields["newrdn"][1], "newrdn", fields["newrdn"][0])
        if "deleteoldrdn" in fields:
            n, flag = fields["deleteoldrdn"]
            if flag.strip() not in (b"0", b"1"):
                raise LDIFError("deleteoldrdn must be 0 or 1", n)
            change.deleteoldrdn = flag.strip() == b"1"
        elif changetype == "modrdn":
            raise LDIFError("modrdn record without deleteoldrdn", start)
        if "newsuperior" in fields:
            change.newsuperior = _text(fields["newsuperior"][1], "newsuperior", fields["newsuperior"][0])
    elif changetype == "modify":
        i = 0
        while i < len(rest):
            n, line = rest[i]
            op, attr_b = _split_line(line, n, allow_urls)
            op = op.lower()
            if op not in _MOD_OPS:
                raise LDIFError(f"unknown modify operation {op!r}", n)
            attr = _text(attr_b, "attribute name", n).strip()
            if not attr:
                raise LDIFError(f"{op} without an attribute name", n)
            values: list[bytes] = []
            i += 1
            while i < len(rest) and rest[i][1].rstrip() != b"-":
                vn, vline = rest[i]
                name, val = _split_line(vline, vn, allow_urls)
                if name.lower() != attr.lower():
                    raise LDIFError(f"value for {name!r} inside the {op} of {attr!r}", vn)
                values.append(val)
                i += 1
            i += 1  # the '-' separator (optional at the very end)
            change.modifications.append((op, attr, values))
    else:
        raise LDIFError(f"unknown changetype {changetype!r}", lines[pos - 1][0])
    return change


# --- writing -----------------------------------------------------------------------------------------------------

_SAFE_INIT_EXCLUDED = frozenset(b"\n\r :<\x00")
_SAFE_EXCLUDED = frozenset(b"\n\r\x00")


def is_safe_string(value: bytes) -> bool:
    """RFC 2849 SAFE-STRING (ASCII, no NUL/CR/LF, not starting with space, ':' or '<') not ending with space."""
    if not value:
        return True
    if not value.isascii() or value[0] in _SAFE_INIT_EXCLUDED or value[-1] == 0x20:
        return False
    return not any(b in _SAFE_EXCLUDED for b in value)


def _fold(line: str, wrap: int) -> str:
    if wrap <= 1 or len(line) <= wrap:
        return line
    parts = [line[:wrap]]
    step = wrap - 1
    for k in range(wrap, len(line), step):
        parts.append(" " + line[k : k + step])
    return "\n".join(parts)


def format_line(name: str, value: bytes, wrap: int = DEFAULT_WRAP) -> str:
    """One 'name: value' line (base64 'name:: ...' when needed), folded to `wrap` characters (0: no folding)."""
    if is_safe_string(value):
        line = f"{name}: {value.decode('ascii')}"
    else:
        line = f"{name}:: {base64.b64encode(value).decode('ascii')}"
    return _fold(line, wrap) if wrap else line


def format_entry(dn: str, attributes: Iterable[tuple[str, Sequence[bytes]]], wrap: int = DEFAULT_WRAP) -> str:
    """An LDIF content record as slapcat writes it, ending with a blank line.

    Values that are not SAFE-STRINGs (non-ASCII, leading space/':'/'<', trailing space, control line breaks) are
    base64-encoded. Lines are folded at `wrap` characters (slapcat's default output is 78, `-o ldif_wrap=N`
    gives N); wrap=0 disables folding.
    """
    lines = [format_line("dn", dn.encode("utf-8"), wrap)]
    for name, values in attributes:
        for value in values:
            lines.append(format_line(name, value, wrap))
    return "\n".join(lines) + "\n\n"
