"""RFC 4511 messages: round trips, fixed vectors, cross-checks with ldap3/pyasn1, framing, fuzzing."""

from __future__ import annotations

import itertools
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyldapd.model.filter import (
    And,
    Approx,
    Equality,
    Extensible,
    GreaterOrEqual,
    LessOrEqual,
    Not,
    Or,
    Present,
    Substrings,
)
from pyldapd.protocol import ldap
from pyldapd.protocol.ber import BERError, tlv
from pyldapd.protocol.ldap import (
    BIND_RESPONSE,
    EXTENDED_RESPONSE,
    MAX_INT,
    SEARCH_RESULT_DONE,
    AbandonRequest,
    AddRequest,
    AddResponse,
    BindRequest,
    BindResponse,
    Change,
    CompareRequest,
    CompareResponse,
    Control,
    DelRequest,
    DelResponse,
    ExtendedRequest,
    ExtendedResponse,
    IntermediateResponse,
    LDAPMessage,
    MessageFramer,
    ModifyDNRequest,
    ModifyDNResponse,
    ModifyRequest,
    ModifyResponse,
    ProtocolError,
    ResultCode,
    SearchRequest,
    SearchResultDone,
    SearchResultEntry,
    SearchResultReference,
    UnbindRequest,
    decode_filter,
    decode_message,
    decode_partial_attribute_list,
    decode_values,
    encode_filter,
    encode_message,
    encode_partial_attribute,
    encode_partial_attribute_list,
    encode_result,
    encode_search_result_entry,
    encode_values,
    index_partial_attribute_list,
)

# ---------------------------------------------------------------------------------------------------------------
# Strategies

texts = st.text(max_size=20)
attr_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-;.", min_size=1, max_size=12)
values = st.binary(max_size=40)
message_ids = st.integers(min_value=0, max_value=MAX_INT)
uints = st.integers(min_value=0, max_value=MAX_INT)


def _substrings() -> st.SearchStrategy[Substrings]:
    return st.builds(
        Substrings,
        attr_names,
        st.none() | values,
        st.lists(values, max_size=3).map(tuple),
        st.none() | values,
    ).filter(lambda s: s.initial is not None or s.any or s.final is not None)


def _extensible() -> st.SearchStrategy[Extensible]:
    return st.builds(
        Extensible, st.none() | attr_names, st.none() | attr_names, values, st.booleans()
    ).filter(lambda e: e.rule is not None or e.attr is not None)


leaf_filters = st.one_of(
    st.builds(Equality, attr_names, values),
    st.builds(GreaterOrEqual, attr_names, values),
    st.builds(LessOrEqual, attr_names, values),
    st.builds(Approx, attr_names, values),
    st.builds(Present, attr_names),
    _substrings(),
    _extensible(),
)
filters = st.recursive(
    leaf_filters,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda fs: And(tuple(fs))),
        st.lists(children, max_size=4).map(lambda fs: Or(tuple(fs))),
        children.map(Not),
    ),
    max_leaves=12,
)

attribute_lists = st.lists(st.tuples(attr_names, st.lists(values, max_size=4)), max_size=5)
referrals = st.none() | st.lists(texts, min_size=1, max_size=3)


def _result(cls: type) -> st.SearchStrategy:
    return st.builds(cls, st.integers(0, 5000), texts, texts, referrals)


requests = st.one_of(
    st.builds(BindRequest, st.integers(1, 127), texts, values),
    st.builds(
        BindRequest,
        st.integers(1, 127),
        texts,
        st.none(),
        st.text(min_size=1, max_size=10),
        st.none() | values,
    ),
    st.just(UnbindRequest()),
    st.builds(
        SearchRequest,
        texts,
        st.integers(0, 3),
        st.integers(0, 3),
        uints,
        uints,
        st.booleans(),
        filters,
        st.lists(attr_names, max_size=4),
    ),
    st.builds(
        ModifyRequest,
        texts,
        st.lists(st.builds(Change, st.integers(0, 3), attr_names, st.lists(values, max_size=3)), max_size=4),
    ),
    st.builds(AddRequest, texts, attribute_lists),
    st.builds(DelRequest, texts),
    st.builds(ModifyDNRequest, texts, texts, st.booleans(), st.none() | texts),
    st.builds(CompareRequest, texts, attr_names, values),
    st.builds(AbandonRequest, message_ids),
    st.builds(ExtendedRequest, texts, st.none() | values),
)
responses = st.one_of(
    st.builds(BindResponse, st.integers(0, 5000), texts, texts, referrals, st.none() | values),
    st.builds(SearchResultEntry, texts, attribute_lists),
    st.builds(SearchResultReference, st.lists(texts, min_size=1, max_size=3)),
    _result(SearchResultDone),
    _result(ModifyResponse),
    _result(AddResponse),
    _result(DelResponse),
    _result(ModifyDNResponse),
    _result(CompareResponse),
    st.builds(
        ExtendedResponse, st.integers(0, 5000), texts, texts, referrals, st.none() | texts, st.none() | values
    ),
    st.builds(IntermediateResponse, st.none() | texts, st.none() | values),
)
controls = st.lists(st.builds(Control, texts, st.booleans(), st.none() | values), max_size=3)
messages = st.builds(LDAPMessage, message_ids, requests | responses, controls)

# ---------------------------------------------------------------------------------------------------------------
# Round trips


@given(messages)
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_message_round_trip(msg: LDAPMessage) -> None:
    pdu = encode_message(msg)
    assert decode_message(pdu) == msg
    assert MessageFramer(max_pdu_size=1 << 30).feed(pdu) == [pdu]


@given(filters)
def test_filter_round_trip(f: object) -> None:
    assert decode_filter(encode_filter(f)) == f  # type: ignore[arg-type]


@given(attribute_lists, attribute_lists)
def test_partial_attribute_blobs_concatenate(a: list, b: list) -> None:
    blob = encode_partial_attribute_list(a) + encode_partial_attribute_list(b)
    assert decode_partial_attribute_list(blob) == a + b


@given(attribute_lists)
def test_index_partial_attribute_list(attrs: list) -> None:
    blob = encode_partial_attribute_list(attrs)
    index = index_partial_attribute_list(blob)
    assert [name for name, _, _, _ in index] == [name for name, _ in attrs]
    odd = b"".join(blob[start:stop] for _, start, _, stop in index[1::2])
    assert decode_partial_attribute_list(odd) == attrs[1::2]
    for (name, values), (_, start, values_start, stop) in zip(attrs, index, strict=True):
        assert decode_values(blob, values_start, stop) == values
        assert encode_partial_attribute(name, blob[values_start:stop]) == blob[start:stop]
        assert blob[values_start:stop] == encode_values(values)


@pytest.mark.parametrize("blob", [b"\x30", b"\x30\x02\x04\x00", b"\x04\x00", b"\x30\x04\x04\x00\x31\x01"])
def test_malformed_attribute_blobs(blob: bytes) -> None:
    with pytest.raises(ProtocolError):
        index_partial_attribute_list(blob)
    with pytest.raises(ProtocolError):
        decode_partial_attribute_list(blob)


@given(message_ids, texts, attribute_lists, controls)
def test_encode_search_result_entry_fast_path(mid: int, dn: str, attrs: list, ctrls: list) -> None:
    pdu = encode_search_result_entry(mid, dn, encode_partial_attribute_list(attrs), ctrls)
    assert pdu == encode_message(LDAPMessage(mid, SearchResultEntry(dn, attrs), ctrls))


def test_large_entry_fast_path() -> None:
    attrs = [("jpegPhoto", [b"\x00" * 70000]), ("cn", [b"x" * 200])]
    pdu = encode_search_result_entry(2**31 - 1, "cn=big", encode_partial_attribute_list(attrs))
    assert decode_message(pdu) == LDAPMessage(2**31 - 1, SearchResultEntry("cn=big", attrs), [])


@given(message_ids, st.integers(0, 5000), texts, texts, referrals, controls)
def test_encode_result_fast_path(
    mid: int, code: int, matched: str, msg: str, refs: list | None, ctrls: list
) -> None:
    pdu = encode_result(mid, SEARCH_RESULT_DONE, code, matched, msg, refs, controls=ctrls)
    assert decode_message(pdu) == LDAPMessage(mid, SearchResultDone(code, matched, msg, refs), ctrls)


def test_encode_result_extra() -> None:
    pdu = encode_result(3, BIND_RESPONSE, ResultCode.saslBindInProgress, extra=tlv(0x87, b"chal"))
    assert decode_message(pdu).op == BindResponse(14, server_sasl_creds=b"chal")
    extra = tlv(0x8A, b"1.3.6.1.4.1.1466.20036")
    pdu = encode_result(0, EXTENDED_RESPONSE, ResultCode.unavailable, message="bye", extra=extra)
    assert decode_message(pdu).op == ExtendedResponse(52, "", "bye", None, "1.3.6.1.4.1.1466.20036", None)


# ---------------------------------------------------------------------------------------------------------------
# Fixed vectors


def test_anonymous_simple_bind_vector() -> None:
    pdu = bytes.fromhex("300c020101600702010304008000")
    msg = decode_message(pdu)
    assert msg == LDAPMessage(1, BindRequest(3, "", b""), [])
    assert encode_message(msg) == pdu


def test_bind_response_success_vector() -> None:
    pdu = bytes.fromhex("300c02010161070a010004000400")
    assert decode_message(pdu) == LDAPMessage(1, BindResponse(0), [])
    assert encode_result(1, BIND_RESPONSE, 0) == pdu


def test_unbind_and_abandon_vectors() -> None:
    assert encode_message(LDAPMessage(3, UnbindRequest())) == bytes.fromhex("30050201034200")
    assert decode_message(bytes.fromhex("3006020104500102")).op == AbandonRequest(2)


def test_search_request_vector() -> None:
    # ldapsearch -b dc=example,dc=com -M "(objectClass=*)" cn   (-M: critical ManageDsaIT)
    parts = [
        "305a",  # LDAPMessage
        "020102",  # messageID 2
        "6335",  # SearchRequest
        "0411" + b"dc=example,dc=com".hex(),  # baseObject
        "0a0102",  # scope wholeSubtree
        "0a0100",  # derefAliases neverDerefAliases
        "020100",  # sizeLimit 0
        "020100",  # timeLimit 0
        "010100",  # typesOnly FALSE
        "870b" + b"objectClass".hex(),  # filter (objectClass=*)
        "3004" + "0402" + b"cn".hex(),  # attributes
        "a01e" + "301c",  # controls, Control
        "0417" + b"2.16.840.1.113730.3.4.2".hex(),  # controlType
        "0101ff",  # criticality TRUE
    ]
    pdu = bytes.fromhex("".join(parts))
    msg = LDAPMessage(
        2,
        SearchRequest("dc=example,dc=com", 2, 0, 0, 0, False, Present("objectClass"), ["cn"]),
        [Control("2.16.840.1.113730.3.4.2", True)],
    )
    assert decode_message(pdu) == msg
    assert encode_message(msg) == pdu


def test_filter_vectors() -> None:
    # (&(cn=a*b*c)(!(sn>=x))(:dn:2.5.13.5:=y))
    f = And(
        (
            Substrings("cn", b"a", (b"b",), b"c"),
            Not(GreaterOrEqual("sn", b"x")),
            Extensible("2.5.13.5", None, b"y", True),
        )
    )
    parts = [
        "a02e",  # and
        "a40f" + "0402636e" + "3009",  # substrings, type cn, SEQUENCE
        "800161" + "810162" + "820163",  # initial a, any b, final c
        "a209" + "a507",  # not, greaterOrEqual
        "0402736e" + "040178",  # sn, x
        "a910",  # extensibleMatch
        "8108" + b"2.5.13.5".hex(),  # matchingRule
        "830179",  # matchValue y
        "8401ff",  # dnAttributes TRUE
    ]
    expected = bytes.fromhex("".join(parts))
    assert encode_filter(f) == expected
    assert decode_filter(expected) == f


def test_result_code_values() -> None:
    assert ResultCode.success == 0 and ResultCode.other == 80
    assert ResultCode.noSuchObject == 32 and ResultCode.invalidCredentials == 49
    assert ResultCode.cancelled == 118 and ResultCode.assertionFailed == 122
    assert ResultCode.syncRefreshRequired == 4096
    assert encode_result(1, SEARCH_RESULT_DONE, ResultCode.syncRefreshRequired)[7:11].hex() == "0a021000"


# ---------------------------------------------------------------------------------------------------------------
# Malformed input


def _msg(op: bytes, mid: int = 7, extra: bytes = b"") -> bytes:
    return tlv(0x30, tlv(0x02, bytes([mid])) + op + extra)


@pytest.mark.parametrize(
    "pdu",
    [
        _msg(b"\x55\x00"),  # unknown protocolOp
        _msg(tlv(0x60, b"\x02\x01\x03\x04\x00\x81\x00")),  # unknown authentication choice
        _msg(tlv(0x60, b"\x02\x01\x00\x04\x00\x80\x00")),  # version 0
        _msg(tlv(0x4A, b"\xff\xfe")),  # bad UTF-8 DN
        _msg(b"\x42\x01\x00"),  # unbind with content
        _msg(b"\x50\x01\xff"),  # negative message id to abandon
        _msg(b"\x42\x00", extra=b"\x04\x00"),  # trailing element instead of controls
        _msg(b"\x42\x00", extra=b"\xa0\x03\x04\x01a"),  # control not a SEQUENCE
        _msg(b"\x42\x00", extra=b"\xa0\x05\x30\x03\x02\x01\x01"),  # controlType not an OCTET STRING
        _msg(
            tlv(0x63, b"\x04\x00\x0a\x01\x00\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00\xaa\x00\x30\x00")
        ),
        _msg(tlv(0x73, b"")),  # empty reference
    ],
)
def test_malformed_ops_carry_message_id(pdu: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_message(pdu)
    assert info.value.message_id == 7


def test_search_scope_and_deref_out_of_range_decode_for_the_engine_to_answer() -> None:
    """A scope or derefAliases value past the enumeration is well-formed BER: the search is answered
    protocolError "invalid scope" / "invalid deref" and the connection goes on, as slapd's do_search does."""
    search = decode_message(
        _msg(
            tlv(
                0x63, b"\x04\x00\x0a\x01\x07\x0a\x01\x09\x02\x01\x00\x02\x01\x00\x01\x01\x00\x87\x01a\x30\x00"
            )
        )
    ).op
    assert (search.scope, search.deref) == (7, 9)


@pytest.mark.parametrize(
    "pdu",
    [
        b"",
        b"\x30",
        b"\x31\x03\x02\x01\x01",
        b"\x30\x03\x02\x01\x01\x00",  # trailing octet after the PDU
        b"\x30\x03\x04\x01\x01",  # messageID not an INTEGER
        b"\x30\x05\x02\x01\xff\x42\x00",  # negative messageID
        b"\x30\x09\x02\x05\x00\x80\x00\x00\x00\x42\x00",  # messageID > maxInt
        b"\x30\x80\x02\x01\x01\x42\x00\x00\x00",  # indefinite length
    ],
)
def test_malformed_envelopes(pdu: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_message(pdu)
    assert info.value.message_id is None


def _substrings_filter(*parts: bytes) -> bytes:
    return tlv(0xA4, b"\x04\x02cn" + tlv(0x30, b"".join(parts)))


@pytest.mark.parametrize(
    "data",
    [
        _substrings_filter(),
        _substrings_filter(b"\x81\x01a", b"\x80\x01b"),  # initial not first
        _substrings_filter(b"\x82\x01a", b"\x81\x01b"),  # final not last
        _substrings_filter(b"\x80\x01a", b"\x80\x01b"),  # two initials
        _substrings_filter(b"\x83\x01a"),
        tlv(0xA9, b"\x83\x01a"),  # extensible without rule or type
        tlv(0xA9, b"\x82\x02cn"),  # extensible without value
        tlv(0xA9, b"\x83\x01a\x82\x02cn"),  # out of order
        tlv(0xA2, b""),  # empty not
        tlv(0xA2, b"\x87\x02cn\x87\x02sn"),  # not with two filters
        tlv(0xA3, b"\x04\x02cn"),  # AVA without value
        tlv(0x87, b"\xc3"),  # bad UTF-8
        b"\x87\x02cn\x00",  # trailing
        # equality terms in an OR (read inline there, ldap._read_filter): each refused as alone
        tlv(0xA1, tlv(0xA3, b"\x04\x01\xc3\x04\x01x")),  # bad UTF-8 in the attribute
        tlv(0xA1, tlv(0xA3, b"\x04\x02cn\x04\x01x\x00")),  # trailing octet in the AVA
        tlv(0xA1, tlv(0xA3, b"\x04\x02cn")),  # AVA without value
        tlv(0xA1, tlv(0xA3, b"\x05\x02cn\x04\x01x")),  # attribute not an OCTET STRING
        tlv(0xA1, b"\xa3\x09\x04\x02cn\x04\x01x"),  # term longer than the OR
        # a second term naming the first one's attribute (read by comparing the bytes up to its value's length)
        tlv(0xA1, tlv(0xA3, b"\x04\x02cn\x04\x01x") + tlv(0xA3, b"\x04\x02cn\x04\x02x")),  # value too long
        tlv(0xA1, tlv(0xA3, b"\x04\x02cn\x04\x01x") + tlv(0xA3, b"\x04\x02cn\x04\x00x")),  # value too short
        tlv(0xA1, tlv(0xA3, b"\x04\x02cn\x04\x01x") + tlv(0xA3, b"\x04\x02cn\x04")),  # no value length
        tlv(0xA1, tlv(0xA3, b"\x04\x02cn\x04\x01x") + b"\xa3\x08\x04\x02cn\x04\x01x"),  # longer than the OR
    ],
)
def test_malformed_filters(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_filter(data)


def test_or_terms_naming_one_attribute_decode_as_alone() -> None:
    """An OR's equality terms after the first on its attribute are read by comparing bytes: the same AST."""
    terms = [Equality("uid", b"a"), Equality("uid", b""), Equality("UID", b"b"), Equality("uid", b"c" * 100),
             Equality("uid;x", b"d"), Equality("uid", b"e"), Present("uid"), Equality("uid", b"f")]  # fmt: skip
    for f in (Or(tuple(terms)), And(tuple(terms)), Or((And(tuple(terms)), *terms))):
        assert decode_filter(encode_filter(f)) == f
    decoded = decode_filter(encode_filter(Or(tuple(terms))))
    assert [type(t) for t in decoded.filters] == [type(t) for t in terms]  # type: ignore[union-attr]
    assert hash(decoded) == hash(Or(tuple(terms)))
    long_form = tlv(0xA1, tlv(0xA3, b"\x04\x02cn\x04\x01x") + tlv(0xA3, b"\x04\x02cn\x04\x81\x01x"))
    assert decode_filter(long_form) == Or((Equality("cn", b"x"), Equality("cn", b"x")))


def test_filter_depth_limit() -> None:
    f: object = Present("cn")
    for _ in range(64):  # max_depth (64 by default) sets around a simple filter are allowed
        f = Not(f)  # type: ignore[arg-type]
    assert decode_filter(encode_filter(f)) == f  # type: ignore[arg-type]
    deeper = encode_filter(Not(f))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        decode_filter(deeper)
    assert decode_filter(deeper, max_depth=65) == Not(f)  # type: ignore[arg-type]
    search = SearchRequest("", 2, 0, 0, 0, False, Not(f), [])  # type: ignore[arg-type]
    pdu = encode_message(LDAPMessage(9, search))
    with pytest.raises(ProtocolError) as info:
        decode_message(pdu)
    assert info.value.message_id == 9
    assert decode_message(pdu, max_filter_depth=100).op == search


def test_very_deep_filter_does_not_recurse_unbounded() -> None:
    data = b"\x87\x01a"
    for _ in range(5000):
        data = tlv(0xA2, data)
    with pytest.raises(ProtocolError):
        decode_message(tlv(0x30, b"\x02\x01\x01" + tlv(0x63, b"\x04\x00\x0a\x01\x00\x0a\x01\x00" + data)))


def test_absolute_true_and_false_filters() -> None:
    assert decode_filter(b"\xa0\x00") == And(())
    assert decode_filter(b"\xa1\x00") == Or(())


def test_lenient_details() -> None:
    # criticality FALSE given explicitly; BOOLEAN TRUE as 0x01; non-minimal length octets
    pdu = _msg(b"\x42\x00", extra=tlv(0xA0, tlv(0x30, b"\x04\x011\x01\x01\x00")))
    assert decode_message(pdu).controls == [Control("1", False, None)]
    pdu = _msg(b"\x42\x00", extra=tlv(0xA0, tlv(0x30, b"\x04\x011\x01\x01\x01\x04\x00")))
    assert decode_message(pdu).controls == [Control("1", True, b"")]
    assert decode_message(b"\x30\x84\x00\x00\x00\x05\x02\x01\x01\x42\x00").op == UnbindRequest()
    assert decode_message(bytearray(b"\x30\x05\x02\x01\x01\x42\x00")).op == UnbindRequest()  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Framing


def test_framer_splits_and_buffers() -> None:
    a = encode_message(LDAPMessage(1, BindRequest(3, "cn=x", b"secret")))
    b = encode_message(LDAPMessage(2, DelRequest("cn=y" * 100)))
    c = encode_message(LDAPMessage(3, UnbindRequest()))
    stream = a + b + c
    for step in (1, 2, 3, 7, 64, len(stream)):
        framer = MessageFramer()
        out: list[bytes] = []
        for i in range(0, len(stream), step):
            out.extend(framer.feed(stream[i : i + step]))
        assert out == [a, b, c]
        assert framer.buffered == 0


def test_framer_rejects_non_sequence() -> None:
    with pytest.raises(ProtocolError):
        MessageFramer().feed(b"\x31\x00")


@pytest.mark.parametrize("header", [b"\x30\x80", b"\x30\x85", b"\x30\xff"])
def test_framer_rejects_bad_length(header: bytes) -> None:
    with pytest.raises(ProtocolError):
        MessageFramer().feed(header)


def test_framer_limit_checked_on_header() -> None:
    framer = MessageFramer()
    assert framer.feed(b"\x30\x83\x03") == []  # incomplete header: wait
    assert framer.feed(b"\xff\xff") == []  # exactly 262143 octets of content: allowed, waiting for the body
    framer = MessageFramer()
    assert framer.feed(b"\x30\x83\x04") == []
    with pytest.raises(ProtocolError):
        framer.feed(b"\x00\x00")  # 262144: refused before any of the body arrives
    with pytest.raises(ProtocolError):
        MessageFramer(max_pdu_size=100).feed(b"\x30\x63")
    assert MessageFramer(max_pdu_size=100).feed(b"\x30\x62") == []


def test_framer_limit_can_be_raised() -> None:
    framer = MessageFramer(max_pdu_size=10)
    framer.max_pdu_size = 1000
    assert framer.feed(b"\x30\x81\x80") == []


# ---------------------------------------------------------------------------------------------------------------
# Cross-checks with ldap3 (pyasn1 based)


def _ldap3_encode(message_id: int, op_name: str, request: object, controls: list | None = None) -> bytes:
    from ldap3.protocol.convert import build_controls_list
    from ldap3.protocol.rfc4511 import LDAPMessage as L3Message
    from ldap3.protocol.rfc4511 import MessageID, ProtocolOp
    from pyasn1.codec.ber import encoder

    message = L3Message()
    message["messageID"] = MessageID(message_id)
    message["protocolOp"] = ProtocolOp().setComponentByName(op_name, request)
    if controls:
        message["controls"] = build_controls_list(controls)
    return encoder.encode(message)


def _ldap3_decode(pdu: bytes) -> object:
    from ldap3.protocol.rfc4511 import LDAPMessage as L3Message
    from pyasn1.codec.ber import decoder

    message, rest = decoder.decode(pdu, asn1Spec=L3Message())
    assert rest == b""
    return message


def test_ldap3_requests_decode() -> None:
    from ldap3.operation.add import add_operation
    from ldap3.operation.bind import bind_operation
    from ldap3.operation.compare import compare_operation
    from ldap3.operation.delete import delete_operation
    from ldap3.operation.extended import extended_operation
    from ldap3.operation.modify import modify_operation
    from ldap3.operation.modifyDn import modify_dn_operation
    from ldap3.operation.search import search_operation

    req = bind_operation(3, "SIMPLE", "cn=admin,dc=example,dc=com", "sécret")
    msg = decode_message(_ldap3_encode(5, "bindRequest", req))
    assert msg == LDAPMessage(5, BindRequest(3, "cn=admin,dc=example,dc=com", "sécret".encode()), [])

    req = bind_operation(3, "SASL", "", None, "EXTERNAL", b"")
    assert decode_message(_ldap3_encode(6, "bindRequest", req)).op == BindRequest(
        3, "", None, "EXTERNAL", b""
    )

    flt = "(&(objectClass=person)(|(cn=Jo*hn*Sm)(sn>=b))(!(uid<=z))(mail~=x)(cn:caseExactMatch:=Q)(o=*))"
    req = search_operation("dc=example,dc=com", flt, 2, 3, ["cn", "+"], 10, 20, True, True, True)
    ctrls = [
        ("2.16.840.1.113730.3.4.2", True, None),
        ("1.2.840.113556.1.4.319", False, b"\x30\x05\x02\x01\x05\x04\x00"),
    ]
    msg = decode_message(_ldap3_encode(7, "searchRequest", req, ctrls))
    assert msg.op == SearchRequest(
        "dc=example,dc=com",
        2,
        3,
        10,
        20,
        True,
        And(
            (
                Equality("objectClass", b"person"),
                Or((Substrings("cn", b"Jo", (b"hn",), b"Sm"), GreaterOrEqual("sn", b"b"))),
                Not(LessOrEqual("uid", b"z")),
                Approx("mail", b"x"),
                Extensible("caseExactMatch", "cn", b"Q", False),
                Present("o"),
            )
        ),
        ["cn", "+"],
    )
    assert msg.controls == [
        Control("2.16.840.1.113730.3.4.2", True, None),
        Control("1.2.840.113556.1.4.319", False, b"\x30\x05\x02\x01\x05\x04\x00"),
    ]

    req = add_operation("cn=a,dc=x", {"objectClass": ["top", "person"], "cn": "a"}, True)
    assert decode_message(_ldap3_encode(8, "addRequest", req)).op == AddRequest(
        "cn=a,dc=x", [("objectClass", [b"top", b"person"]), ("cn", [b"a"])]
    )
    req = modify_operation(
        "cn=a", {"sn": [("MODIFY_REPLACE", ["b"])], "n": [("MODIFY_INCREMENT", ["1"])]}, True
    )
    assert decode_message(_ldap3_encode(9, "modifyRequest", req)).op == ModifyRequest(
        "cn=a", [Change(2, "sn", [b"b"]), Change(3, "n", [b"1"])]
    )
    assert decode_message(_ldap3_encode(10, "delRequest", delete_operation("cn=a"))).op == DelRequest("cn=a")
    req = modify_dn_operation("cn=a,dc=x", "cn=b", True, "dc=y")
    assert decode_message(_ldap3_encode(11, "modDNRequest", req)).op == ModifyDNRequest(
        "cn=a,dc=x", "cn=b", True, "dc=y"
    )
    req = compare_operation("cn=a", "sn", "v", True)
    assert decode_message(_ldap3_encode(12, "compareRequest", req)).op == CompareRequest("cn=a", "sn", b"v")
    req = extended_operation("1.3.6.1.4.1.4203.1.11.3")
    assert decode_message(_ldap3_encode(13, "extendedReq", req)).op == ExtendedRequest(
        "1.3.6.1.4.1.4203.1.11.3"
    )


def test_our_responses_decode_with_ldap3() -> None:
    from ldap3.operation.search import search_result_entry_response_to_dict
    from ldap3.strategy.base import BaseStrategy

    attrs = [("cn", [b"Babs Jensen", b"Babs"]), ("objectClass", [b"person"])]
    pdu = encode_search_result_entry(4, "cn=Babs,dc=example,dc=com", encode_partial_attribute_list(attrs))
    message = _ldap3_decode(pdu)
    assert int(message["messageID"]) == 4
    entry = search_result_entry_response_to_dict(message["protocolOp"].getComponent(), None, None, False)
    assert entry["dn"] == "cn=Babs,dc=example,dc=com"
    assert entry["raw_attributes"] == {"cn": [b"Babs Jensen", b"Babs"], "objectClass": [b"person"]}

    pdu = encode_result(4, SEARCH_RESULT_DONE, 32, "dc=example,dc=com", "no such", ["ldap://h/"])
    done = _ldap3_decode(pdu)["protocolOp"].getComponent()
    assert int(done["resultCode"]) == 32
    assert str(done["matchedDN"]) == "dc=example,dc=com"
    assert str(done["diagnosticMessage"]) == "no such"
    assert [str(r) for r in done["referral"]] == ["ldap://h/"]

    pdu = encode_message(LDAPMessage(1, BindRequest(3, "cn=x", b"pw"), [Control("1.2.3", True, b"v")]))
    message = _ldap3_decode(pdu)
    assert str(message["protocolOp"].getComponent()["authentication"]["simple"]) == "pw"
    assert str(message["controls"][0]["controlType"]) == "1.2.3"
    assert BaseStrategy.decode_control(message["controls"][0]) == (
        "1.2.3",
        {"description": "", "criticality": True, "value": b"v"},
    )


def test_python_ldap_filter_strings_agree() -> None:
    """ldap3 parses filter strings differently from us; check one tricky escaped value through ldap3's encoder."""
    from ldap3.operation.search import search_operation

    req = search_operation("", r"(cn=a\2ab\00)", 0, 0, [], 0, 0, False, False, False)
    assert decode_message(_ldap3_encode(1, "searchRequest", req)).op.filter == Equality("cn", b"a*b\x00")  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------------------------
# Fuzzing: nothing but ProtocolError/BERError


def _decode_anything(data: bytes) -> None:
    try:
        decode_message(data)
    except ProtocolError:
        pass
    framer = MessageFramer()
    try:
        for pdu in framer.feed(data):
            try:
                decode_message(pdu)
            except ProtocolError:
                pass
    except ProtocolError:
        pass


@given(st.binary(max_size=200))
@settings(max_examples=2000, deadline=None)
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _decode_anything(data)
    _decode_anything(b"\x30" + data)
    _decode_anything(tlv(0x30, b"\x02\x01\x01" + data))


@st.composite
def _mutated_pdus(draw: st.DrawFn) -> bytes:
    pdu = bytearray(encode_message(draw(messages)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "byte", "insert", "delete"]))
        if not pdu:
            break
        i = draw(st.integers(0, len(pdu) - 1))
        if kind == "flip":
            pdu[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del pdu[i:]
        elif kind == "byte":
            pdu[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x84, 0x85, 0xFF, 0x1F, 0x30, 0xA0]))
        elif kind == "insert":
            pdu[i:i] = draw(st.binary(min_size=1, max_size=4))
        else:
            del pdu[i : i + draw(st.integers(1, 4))]
    return bytes(pdu)


@given(_mutated_pdus())
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_pdus(data: bytes) -> None:
    _decode_anything(data)


def test_ber_error_is_the_base() -> None:
    assert issubclass(ProtocolError, BERError)


# ---------------------------------------------------------------------------------------------------------------
# The common search, read inline (_read_common_search): the general reading's answer, for any octets

common_searches = st.builds(
    SearchRequest,
    texts,
    st.integers(0, 127),
    st.integers(0, 127),
    st.integers(0, 127),
    st.integers(0, 127),
    st.booleans(),
    st.builds(Equality, attr_names, values),
    st.just([]),
)


def _decoded_or_error(pdu: bytes) -> object:
    try:
        return decode_message(pdu)
    except ProtocolError as exc:
        return ("error", str(exc), exc.message_id)


def _decoded_in_general(pdu: bytes) -> object:
    with (
        mock.patch.object(ldap, "_read_common_search", lambda buf, start, stop: None),
        mock.patch.object(ldap, "_short_envelope", lambda buf, end: 0),
    ):
        return _decoded_or_error(pdu)


@given(message_ids, common_searches, st.data())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_common_search_read_inline_as_in_general(
    mid: int, search: SearchRequest, data: st.DataObject
) -> None:
    pdu = encode_message(LDAPMessage(mid, search, []))
    assert decode_message(pdu) == LDAPMessage(mid, search, [])
    header = 2 if pdu[1] < 0x80 else 2 + (pdu[1] & 0x7F)
    op_start = header + 2 + pdu[header + 1]  # the SearchRequest's tag, after the message ID
    content = op_start + (2 if pdu[op_start + 1] < 0x80 else 2 + (pdu[op_start + 1] & 0x7F))
    if len(pdu) - op_start < 120:  # short lengths throughout: the inline reading is the one that answers
        assert ldap._read_common_search(pdu, content, len(pdu)) == search
    # any octet changed, added or dropped: the same request or the same error as the general reading
    at = data.draw(st.integers(0, len(pdu) - 1))
    octet = data.draw(st.integers(0, 255))
    for changed in (pdu[:at] + bytes([octet]) + pdu[at + 1 :], pdu[:at] + bytes([octet]) + pdu[at:],
                    pdu[:at] + pdu[at + 1 :]):  # fmt: skip
        assert _decoded_or_error(changed) == _decoded_in_general(changed)


def test_common_search_shapes_left_to_the_general_reading() -> None:
    """Limits above 127, an attribute list, a filter other than one equality: not the inline reading's."""
    for search in (
        SearchRequest("o=x", 2, 0, 500, 0, False, Equality("uid", b"a"), []),
        SearchRequest("o=x", 2, 0, 0, 0, False, Equality("uid", b"a"), ["cn"]),
        SearchRequest("o=x", 2, 0, 0, 0, False, Present("uid"), []),
        SearchRequest("o=x" * 50, 2, 0, 0, 0, False, Equality("uid", b"a"), []),
    ):
        pdu = encode_message(LDAPMessage(7, search, []))
        assert decode_message(pdu).op == search
        assert ldap._read_common_search(pdu, 4 if len(pdu) < 128 else 6, len(pdu)) is None


@given(messages, st.data())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_short_envelopes_read_inline_as_in_general(msg: LDAPMessage, data: st.DataObject) -> None:
    """Any message, short or not, and any octet changed, added or dropped in it: the same message or the same
    error with the envelope read inline (_short_envelope) as with the general reading."""
    pdu = encode_message(msg)
    assert _decoded_or_error(pdu) == _decoded_in_general(pdu)
    at = data.draw(st.integers(0, len(pdu) - 1))
    octet = data.draw(st.integers(0, 255))
    for changed in (pdu[:at] + bytes([octet]) + pdu[at + 1 :], pdu[:at] + bytes([octet]) + pdu[at:],
                    pdu[:at] + pdu[at + 1 :], pdu[:at]):  # fmt: skip
        assert _decoded_or_error(changed) == _decoded_in_general(changed)


@given(st.lists(messages, min_size=1, max_size=4), st.lists(st.integers(0, 400), max_size=6))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_framer_returns_each_pdu_however_the_octets_arrive(msgs: list[LDAPMessage], cuts: list[int]) -> None:
    """Whole short requests in one read (returned as they came) or any split: the same PDUs, in order."""
    pdus = [encode_message(m) for m in msgs]
    stream = b"".join(pdus)
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    framer = MessageFramer(1 << 20)
    out: list[bytes] = []
    for a, b in itertools.pairwise(points):
        out += framer.feed(stream[a:b])
    assert out == pdus and framer.buffered == 0
    one_by_one = MessageFramer(1 << 20)
    assert [p for pdu in pdus for p in one_by_one.feed(pdu)] == pdus
