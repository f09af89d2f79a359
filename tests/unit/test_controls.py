"""Control and extended-operation value codecs: round trips, vectors, cross-checks with python-ldap's pyasn1 code."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyldapd.model.filter import And, Equality, Present
from pyldapd.protocol import controls as c
from pyldapd.protocol.ldap import (
    Control,
    ProtocolError,
    SearchResultEntry,
    encode_filter,
    encode_partial_attribute_list,
)

cookies = st.none() | st.binary(max_size=60)
uuids = st.binary(min_size=16, max_size=16)


def test_oids() -> None:
    assert c.MANAGE_DSA_IT == "2.16.840.1.113730.3.4.2"
    assert c.PAGED_RESULTS == "1.2.840.113556.1.4.319"
    assert (c.ASSERTION, c.PRE_READ, c.POST_READ) == ("1.3.6.1.1.12", "1.3.6.1.1.13.1", "1.3.6.1.1.13.2")
    assert [c.SYNC_REQUEST, c.SYNC_STATE, c.SYNC_DONE, c.SYNC_INFO] == [
        f"1.3.6.1.4.1.4203.1.9.1.{i}" for i in (1, 2, 3, 4)
    ]
    assert (c.CANCEL, c.WHO_AM_I, c.PASSWORD_MODIFY) == (
        "1.3.6.1.1.8",
        "1.3.6.1.4.1.4203.1.11.3",
        "1.3.6.1.4.1.4203.1.11.1",
    )
    assert (c.START_TLS, c.NOTICE_OF_DISCONNECTION) == ("1.3.6.1.4.1.1466.20037", "1.3.6.1.4.1.1466.20036")


def test_find_control() -> None:
    ctrls = [Control("1.2"), Control(c.MANAGE_DSA_IT, True)]
    assert c.find_control(ctrls, c.MANAGE_DSA_IT) is ctrls[1]
    assert c.find_control(ctrls, c.PAGED_RESULTS) is None


# ---------------------------------------------------------------------------------------------------------------
# Round trips


@given(st.integers(0, 2**31 - 1), st.binary(max_size=50))
def test_paged_results_round_trip(size: int, cookie: bytes) -> None:
    v = c.PagedResults(size, cookie)
    assert c.decode_paged_results(c.encode_paged_results(v)) == v


def test_assertion_round_trip() -> None:
    f = And((Equality("cn", b"x"), Present("sn")))
    assert c.encode_assertion(f) == encode_filter(f)
    assert c.decode_assertion(c.encode_assertion(f)) == f
    with pytest.raises(ProtocolError):
        c.decode_assertion(None)
    with pytest.raises(ProtocolError):
        c.decode_assertion(b"\x30\x00")


@given(st.lists(st.text(max_size=10), max_size=5))
def test_read_request_round_trip(attrs: list[str]) -> None:
    assert c.decode_read_request(c.encode_read_request(attrs)) == attrs


def test_read_entry_round_trip() -> None:
    attrs = [("cn", [b"a"]), ("entryCSN", [b"20261122155918.338377Z#000000#001#000000"])]
    value = c.encode_read_entry("cn=a,dc=x", encode_partial_attribute_list(attrs))
    assert value[0] == 0x64
    assert value == c.encode_read_entry_attributes("cn=a,dc=x", attrs)
    assert c.decode_read_entry(value) == SearchResultEntry("cn=a,dc=x", attrs)
    with pytest.raises(ProtocolError):
        c.decode_read_entry(b"\x65\x07\x0a\x01\x00\x04\x00\x04\x00")  # a SearchResultDone


@given(st.sampled_from([1, 3]), cookies, st.booleans())
def test_sync_request_round_trip(mode: int, cookie: bytes | None, reload_hint: bool) -> None:
    v = c.SyncRequest(mode, cookie, reload_hint)
    assert c.decode_sync_request(c.encode_sync_request(v)) == v


@given(st.integers(0, 3), uuids, cookies)
def test_sync_state_round_trip(state: int, entry_uuid: bytes, cookie: bytes | None) -> None:
    v = c.SyncState(state, entry_uuid, cookie)
    assert c.decode_sync_state(c.encode_sync_state(v)) == v


@given(cookies, st.booleans())
def test_sync_done_round_trip(cookie: bytes | None, refresh_deletes: bool) -> None:
    v = c.SyncDone(cookie, refresh_deletes)
    assert c.decode_sync_done(c.encode_sync_done(v)) == v


sync_infos = st.one_of(
    st.builds(c.SyncInfoNewCookie, st.binary(max_size=60)),
    st.builds(c.SyncInfoRefreshDelete, cookies, st.booleans()),
    st.builds(c.SyncInfoRefreshPresent, cookies, st.booleans()),
    st.builds(c.SyncInfoIdSet, cookies, st.booleans(), st.lists(uuids, max_size=5)),
)


@given(sync_infos)
def test_sync_info_round_trip(v: c.SyncInfo) -> None:
    assert c.decode_sync_info(c.encode_sync_info(v)) == v


@given(st.integers(0, 2**31 - 1))
def test_cancel_round_trip(mid: int) -> None:
    assert c.decode_cancel_request(c.encode_cancel_request(mid)) == mid


@given(
    st.none() | st.binary(max_size=10), st.none() | st.binary(max_size=10), st.none() | st.binary(max_size=10)
)
def test_password_modify_round_trip(user: bytes | None, old: bytes | None, new: bytes | None) -> None:
    v = c.PasswordModifyRequest(user, old, new)
    assert c.decode_password_modify_request(c.encode_password_modify_request(v)) == v
    assert c.decode_password_modify_response(c.encode_password_modify_response(new)) == new


def test_password_modify_without_value() -> None:
    assert c.decode_password_modify_request(None) == c.PasswordModifyRequest()
    assert c.encode_password_modify_response(None) is None


@pytest.mark.parametrize(
    "value, text",
    [
        (b"", "empty request data field"),  # present but empty: not "every field absent"
        (b"\x30\x06\x82\x01n\x81\x01o", "data decoding error"),  # newPasswd before oldPasswd
        (b"\x30\x03\x83\x01x", "data decoding error"),  # a field RFC 3062 does not have
    ],
)
def test_password_modify_malformed_as_slapd(value: bytes, text: str) -> None:
    """slapd's slap_passwd_parse words; the server answers protocolError with them."""
    with pytest.raises(c.ControlValueError, match=text):
        c.decode_password_modify_request(value)


def test_relax_oid() -> None:
    assert c.RELAX == "1.3.6.1.4.1.4203.666.5.12"


def test_who_am_i() -> None:
    assert c.encode_who_am_i_response("dn:cn=a") == b"dn:cn=a"
    assert c.decode_who_am_i_response(b"u:bob") == "u:bob"
    assert c.decode_who_am_i_response(None) == ""
    with pytest.raises(ProtocolError):
        c.decode_who_am_i_response(b"\xff")


# ---------------------------------------------------------------------------------------------------------------
# Fixed vectors


def test_sync_vectors() -> None:
    assert (
        c.encode_sync_request(c.SyncRequest(3, b"rid=001")).hex() == "300c0a0103" + "0407" + b"rid=001".hex()
    )
    assert c.encode_sync_request(c.SyncRequest(1, None, True)).hex() == "30060a01010101ff"
    u = bytes(range(16))
    assert c.encode_sync_state(c.SyncState(1, u)).hex() == "30150a01010410" + u.hex()
    assert c.encode_sync_done(c.SyncDone(None, True)).hex() == "30030101ff"
    assert c.encode_sync_done(c.SyncDone()).hex() == "3000"
    assert c.encode_sync_info(c.SyncInfoNewCookie(b"ab")).hex() == "80026162"
    assert c.encode_sync_info(c.SyncInfoRefreshPresent()).hex() == "a200"  # refreshDone DEFAULT TRUE
    assert c.encode_sync_info(c.SyncInfoRefreshDelete(b"k", False)).hex() == "a1060401" + "6b" + "010100"
    assert c.encode_sync_info(c.SyncInfoIdSet(None, True, [u])).hex() == "a3170101ff3112" + "0410" + u.hex()


def test_paged_results_vector() -> None:
    assert c.encode_paged_results(c.PagedResults(5)).hex() == "3005020105" + "0400"


# ---------------------------------------------------------------------------------------------------------------
# Cross-checks with python-ldap (pyasn1)


def test_python_ldap_sync_request_decodes() -> None:
    from ldap.syncrepl import SyncRequestControl

    value = SyncRequestControl(
        cookie="rid=001,csn=x", mode="refreshAndPersist", reloadHint=True
    ).encodeControlValue()
    assert c.decode_sync_request(value) == c.SyncRequest(3, b"rid=001,csn=x", True)
    value = SyncRequestControl(mode="refreshOnly").encodeControlValue()
    assert c.decode_sync_request(value) == c.SyncRequest(1, None, False)


def test_python_ldap_decodes_our_sync_controls() -> None:
    from ldap.syncrepl import SyncDoneControl, SyncInfoMessage, SyncStateControl

    u = uuid.UUID("0f8e6a4c-1d2b-4c3d-9e8f-0123456789ab")
    ctrl = SyncStateControl()
    ctrl.decodeControlValue(c.encode_sync_state(c.SyncState(2, u.bytes, b"csn=1")))
    assert (ctrl.state, ctrl.entryUUID, ctrl.cookie) == ("modify", str(u), "csn=1")

    done = SyncDoneControl()
    done.decodeControlValue(c.encode_sync_done(c.SyncDone(b"csn=2", True)))
    assert (done.cookie, done.refreshDeletes) == ("csn=2", True)

    info = SyncInfoMessage(c.encode_sync_info(c.SyncInfoNewCookie(b"csn=3")))
    assert info.newcookie == "csn=3"
    info = SyncInfoMessage(c.encode_sync_info(c.SyncInfoRefreshPresent(b"csn=4", True)))
    assert info.refreshPresent == {"cookie": "csn=4", "refreshDone": True}
    info = SyncInfoMessage(c.encode_sync_info(c.SyncInfoRefreshDelete(None, False)))
    assert info.refreshDelete == {"refreshDone": False}
    info = SyncInfoMessage(c.encode_sync_info(c.SyncInfoIdSet(b"csn=5", True, [u.bytes])))
    assert info.syncIdSet == {"cookie": "csn=5", "refreshDeletes": True, "syncUUIDs": [str(u)]}


def test_python_ldap_paged_and_read_controls() -> None:
    from ldap.controls.pagedresults import SimplePagedResultsControl
    from ldap.controls.readentry import PostReadControl, PreReadControl

    value = SimplePagedResultsControl(True, size=100, cookie=b"\x01\x02").encodeControlValue()
    assert c.decode_paged_results(value) == c.PagedResults(100, b"\x01\x02")
    ctrl = SimplePagedResultsControl(True, size=0, cookie=b"")
    ctrl.decodeControlValue(c.encode_paged_results(c.PagedResults(7, b"next")))
    assert (ctrl.size, ctrl.cookie) == (7, b"next")

    value = PreReadControl(True, ["cn", "entryUUID"]).encodeControlValue()
    assert c.decode_read_request(value) == ["cn", "entryUUID"]
    post = PostReadControl(True, None)
    post.decodeControlValue(c.encode_read_entry_attributes("cn=a,dc=x", [("cn", [b"a", b"b"])]))
    assert post.dn == "cn=a,dc=x"
    assert post.entry == {"cn": [b"a", b"b"]}


def test_python_ldap_password_modify() -> None:
    from ldap.extop.passwd import PasswordModifyResponse

    resp = PasswordModifyResponse(c.PASSWORD_MODIFY, c.encode_password_modify_response(b"gen"))
    assert resp.genPasswd == b"gen"


# ---------------------------------------------------------------------------------------------------------------
# Malformed values


DECODERS = [
    c.decode_paged_results,
    c.decode_read_request,
    c.decode_read_entry,
    c.decode_sync_request,
    c.decode_sync_state,
    c.decode_sync_done,
    c.decode_sync_info,
    c.decode_cancel_request,
    c.decode_password_modify_request,
    c.decode_password_modify_response,
    c.decode_assertion,
]


@pytest.mark.parametrize(
    ("decoder", "value"),
    [
        (c.decode_paged_results, None),
        (c.decode_paged_results, b"\x30\x03\x02\x01\x05"),  # no cookie
        (c.decode_paged_results, b"\x30\x05\x02\x01\xff\x04\x00"),  # negative size
        (c.decode_sync_request, b"\x30\x03\x0a\x01\x02"),  # mode 2
        (c.decode_sync_state, b"\x30\x06\x0a\x01\x01\x04\x01a"),  # UUID of one octet
        (c.decode_sync_state, b"\x30\x03\x0a\x01\x01"),
        (c.decode_sync_done, b"\x30\x02\x05\x00"),
        (c.decode_sync_info, b"\xa4\x00"),
        (c.decode_sync_info, b"\xa3\x00"),  # syncIdSet without syncUUIDs
        (c.decode_sync_info, b"\x80\x01a\x00"),
        (c.decode_cancel_request, b"\x30\x00"),
        (c.decode_password_modify_request, b"\x30\x03\x83\x01a"),
        (c.decode_password_modify_request, b"\x30\x06\x82\x01a\x80\x01b"),  # out of order
        (c.decode_read_request, b"\x30\x02\x04\x01\xff"),
        (c.decode_read_request, b"\x31\x00"),
    ],
)
def test_malformed_values(decoder: object, value: bytes | None) -> None:
    with pytest.raises(ProtocolError):
        decoder(value)  # type: ignore[operator]


@given(st.sampled_from(DECODERS), st.binary(max_size=40))
@settings(max_examples=2000, deadline=None)
def test_fuzz_decoders(decoder: object, value: bytes) -> None:
    for data in (value, b"\x30" + bytes([len(value) & 0x7F]) + value):
        try:
            decoder(data)  # type: ignore[operator]
        except ProtocolError:
            pass


def test_values_return_filter_decode() -> None:
    items = [Present("mail"), Equality("cn", b"Johnny")]
    value = c.encode_values_return_filter(items)
    assert c.decode_values_return_filter(value) == items
    assert c.VALUES_RETURN_FILTER == "1.2.826.0.1.3344810.2.3"
    # an item of another choice is kept as None (it selects nothing); an empty list is no filter at all
    assert c.decode_values_return_filter(b"\x30\x0c\xa0\x0a\x87\x02cn\x87\x04mail") == [None]
    assert c.decode_values_return_filter(b"\x30\x00") == []
    # an element overrunning the list ends it, as slapd's ber_next_element does
    assert c.decode_values_return_filter(b"\x30\x09\x87\x04mail\x87\x05a") == [Present("mail")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "valuesReturnFilter control value is absent"),
        (b"", "valuesReturnFilter control value is empty"),
    ],
)
def test_values_return_filter_missing(value: bytes | None, message: str) -> None:
    with pytest.raises(c.ControlValueError, match=message):
        c.decode_values_return_filter(value)


@pytest.mark.parametrize(
    "value", [b"\x04\x02ab", b"\x30\x04\xa3\x02\x04\x00", b"\x30\x02\x87", b"\x30\x05\x87\x02cn"]
)
def test_values_return_filter_malformed(value: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        c.decode_values_return_filter(value)
    assert not isinstance(info.value, c.ControlValueError)
