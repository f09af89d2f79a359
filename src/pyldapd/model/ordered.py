"""X-ORDERED attribute values as slapd keeps them in any database (its servers/slapd/value.c and mods.c).

An attribute type with `X-ORDERED 'VALUES'` (olcAccess, olcSyncrepl, authzTo...) numbers its values `{0}`, `{1}`...
In a data database slapd stores an added entry's values as written, but a modify renumbers them: an added value
`{k}v` is inserted at position k (appended when unnumbered or beyond the end), a delete may name a value by its
number alone (`{1}`), and after either every value is numbered from 0 in order. Matching looks at the number only
when both sides have one. Pure functions over bytes; the server decides when they apply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = [
    "OrderError",
    "add_values",
    "assertion_matches",
    "body",
    "ordered_kind",
    "renumber",
    "sort_values",
    "split_index",
]


class OrderError(ValueError):
    """Values slapd cannot order: some numbered and some not, or a `{` without its number."""


def ordered_kind(at) -> str | None:
    """ "VALUES" or "SIBLINGS" for an X-ORDERED attribute type, else None."""
    for name, values in getattr(at, "extensions", ()):
        if name.upper() == "X-ORDERED" and values:
            kind = values[0].upper()
            if kind in ("VALUES", "SIBLINGS"):
                return kind
    return None


def split_index(value: bytes) -> tuple[bytes | None, bytes]:
    """(`n`, rest) when the value starts with `{n}` and n is a numeric string (digits and spaces), else
    (None, value): the part slapd's ordered_value_* wrappers skip before the syntax and matching rule see it."""
    if value[:1] != b"{":
        return None, value
    end = value.find(b"}")
    if end < 0:
        return None, value
    index = value[1:end]
    if not index or any(c not in b"0123456789 " for c in index):
        return None, value
    return index, value[end + 1 :]


def body(value: bytes) -> bytes:
    return split_index(value)[1]


def renumber(values: Sequence[bytes]) -> list[bytes]:
    """slapd's ordered_value_renumber: `{i}` for the i-th value, whatever `{...}` it had before."""
    out = []
    for i, value in enumerate(values):
        rest = value
        if value[:1] == b"{" and b"}" in value:
            rest = value[value.index(b"}") + 1 :]
        out.append(b"{%d}" % i + rest)
    return out


def _leading_number(value: bytes) -> int | None:
    """strtol(value + 1) as slapd reads `{n}`: the number, or None when no `}` follows the digits."""
    text = value[1:]
    digits = len(text) - len(text.lstrip(b" \t"))
    start = digits
    if text[start : start + 1] in (b"-", b"+"):
        start += 1
    end = start
    while end < len(text) and text[end : end + 1].isdigit():
        end += 1
    if end == start or text[end : end + 1] != b"}":
        return None
    return int(text[digits:end])


def sort_values(values: Sequence[bytes], *, renumbered: bool) -> list[bytes]:
    """slapd's ordered_value_sort: numbered values in the order of their numbers (stable), renumbered from 0 when
    asked and the numbers are not already 0..n-1; unnumbered ones numbered as they come. OrderError when some
    are numbered and some not."""
    numbered = [v[:1] == b"{" for v in values]
    if any(numbered) and not all(numbered):
        raise OrderError("some values are numbered, some are not")
    if not values:
        return []
    if not numbered[0]:
        return renumber(values) if renumbered else list(values)
    keyed = []
    for value in values:
        number = _leading_number(value)
        if number is None:
            raise OrderError(f"bad value number in {value[:20]!r}")
        keyed.append((number, value))
    keyed.sort(key=lambda item: item[0])  # stable, as slapd's insertion sort
    ordered = [v for _, v in keyed]
    if renumbered and (keyed[0][0] != 0 or keyed[-1][0] != len(keyed) - 1):
        return renumber(ordered)
    return ordered


def add_values(existing: Sequence[bytes], new: Sequence[bytes]) -> list[bytes]:
    """slapd's ordered_value_add: the existing values put in order (when they can be), each new `{k}v` inserted
    at k (appended when unnumbered, negative or past the end), then all renumbered. OrderError when a new value's
    `{` is not followed by a number and `}` (slapd: merge error)."""
    try:
        current = sort_values(existing, renumbered=False)
    except OrderError:
        current = list(existing)  # slapd goes on with them as they are
    for value in new:
        position = None
        if value[:1] == b"{":
            position = _leading_number(value)
            if position is None:
                raise OrderError(f"bad value number in {value[:20]!r}")
            if position > len(current) or position < 0:
                position = None
        if position is None:
            current.append(value)
        else:
            current.insert(position, value)
    return renumber(current)


def assertion_matches(stored: bytes, assertion: bytes, same: Callable[[bytes, bytes], bool]) -> bool:
    """slapd's ordered_value_match for an asserted value (a modify's value to delete or to add): when both carry a
    number the numbers must be equal (as strings), and an assertion of a number alone matches on it; the rest is
    compared by `same` (the type's equality)."""
    stored_index, stored_body = split_index(stored)
    asserted_index, asserted_body = split_index(assertion)
    if stored_index is not None and asserted_index is not None:
        if stored_index != asserted_index:
            return False
        if not asserted_body:
            return True
    return same(stored_body, asserted_body)
