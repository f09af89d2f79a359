"""model/ordered.py: slapd's X-ORDERED value rules (value.c), on their own."""

from __future__ import annotations

import pytest

from pyldapd.model import ordered


def same(a: bytes, b: bytes) -> bool:
    return a.lower() == b.lower()


def test_split_index_takes_numeric_strings_only() -> None:
    assert ordered.split_index(b"{12}abc") == (b"12", b"abc")
    assert ordered.split_index(b"{x}abc") == (None, b"{x}abc")
    assert ordered.split_index(b"{}abc") == (None, b"{}abc")
    assert ordered.split_index(b"{3") == (None, b"{3")
    assert ordered.split_index(b"abc") == (None, b"abc")


def test_sort_orders_by_number_and_renumbers_only_gaps() -> None:
    assert ordered.sort_values([b"{1}b", b"{0}a"], renumbered=True) == [b"{0}a", b"{1}b"]
    assert ordered.sort_values([b"{5}c", b"{3}a", b"{4}b"], renumbered=True) == [b"{0}a", b"{1}b", b"{2}c"]
    assert ordered.sort_values([b"{5}c", b"{3}a"], renumbered=False) == [b"{3}a", b"{5}c"]
    assert ordered.sort_values([b"x", b"y"], renumbered=True) == [b"{0}x", b"{1}y"]
    with pytest.raises(ordered.OrderError):
        ordered.sort_values([b"{1}x", b"y"], renumbered=True)


def test_add_inserts_at_the_number_or_appends() -> None:
    existing = [b"{1}read", b"{0}write"]
    assert ordered.add_values(existing, [b"{0}base", b"cn", b"{7}sn"]) == [
        b"{0}base", b"{1}write", b"{2}read", b"{3}cn", b"{4}sn"]  # fmt: skip
    assert ordered.add_values([], [b"{1}b", b"{0}a"]) == [b"{0}a", b"{1}b"]
    with pytest.raises(ordered.OrderError):
        ordered.add_values(existing, [b"{x}bad"])


def test_assertion_matching_uses_the_number_when_both_have_one() -> None:
    assert ordered.assertion_matches(b"{1}To *", b"{1}", same)
    assert not ordered.assertion_matches(b"{1}to *", b"{2}", same)
    assert ordered.assertion_matches(b"{1}to *", b"TO *", same)
    assert not ordered.assertion_matches(b"{1}to *", b"{3}to *", same)
    assert ordered.assertion_matches(b"{3}to *", b"{3}to *", same)
