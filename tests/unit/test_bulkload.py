"""The parts of `pyldapd add` that decide how work is split: chunks, ids, CSN lanes and entryUUIDs."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from pyldapd.cli.bulkload import TimeUUIDs, split_chunks
from pyldapd.model.csn import CSNGenerator, parse_csn
from pyldapd.model.ldif import parse_ldif


def _ldif(sizes: list[int], gaps: list[int], crlf: bool) -> bytes:
    records = []
    for i, size in enumerate(sizes):
        records.append(f"dn: cn=e{i},dc=x\ncn: e{i}\ndescription: {'d' * size}\n")
    text = ""
    for record, gap in zip(records, gaps, strict=False):
        text += record + "\n" * gap
    data = ("version: 1\n\n" + text).encode()
    return data.replace(b"\n", b"\r\n") if crlf else data


@given(
    st.lists(st.integers(0, 300), min_size=1, max_size=40),
    st.lists(st.integers(1, 3), min_size=40, max_size=40),
    st.booleans(),
    st.integers(50, 2000),
)
@settings(max_examples=200, deadline=None)
def test_chunks_cut_at_blank_lines_with_right_lines_and_enough_ids(
    sizes: list[int], gaps: list[int], crlf: bool, size: int
) -> None:
    data = _ldif(sizes, gaps, crlf)
    chunks = split_chunks(data, first_id=7, size=size)
    assert chunks[0].start == 0 and chunks[-1].end == len(data)
    whole = [(r.dn, r.line, r.attributes) for r in parse_ldif(data)]
    parts = []
    next_id = 7
    for before, chunk in zip([None, *chunks], chunks, strict=False):
        if before is not None:
            assert chunk.start == before.end
        assert chunk.first_id == next_id
        next_id += chunk.ids
        records = list(
            parse_ldif(data[chunk.start : chunk.end], first_line=chunk.first_line, header=chunk.start == 0)
        )
        assert len(records) <= chunk.ids  # every record gets an id of its own
        parts.extend((r.dn, r.line, r.attributes) for r in records)
    assert parts == whole  # the same records, at the same line numbers


def test_csn_lanes_never_meet() -> None:
    frozen = lambda: 1_700_000_000.0  # noqa: E731  (every CSN in the same microsecond)
    lanes = [CSNGenerator(3, frozen, lane=k, lanes=3) for k in range(3)]
    seen = set()
    for _ in range(500):
        for generator in lanes:
            csn = generator.next()
            assert csn not in seen
            seen.add(csn)
    for k, generator in enumerate(lanes):
        assert parse_csn(generator.next()).count % 3 == k
    generator = CSNGenerator(3, frozen, lane=1, lanes=2)
    generator.observe("20260101000000.000000Z#000010#001#000000")  # later than the clock
    after = parse_csn(generator.next())
    assert after > parse_csn("20260101000000.000000Z#000010#001#000000") and after.count % 2 == 1


def test_time_uuids_are_version_1_increasing_and_unique_per_lane() -> None:
    a, b = TimeUUIDs(0x3FFF), TimeUUIDs(0x3FFF + 1)  # lanes 0 and 1 of one load wrap around
    values = [a.next() for _ in range(2000)] + [b.next() for _ in range(2000)]
    assert len(set(values)) == len(values)
    parsed = [uuid.UUID(v.decode()) for v in values]
    assert all(u.version == 1 and u.variant == uuid.RFC_4122 for u in parsed)
    times = [u.time for u in parsed[:2000]]
    assert times == sorted(set(times))
    assert parsed[0].clock_seq != parsed[2000].clock_seq
    assert abs(parsed[-1].time - uuid.uuid1().time) < 10**8  # within 10 s of the system's own


def test_tool_threads_from_slapd_conf_and_slapd_d(tmp_path) -> None:
    """slapd.conf's tool-threads and cn=config's olcToolThreads set the number of load processes."""
    from pyldapd.cli.bulkload import default_workers
    from pyldapd.config.cnconfig import config_from_entries, entries_from_config, read_slapd_d, write_slapd_d
    from pyldapd.config.slapdconf import load_slapd_conf

    conf = tmp_path / "slapd.conf"
    conf.write_text(f'tool-threads 3\ndatabase mdb\nsuffix "dc=x"\ndirectory {tmp_path}\n')
    config = load_slapd_conf(str(conf))
    assert config.tool_threads == 3 and default_workers(config.tool_threads) == 3
    write_slapd_d(tmp_path / "slapd.d", entries_from_config(config))
    (root,) = [e for e in read_slapd_d(tmp_path / "slapd.d") if e.dn.lower() == "cn=config"]
    assert root.get("olctoolthreads") == [b"3"]
    assert config_from_entries(read_slapd_d(tmp_path / "slapd.d")).tool_threads == 3
    conf.write_text(f'database mdb\nsuffix "dc=x"\ndirectory {tmp_path}\n')
    assert default_workers(load_slapd_conf(str(conf)).tool_threads) >= 1  # not set: one per CPU


def test_a_mapped_file_cuts_and_reads_as_its_bytes(tmp_path) -> None:
    """`pyldapd add -l FILE` maps the file: chunks, line counts and records are those of the same bytes."""
    import mmap

    from pyldapd.cli.bulkload import count_lines

    data = _ldif([120] * 30, [1, 2, 3] * 10, False)
    path = tmp_path / "x.ldif"
    path.write_bytes(data)
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert count_lines(mapped) == data.count(b"\n")
        assert split_chunks(mapped, 1, size=500) == split_chunks(data, 1, size=500)
        for chunk in split_chunks(mapped, 1, size=500):
            assert mapped[chunk.start : chunk.end] == data[chunk.start : chunk.end]
