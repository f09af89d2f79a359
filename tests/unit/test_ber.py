"""The BER subset codec: encodings checked against fixed vectors and pyasn1, decoding errors, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyldapd.protocol.ber import (
    BERError,
    decode_boolean,
    decode_integer,
    decode_octet_string,
    decode_string,
    encode_boolean,
    encode_enumerated,
    encode_integer,
    encode_length,
    encode_null,
    encode_octet_string,
    encode_sequence,
    encode_set,
    encode_string,
    read_children,
    read_tlv,
    tlv,
)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "8180"),
        (255, "81ff"),
        (256, "820100"),
        (65535, "82ffff"),
        (65536, "83010000"),
        (0xFFFFFF, "83ffffff"),
        (0x1000000, "8401000000"),
        (0xFFFFFFFF, "84ffffffff"),
    ],
)
def test_encode_length(n: int, expected: str) -> None:
    assert encode_length(n).hex() == expected


def test_encode_length_limits() -> None:
    with pytest.raises(BERError):
        encode_length(2**32)
    with pytest.raises(BERError):
        encode_length(-1)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "020100"),
        (1, "020101"),
        (127, "02017f"),
        (128, "02020080"),
        (255, "020200ff"),
        (256, "02020100"),
        (-1, "0201ff"),
        (-128, "020180"),
        (-129, "0202ff7f"),
        (2**31 - 1, "02047fffffff"),
    ],
)
def test_encode_integer_minimal(n: int, expected: str) -> None:
    assert encode_integer(n).hex() == expected


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_integer_matches_pyasn1(n: int) -> None:
    from pyasn1.codec.ber import encoder
    from pyasn1.type import univ

    ours = encode_integer(n)
    if n >= 0:  # pyasn1 is not minimal for some negatives (-128 -> ff80); X.690 8.3.2 wants 80
        assert ours == encoder.encode(univ.Integer(n))
    else:
        assert len(ours) <= len(encoder.encode(univ.Integer(n)))
    tag, start, stop = read_tlv(ours, 0, len(ours))
    assert tag == 0x02 and stop == len(ours)
    assert decode_integer(ours, start, stop) == n


def test_small_encodings() -> None:
    assert encode_boolean(True) == b"\x01\x01\xff"
    assert encode_boolean(False) == b"\x01\x01\x00"
    assert encode_boolean(True, 0x84) == b"\x84\x01\xff"
    assert encode_enumerated(2) == b"\x0a\x01\x02"
    assert encode_enumerated(300).hex() == "0a02012c"
    assert encode_integer(5, 0x50) == b"\x50\x01\x05"
    assert encode_null() == b"\x05\x00"
    assert encode_null(0x42) == b"\x42\x00"
    assert encode_octet_string(b"ab") == b"\x04\x02ab"
    assert encode_string("é", 0x80) == b"\x80\x02\xc3\xa9"
    assert encode_sequence([b"\x01\x01\xff", b"\x04\x00"]) == b"\x30\x05\x01\x01\xff\x04\x00"
    assert encode_set([b"\x04\x00"]) == b"\x31\x02\x04\x00"
    long = tlv(0x04, b"x" * 300)
    assert long[:4] == b"\x04\x82\x01\x2c" and len(long) == 304


@given(st.binary(max_size=70000), st.sampled_from([0x04, 0x30, 0x80, 0xA3, 0x64]))
def test_tlv_round_trip(content: bytes, tag: int) -> None:
    data = b"\xee" + tlv(tag, content) + b"\xff"
    t, start, stop = read_tlv(data, 1, len(data) - 1)
    assert t == tag and stop == len(data) - 1
    assert decode_octet_string(data, start, stop) == content


def test_read_tlv_non_minimal_length_is_accepted() -> None:
    data = b"\x04\x82\x00\x01a"
    assert read_tlv(data, 0, len(data)) == (0x04, 4, 5)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x04",
        b"\x04\x02a",  # truncated content
        b"\x04\x80a\x00\x00",  # indefinite length
        b"\x04\x85\x00\x00\x00\x00\x01a",  # five length octets
        b"\x04\x82\x00",  # truncated length
        b"\x1f\x01\x00",  # multi-octet tag
        b"\x3f\x01\x00",
    ],
)
def test_read_tlv_rejects(data: bytes) -> None:
    with pytest.raises(BERError):
        read_tlv(data, 0, len(data))


def test_read_tlv_respects_end() -> None:
    data = b"\x04\x03abc"
    with pytest.raises(BERError):
        read_tlv(data, 0, 4)


def test_read_children() -> None:
    data = b"\x30\x06\x02\x01\x05\x04\x01z"
    tag, start, stop = read_tlv(data, 0, len(data))
    assert read_children(data, start, stop) == [(0x02, 4, 5), (0x04, 7, 8)]
    with pytest.raises(BERError):
        read_children(b"\x02\x01\x05\x04\x05z", 0, 6)


def test_primitive_decoders() -> None:
    assert decode_boolean(b"\x00", 0, 1) is False
    assert decode_boolean(b"\x01", 0, 1) is True  # BER: any non-zero octet is TRUE
    with pytest.raises(BERError):
        decode_boolean(b"\x00\x00", 0, 2)
    with pytest.raises(BERError):
        decode_integer(b"", 0, 0)
    assert decode_string("héllo".encode(), 0, 6) == "héllo"
    with pytest.raises(BERError):
        decode_string(b"\xff\xfe", 0, 2)


@given(st.binary(max_size=64))
def test_read_tlv_never_raises_anything_else(data: bytes) -> None:
    pos = 0
    try:
        while pos < len(data):
            _, _, pos = read_tlv(data, pos, len(data))
    except BERError:
        pass
