"""The conflict journal is bounded: the newest records are kept, the counter counts them all."""

from __future__ import annotations

from pyldapd.replication.conflicts import JOURNAL_SIZE, ConflictJournal, journal_of

CSN1 = "20261125154856.783779Z#000000#002#000000"
CSN2 = "20261125154856.796831Z#000000#001#000000"


def test_journal_keeps_the_newest_and_counts_all():
    journal = ConflictJournal(size=3)
    for n in range(5):
        journal.record("modify", f"uid=u{n},dc=example,dc=com", CSN2, CSN1, "discarded", 1)
    assert journal.total == 5
    assert [c.number for c in journal.records] == [3, 4, 5]
    last = journal.records[-1]
    assert (last.winner_sid, last.loser_sid) == (1, 2)
    assert last.log_text() == (
        f"conflict modify on uid=u4,dc=example,dc=com: winner {CSN2} (sid 001), loser {CSN1} (sid 002): discarded"
    )


def test_one_journal_per_database_with_the_default_bound():
    class Backend:
        pass

    first, second = Backend(), Backend()
    assert journal_of(first) is journal_of(first) and journal_of(first) is not journal_of(second)
    assert journal_of(first).records.maxlen == JOURNAL_SIZE == 1000
