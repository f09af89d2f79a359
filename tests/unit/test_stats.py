"""server/stats.py: the sent-PDU walk counts every message of a write by its kind, whatever its lengths; worker
counters, one slot each in a shared table, are summed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyldapd.protocol import ldap
from pyldapd.server.stats import OPERATIONS, SLOT_SIZE, Stats

messages = st.one_of(
    st.tuples(st.just("entry"), st.integers(0, 2**31 - 1), st.binary(max_size=70000)),
    st.tuples(st.just("done"), st.integers(0, 2**31 - 1), st.text(max_size=300)),
)


def encode(kind: str, message_id: int, payload) -> bytes:
    if kind == "entry":
        return ldap.encode_search_result_entry(message_id, "cn=x", ldap.encode_partial_attribute_list(
            [("description", [payload])]))  # fmt: skip
    return ldap.encode_result(message_id, ldap.SEARCH_RESULT_DONE, 0, "", payload)


@given(st.lists(messages, max_size=8))
def test_sent_counts_every_pdu_by_kind(batch):
    stats = Stats()
    data = b"".join(encode(*m) for m in batch)
    stats.sent(data)
    assert stats.bytes_sent == len(data)
    assert stats.pdus_sent == len(batch)
    assert stats.entries_sent == sum(1 for m in batch if m[0] == "entry")


def test_truncated_data_counts_bytes_only():
    stats = Stats()
    stats.sent(b"\x30\x84\x00")
    assert (stats.bytes_sent, stats.pdus_sent) == (3, 0)


def test_totals_add_the_workers_slots():
    table = bytearray(SLOT_SIZE * 4)  # as the supervisor's shared table (an mmap there)
    one, two = Stats(table, 0, 4), Stats(table, 2, 4)
    for stats, count in ((one, 2), (two, 3)):
        for _ in range(count):
            stats.initiate(ldap.SearchRequest.TAG)
            stats.complete("Search", 0, 0.002)
        stats.sent(encode("entry", 1, b"x"))
    two.complete("Search", 32, 0.5)
    for stats in (one, two):
        totals = stats.totals()
        assert totals.initiated["Search"] == 5 and totals.completed["Search"] == 6
        assert totals.results[("Search", 0)] == 5 and totals.results[("Search", 32)] == 1
        assert totals.entries_sent == 2
        assert sum(totals.latency["Search"].counts) == 6 and abs(totals.latency["Search"].total - 0.51) < 1e-9
        assert set(totals.initiated) == set(OPERATIONS)
    assert one.mine().initiated["Search"] == 2
    again = Stats(table, 2, 4)  # a restarted worker goes on in its slot
    again.complete("Search", 32, 0.1)
    assert again.totals().results[("Search", 32)] == 2
