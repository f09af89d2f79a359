"""CSNs, CSN sets and sync cookies (pyldapd.model.csn)."""

from __future__ import annotations

import pytest

from pyldapd.model.csn import (
    CSN,
    Cookie,
    CSNGenerator,
    CSNSet,
    format_cookie,
    normalize_csn,
    parse_cookie,
    parse_csn,
    sid_of,
)

A = "20261122155918.338377Z#000000#001#000000"
B = "20261122155916.486514Z#000000#002#000000"


def test_parse_and_format() -> None:
    c = parse_csn(A)
    assert c.count == 0 and c.sid == 1 and c.mod == 0
    assert c.format() == A
    assert (
        str(parse_csn("20240101120000.123456Z#00000a#fff#000001"))
        == "20240101120000.123456Z#00000a#fff#000001"
    )
    assert parse_csn(b"20240101120000.123456Z#000000#001#000000").sid == 1


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x",
        A[:-1],
        A + "0",
        "20241301120000.000000Z#000000#001#000000",
        "20240101120000.000000Z#00000g#001#000000",
        "20240230120000.000000Z#000000#001#000000",
        "20240101120000Z#000000#001#000000#",
    ],
)
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_csn(bad)


def test_normalize() -> None:
    # as slapd's csnNormalize: only the sid and mod fields are lower-cased
    assert (
        normalize_csn("20240101120000.000000Z#00000A#00F#00000B")
        == "20240101120000.000000Z#00000A#00f#00000b"
    )
    # OpenLDAP 2.3 format
    assert normalize_csn("20240101120000Z#000001#01#000000") == "20240101120000.000000Z#000001#001#000000"


def test_ordering_is_string_ordering() -> None:
    values = [
        A,
        B,
        "20261122155918.338377Z#000001#000#000000",
        "20261122155918.338377Z#000000#002#000000",
        "20261122155918.338378Z#000000#000#000000",
        "19991231235959.999999Z#ffffff#fff#ffffff",
    ]
    assert sorted(values) == [v.format() for v in sorted(parse_csn(v) for v in values)]


def test_sid_of() -> None:
    assert sid_of(A) == 1
    assert sid_of(B) == 2
    assert sid_of("20240101120000.000000Z#000000#fff#000000") == 4095
    with pytest.raises(ValueError):
        sid_of("nonsense")


class SteppingClock:
    def __init__(self, times: list[float]) -> None:
        self.times = times
        self.i = 0

    def __call__(self) -> float:
        t = self.times[min(self.i, len(self.times) - 1)]
        self.i += 1
        return t


def test_generator_monotonic_with_clock_going_back() -> None:
    clock = SteppingClock([1000.0, 1000.0, 999.0, 998.5, 1000.000001, 1000.000001, 2000.0, 1.0])
    gen = CSNGenerator(3, clock)
    issued = [gen.next() for _ in range(8)]
    assert issued == sorted(issued)
    assert len(set(issued)) == len(issued)
    assert all(sid_of(c) == 3 for c in issued)
    assert parse_csn(issued[1]).count == 1  # same microsecond: the counter grows
    assert parse_csn(issued[2]).time_us == parse_csn(issued[0]).time_us  # clock went back: time kept
    assert parse_csn(issued[6]).count == 0


def test_generator_observe() -> None:
    gen = CSNGenerator(1, lambda: 1000.0)
    first = gen.next()
    seen = "20991231000000.000000Z#000005#002#000000"
    gen.observe(seen)
    after = gen.next()
    assert after > seen > first
    assert sid_of(after) == 1
    gen.observe("19700101000000.000000Z#000000#000#000000")  # older: no effect
    assert gen.next() > after


def test_generator_rejects_bad_sid() -> None:
    with pytest.raises(ValueError):
        CSNGenerator(4096)


def test_csn_set() -> None:
    s = CSNSet([A])
    assert s.merge([B]) is True
    assert s.merge([B]) is False
    older = "20200101000000.000000Z#000000#001#000000"
    assert s.merge([older]) is False
    newer = "20301122155918.338377Z#000000#001#000000"
    assert s.merge({1: newer}) is True
    assert s.to_values() == [newer, B]
    assert s[1] == newer and list(s) == [1, 2]
    assert CSNSet.from_values([B.encode(), b"garbage", A.encode()]).to_values() == [A, B]
    assert s.max() == newer
    assert CSNSet.from_values([]).max() is None


def test_cookie_examples_from_reference() -> None:
    text = f"rid=001,sid=002,csn={A};{B}"
    c = parse_cookie(text)
    assert c == Cookie(rid=1, sid=2, csns={1: A, 2: B}, delcsn=None)
    assert c.format() == text
    c = parse_cookie("rid=001,csn=20240101120000.123456Z#000000#000#000000")
    assert c.rid == 1 and c.sid is None and c.csns == {0: "20240101120000.123456Z#000000#000#000000"}
    c = parse_cookie(
        "rid=002,sid=001,csn=20240101120000.123456Z#000000#001#000000;20240101120001.000000Z#000000#002#000000"
    )
    assert list(c.csns) == [1, 2]


def test_cookie_any_order_unknown_fields_and_delcsn() -> None:
    c = parse_cookie(f"csn={B};{A},foo=bar,sid=00a,rid=123,delcsn={A}")
    assert c == Cookie(rid=123, sid=10, csns={1: A, 2: B}, delcsn=A)
    assert c.format() == f"rid=123,sid=00a,csn={A};{B},delcsn={A}"
    assert parse_cookie(b"rid=001").csns == {}


def test_cookie_invalid_csn_stops_list() -> None:
    c = parse_cookie(f"rid=001,csn={A};bogus;{B}")
    assert c.csns == {1: A}


@pytest.mark.parametrize("bad", ["", "rid", "rid=1000", "rid=abc", "rid=001,sid=1000", "rid=001,sid=xyz"])
def test_cookie_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_cookie(bad)


def test_format_cookie() -> None:
    assert format_cookie(1) == "rid=001"
    assert format_cookie(5, 0xABC, [B, A]) == f"rid=005,sid=abc,csn={A};{B}"
    assert format_cookie(5, None, CSNSet([A])) == f"rid=005,csn={A}"
    assert isinstance(parse_csn(A), CSN)
