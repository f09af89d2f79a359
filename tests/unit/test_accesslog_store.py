"""accesslog's step 2 (overlays/accesslog.py, AccessLog.store) on real LMDB databases: a replayed outbox record
is stored once; a different record whose reqStart is taken (the clock stepped back) gets the next free one."""

from __future__ import annotations

from pathlib import Path

from pyldapd.config.slapdconf import load_slapd_conf
from pyldapd.model.entry import Entry
from pyldapd.server.app import build_schema
from pyldapd.server.directory import Directory
from tests.overlays.test_accesslog import conf_for


def log_entry(start: str, csn: str) -> Entry:
    entry = Entry(f"reqStart={start},cn=accesslog")
    for name, value in (("objectClass", "auditModify"), ("reqStart", start), ("reqEnd", start), ("reqType", "modify"),
                        ("reqSession", "1"), ("reqDN", "dc=example,dc=com"), ("entryCSN", csn)):  # fmt: skip
        entry.put(name.lower(), name, [value.encode()])
    return entry


def test_replay_stored_once_and_a_taken_req_start_moves_on(tmp_path: Path):
    conf = tmp_path / "slapd.conf"
    conf.write_text(conf_for(tmp_path, "logops writes"))
    config = load_slapd_conf(str(conf))
    directory = Directory(config, build_schema(config))
    try:
        main = next(b for b in directory.backends if b.suffix_ndn == "dc=example,dc=com")
        directory.configure_overlays(main)
        accesslog = main.overlays.get("accesslog")
        start = "20261125170000.000001Z"
        first = log_entry(start, "20261125170000.000001Z#000000#000#000000")
        accesslog.store(first)
        accesslog.store(first)  # a replay
        accesslog.store(log_entry(start, "20261125170000.000002Z#000000#000#000000"))
        log = accesslog.log_backend
        with log.db.read() as txn:
            starts = sorted((e.first("reqstart") or b"").decode() for e in txn.search(log.suffix_ndn, 1))
        assert starts == [start, "20261125170000.000003Z"]
    finally:
        directory.close()
