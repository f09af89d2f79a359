"""Sans-I/O tests of the syncprov provider and the syncrepl consumer: real databases, no sockets, a fake clock.

The provider answers sync searches into a FakeConnection that decodes what it is sent; the consumer is fed the
messages a provider would send. Time comes from an injected clock, so CSNs are predictable.
"""

from __future__ import annotations

import pytest

from pyldapd.config.model import DatabaseConfig, OverlayConfig, ServerConfig
from pyldapd.model.csn import CSNGenerator, format_cookie, parse_cookie
from pyldapd.model.filter import parse_filter
from pyldapd.model.schema import Schema
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ldap import Control
from pyldapd.replication.consumer import SyncConsumer
from pyldapd.replication.provider import ProviderSettings, SessionLog, SyncProvider
from pyldapd.replication.spec import SyncreplError, parse_retry, parse_syncrepl
from pyldapd.replication.state import CONTEXT_CSN_KEY, Change, entry_uuid_bytes
from pyldapd.server.directory import Directory, Session
from pyldapd.server.errors import LDAPError

SUFFIX = "dc=example,dc=com"
ROOTDN = "cn=admin,dc=example,dc=com"


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


class FakeConnection:
    """What the provider talks to: collects the PDUs it would write to a socket, decoded."""

    def __init__(self) -> None:
        self.session = Session(conn_id=1, bind_dn=ROOTDN, bind_ndn="cn=admin,dc=example,dc=com")
        self.messages: list[ldap.LDAPMessage] = []

    def send(self, data: bytes) -> None:
        self.messages.append(ldap.decode_message(data))

    def result(
        self, message_id, tag, code, text="", matched="", *, controls=None, nentries=None, **_
    ) -> None:
        self.send(ldap.encode_result(message_id, tag, code, matched, text, controls=controls or None))

    def take(self) -> list[ldap.LDAPMessage]:
        messages, self.messages = self.messages, []
        return messages


def make_directory(tmp_path, name: str, server_id: int, *, syncprov: bool = True, sessionlog: int = 100,
                   syncrepl: list[str] | None = None, multiprovider: bool = False) -> Directory:  # fmt: skip
    db = DatabaseConfig(type="mdb", declared_type="mdb", suffixes=[SUFFIX], rootdn=ROOTDN, rootpw=b"secret",
                        directory=str(tmp_path / name), syncrepl=syncrepl or [], multiprovider=multiprovider)  # fmt: skip
    db.indexes = {"entryUUID": {"eq"}, "entryCSN": {"eq"}, "objectClass": {"eq"}}
    if syncprov:
        db.overlays.append(OverlayConfig("syncprov", [("syncprov-sessionlog", [str(sessionlog)])]))
    directory = Directory(ServerConfig(databases=[db]), Schema.default(), server_id)
    directory.csn = CSNGenerator(server_id, clock=FakeClock())
    backend = directory.backends[0]
    if syncprov:
        backend.provider = SyncProvider(
            directory, backend, ProviderSettings.from_overlay(db.overlays[0].settings)
        )
    return directory


def root(directory: Directory) -> Session:
    return Session(conn_id=0, bind_dn=ROOTDN, bind_ndn=directory.backends[0].rootdn_ndn)


def add(directory: Directory, dn: str, *attrs: tuple[str, list[bytes]]) -> None:
    directory.add(root(directory), ldap.AddRequest(dn, list(attrs)), [])


def populate(directory: Directory) -> None:
    add(
        directory,
        SUFFIX,
        ("objectClass", [b"dcObject", b"organization"]),
        ("o", [b"Ex"]),
        ("dc", [b"example"]),
    )
    add(directory, f"ou=People,{SUFFIX}", ("objectClass", [b"organizationalUnit"]), ("ou", [b"People"]))
    for uid in ("a", "b", "c"):
        add(
            directory, f"uid={uid},ou=People,{SUFFIX}", ("objectClass", [b"account"]), ("uid", [uid.encode()])
        )


def sync_search(directory: Directory, conn: FakeConnection, mode: int, cookie: str | None,
                base: str = SUFFIX, filter_: str = "(objectClass=*)") -> bool:  # fmt: skip
    request = ldap.SearchRequest(base, 2, 0, 0, 0, False, parse_filter(filter_), ["*", "+"])
    value = ctl.encode_sync_request(ctl.SyncRequest(mode, cookie.encode() if cookie else None, True))
    return directory.sync_search(conn, 7, request, [], Control(ctl.SYNC_REQUEST, False, value))


def states(messages) -> list[tuple[str, int]]:
    out = []
    for message in messages:
        if isinstance(message.op, ldap.SearchResultEntry):
            state = ctl.decode_sync_state(ctl.find_control(message.controls, ctl.SYNC_STATE).value)
            out.append((message.op.dn, state.state))
    return out


def done_control(messages) -> ctl.SyncDone:
    final = messages[-1]
    assert isinstance(final.op, ldap.SearchResultDone)
    return ctl.decode_sync_done(ctl.find_control(final.controls, ctl.SYNC_DONE).value)


def infos(messages) -> list:
    return [ctl.decode_sync_info(m.op.value) for m in messages if isinstance(m.op, ldap.IntermediateResponse)]


# -- the syncrepl directive ---------------------------------------------------------------------------------


def test_syncrepl_directive_defaults_and_keywords():
    spec = parse_syncrepl('rid=002 provider=ldap://h:389/ searchbase="dc=example,dc=com" bindmethod=simple '
                          'binddn="cn=admin,dc=example,dc=com" credentials=s type=refreshAndPersist retry="60 +"')  # fmt: skip
    assert (spec.rid, spec.provider, spec.persist, spec.retry) == (2, "ldap://h:389/", True, [(60, -1)])
    assert spec.attrs == ["*", "+"] and spec.scope == 2 and spec.filter == "(objectclass=*)"
    assert spec.schemachecking is False and spec.interval == 60
    spec = parse_syncrepl("{3}rid=7 provider=ldapi:/// searchbase=dc=x interval=01:02:03:04 scope=one")
    assert spec.interval == ((1 * 24 + 2) * 60 + 3) * 60 + 4 and spec.scope == 1 and not spec.persist
    assert parse_syncrepl("rid=1 provider=ldap://h/ searchbase=dc=x").retry == [(3600, -1)]
    assert parse_retry("5 10 300 +") == [(5, 10), (300, -1)]
    with pytest.raises(SyncreplError, match="missing rid"):
        parse_syncrepl("provider=ldap://h/ searchbase=dc=x")
    with pytest.raises(SyncreplError, match="unable to parse"):
        parse_syncrepl("rid=1 provider=ldap://h/ searchbase=dc=x frobnicate=1")
    with pytest.raises(SyncreplError):
        parse_syncrepl('rid=1 provider=ldap://h/ searchbase=dc=x retry="60"')


def test_session_log_bounds():
    log = SessionLog(2, {})
    uuid = bytes(range(16))
    csns = [f"2026010100000{i}.000000Z#000000#001#000000" for i in range(4)]
    for csn in csns:
        log.add(Change("delete", None, None, csn))  # no uuid: ignored
    assert not log.records

    class E:
        def first(self, key):
            return b"00010203-0405-0607-0809-0a0b0c0d0e0f"

    for csn in csns:
        log.add(Change("modify", E(), E(), csn))  # type: ignore[arg-type]
    assert [r[0] for r in log.records] == csns[2:] and log.lower_bounds == {1: csns[1]}
    assert log.covers({1: csns[1]}) and not log.covers({1: csns[0]})
    assert [r[0] for r in log.since({1: csns[2]}, {1: csns[3]})] == [csns[3]]
    assert entry_uuid_bytes(E()) == uuid  # type: ignore[arg-type]


# -- provider -----------------------------------------------------------------------------------------------


def test_initial_load_nothing_changed_and_stale_state(tmp_path):
    provider = make_directory(tmp_path, "p", 1)
    populate(provider)
    conn = FakeConnection()
    assert sync_search(provider, conn, ctl.SYNC_MODE_REFRESH_ONLY, "rid=005") is False
    messages = conn.take()
    assert [state for _, state in states(messages)] == [ctl.SYNC_STATE_ADD] * 5
    done = done_control(messages)
    assert done.refresh_deletes is True
    cookie = parse_cookie(done.cookie)
    assert cookie.rid == 5 and cookie.sid == 1 and list(cookie.csns) == [1]
    # the same cookie again: nothing but the end of the refresh, with no cookie
    sync_search(provider, conn, ctl.SYNC_MODE_REFRESH_ONLY, done.cookie.decode())
    messages = conn.take()
    assert states(messages) == [] and done_control(messages) == ctl.SyncDone(None, True)
    # a consumer claiming a newer state for the provider's own server ID is refused
    newer = format_cookie(5, None, ["29991231000000.000000Z#000000#001#000000"])
    with pytest.raises(LDAPError, match="newer than provider"):
        sync_search(provider, conn, ctl.SYNC_MODE_REFRESH_ONLY, newer)


def test_a_start_without_the_vector_takes_its_own_newest_csn_from_the_index_alone(tmp_path, monkeypatch):
    """A start on a database without its contextCSN vector: the vector is raised to this server's newest
    entryCSN, found walking back the csn index over newer CSNs of other servers, not by reading every entry."""
    provider = make_directory(tmp_path, "p", 2, syncprov=False)
    populate(provider)
    newest = provider.backends[0].context.csns.as_dict()[2]
    provider.csn = CSNGenerator(5, clock=FakeClock(1_900_000_000.0))  # another server's, later, changes
    for uid in ("d", "e"):
        add(provider, f"uid={uid},ou=People,{SUFFIX}", ("objectClass", [b"account"]), ("uid", [uid.encode()]))
    db = provider.backends[0].db
    with db.write() as txn:  # a database whose vector is lost (made by a tool, a format upgrade)
        txn.delete_raw_metadata(CONTEXT_CSN_KEY)
    db.close()

    from pyldapd.backends.mdb import MdbDatabase

    decoded = []
    real_decode = MdbDatabase._decode
    monkeypatch.setattr(
        MdbDatabase, "_decode", lambda db, *a, **k: decoded.append(a[0]) or real_decode(db, *a, **k)
    )
    again = make_directory(tmp_path, "p", 2, syncprov=False)
    assert again.backends[0].context.csns.as_dict() == {2: newest}  # its own server's CSNs only
    assert len(decoded) <= 1  # the suffix entry (its contextCSN), nothing else
    again.close()


def test_delete_phase_from_session_log_and_present_phase_without(tmp_path):
    for sessionlog, expect_delete_phase in ((100, True), (0, False)):
        provider = make_directory(tmp_path, f"p{sessionlog}", 1, sessionlog=sessionlog)
        populate(provider)
        conn = FakeConnection()
        sync_search(provider, conn, ctl.SYNC_MODE_REFRESH_ONLY, "rid=001")
        cookie = done_control(conn.take()).cookie.decode()
        provider.delete(root(provider), ldap.DelRequest(f"uid=a,ou=People,{SUFFIX}"), [])
        provider.modify(root(provider), ldap.ModifyRequest(f"uid=b,ou=People,{SUFFIX}",
                                                           [ldap.Change(2, "description", [b"x"])]), [])  # fmt: skip
        sync_search(provider, conn, ctl.SYNC_MODE_REFRESH_ONLY, cookie)
        messages = conn.take()
        assert states(messages) == [(f"uid=b,ou=People,{SUFFIX}", ctl.SYNC_STATE_ADD)]
        id_sets = [i for i in infos(messages) if isinstance(i, ctl.SyncInfoIdSet)]
        if expect_delete_phase:
            assert len(id_sets) == 1 and id_sets[0].refresh_deletes and len(id_sets[0].uuids) == 1
            assert parse_cookie(id_sets[0].cookie).delcsn is not None
            assert done_control(messages).refresh_deletes is True
        else:
            assert sum(len(i.uuids) for i in id_sets) == 4 and not any(i.refresh_deletes for i in id_sets)
            assert done_control(messages).refresh_deletes is False


def test_persist_pushes_changes_and_skips_the_originator(tmp_path):
    provider = make_directory(tmp_path, "p", 1)
    populate(provider)
    conn, peer = FakeConnection(), FakeConnection()
    assert sync_search(provider, conn, ctl.SYNC_MODE_REFRESH_AND_PERSIST, "rid=002") is True
    assert sync_search(provider, peer, ctl.SYNC_MODE_REFRESH_AND_PERSIST, "rid=003,sid=003") is True
    assert isinstance(infos(conn.take())[-1], ctl.SyncInfoRefreshDelete)
    peer.take()
    add(provider, f"uid=d,ou=People,{SUFFIX}", ("objectClass", [b"account"]), ("uid", [b"d"]))
    provider.delete(root(provider), ldap.DelRequest(f"uid=a,ou=People,{SUFFIX}"), [])
    pushed = conn.take()
    assert states(pushed) == [(f"uid=d,ou=People,{SUFFIX}", ctl.SYNC_STATE_ADD),
                              (f"uid=a,ou=People,{SUFFIX}", ctl.SYNC_STATE_DELETE)]  # fmt: skip
    cookie = ctl.decode_sync_state(ctl.find_control(pushed[0].controls, ctl.SYNC_STATE).value).cookie
    assert parse_cookie(cookie).rid == 2 and len(parse_cookie(cookie).csns) == 1
    # a change that came from server 3 is not echoed back to server 3's consumer
    backend = provider.backends[0]
    with backend.db.read() as txn:
        entry = txn.get("uid=b,ou=people,dc=example,dc=com")
    peer.take()
    backend.publish(Change("modify", entry, entry, "20300101000000.000000Z#000000#003#000000", relay_sid=3))
    assert peer.take() == [] and len(states(conn.take())) == 1
    provider.stop_sync_search(conn, 7, ldap.ResultCode.cancelled)
    assert isinstance(conn.take()[-1].op, ldap.SearchResultDone)


# -- consumer -----------------------------------------------------------------------------------------------


def consumer_for(tmp_path, **kw) -> SyncConsumer:
    spec = f'rid=001 provider=ldap://127.0.0.1:9/ searchbase="{SUFFIX}" type=refreshAndPersist'
    directory = make_directory(tmp_path, "c", 2, syncprov=False, syncrepl=[spec], **kw)
    return SyncConsumer(directory, directory.backends[0], parse_syncrepl(spec))


def entry_message(dn: str, uuid: bytes, csn: str, state: int = ctl.SYNC_STATE_ADD, cookie: str | None = None,
                  **attrs: list[bytes]):  # fmt: skip
    attributes = [("objectClass", [b"account"]), ("uid", [dn.split(",")[0][4:].encode()]),
                  ("entryCSN", [csn.encode()])] + list(attrs.items())  # fmt: skip
    if dn == SUFFIX:
        attributes = [("objectClass", [b"dcObject", b"organization"]), ("o", [b"Ex"]), ("dc", [b"example"]),
                      ("entryCSN", [csn.encode()])]  # fmt: skip
    control = Control(ctl.SYNC_STATE, False,
                      ctl.encode_sync_state(ctl.SyncState(state, uuid, cookie.encode() if cookie else None)))  # fmt: skip
    return ldap.SearchResultEntry(dn, attributes), [control]


def local_dump(consumer: SyncConsumer, manage: bool = True) -> dict[str, bytes]:
    with consumer.backend.db.read() as txn:
        return {e.dn: e.first("entrycsn") for e in txn.search(consumer.backend.suffix_ndn, 2, None)}


CSN1 = "20260101000001.000000Z#000000#001#000000"
CSN2 = "20260101000002.000000Z#000000#001#000000"
CSN3 = "20260101000003.000000Z#000000#001#000000"


def test_consumer_applies_with_glue_last_writer_wins_and_too_old(tmp_path):
    consumer = consumer_for(tmp_path)
    u1, u2 = bytes([1] * 16), bytes([2] * 16)
    # a child whose parents are missing: glue ancestors are made
    consumer.on_entry(*entry_message(f"uid=x,ou=People,{SUFFIX}", u1, CSN2))
    dump = local_dump(consumer)
    assert set(dump) == {SUFFIX, f"ou=People,{SUFFIX}", f"uid=x,ou=People,{SUFFIX}"}
    with consumer.backend.db.read() as txn:
        assert txn.get("ou=people,dc=example,dc=com").get("objectclass") == [b"top", b"glue"]
    # an older version of the same entry loses (and is counted as a conflict); a newer one wins
    consumer.on_entry(*entry_message(f"uid=x,ou=People,{SUFFIX}", u1, CSN1, description=[b"old"]))
    assert consumer.conflicts == 1 and local_dump(consumer)[f"uid=x,ou=People,{SUFFIX}"] == CSN2.encode()
    consumer.on_entry(*entry_message(f"uid=x,ou=People,{SUFFIX}", u1, CSN3, ctl.SYNC_STATE_MODIFY,
                                     cookie=f"rid=001,sid=001,csn={CSN3}", description=[b"new"]))  # fmt: skip
    assert local_dump(consumer)[f"uid=x,ou=People,{SUFFIX}"] == CSN3.encode()
    assert consumer.backend.context.csns.as_dict() == {1: CSN3}
    # a persist message with a CSN at or below the state is a duplicate from another path
    consumer.on_entry(*entry_message(f"uid=y,ou=People,{SUFFIX}", u2, CSN2, cookie=f"rid=001,csn={CSN2}"))
    assert f"uid=y,ou=People,{SUFFIX}" not in local_dump(consumer)


def test_consumer_present_phase_deletes_what_the_provider_lacks(tmp_path):
    consumer = consumer_for(tmp_path)
    uuids = [bytes([i] * 16) for i in range(1, 5)]
    consumer.on_entry(*entry_message(SUFFIX, uuids[0], CSN1))
    for uid, u in zip("ab", uuids[1:3], strict=True):
        consumer.on_entry(*entry_message(f"uid={uid},{SUFFIX}", u, CSN1))
    consumer.on_info(ctl.SyncInfoRefreshDelete(f"rid=001,csn={CSN1}".encode(), True))
    assert consumer.state == "persisting"
    # a later present phase mentions the suffix and a only: b is gone at the provider
    consumer.refresh_done = consumer.refresh_ended = False  # a new session
    consumer.on_info(ctl.SyncInfoIdSet(None, False, [uuids[0], uuids[1]]))
    consumer.on_info(ctl.SyncInfoRefreshPresent(f"rid=001,csn={CSN2}".encode(), True))
    assert set(local_dump(consumer)) == {SUFFIX, f"uid=a,{SUFFIX}"}
    with pytest.raises(Exception, match="multiple refreshDone"):
        consumer.on_info(ctl.SyncInfoRefreshDelete(None, True))


def test_clock_safety_and_future_warning(tmp_path, capsys):
    consumer = consumer_for(tmp_path)
    consumer.observe("29990101000000.000000Z#000000#007#000000")
    assert consumer.directory.csn.next() > "29990101000000.000000Z#000000#007#000000"
    assert "from server ID 007 is in the future" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        ("syncdata=accesslog", "syncdata=accesslog needs logbase"),
        ("syncdata=accesslog logbase=cn=log logfilter=(&(a=b)", "invalid logfilter"),
        ("syncdata=changelog", "syncdata=changelog .* is not supported"),
        ("strictrefresh", "strictrefresh is not supported"),
        ("manageDSAit=on", "manageDSAit=on is not supported"),
    ],
)
def test_syncrepl_keywords_without_effect_are_refused(extra, message):
    """A keyword pyldapd would not act on is refused, never replicated around (nothing accepted and ignored)."""
    with pytest.raises(SyncreplError, match=message):
        parse_syncrepl(f"rid=001 provider=ldap://127.0.0.1:389/ searchbase=dc=example,dc=com {extra}")
    assert parse_syncrepl("rid=001 provider=ldap://x/ searchbase=dc=x syncdata=default managedsait=off")
    delta = parse_syncrepl('rid=001 provider=ldap://x/ searchbase=dc=x syncdata=accesslog logbase="cn=log" '
                           'logfilter="(&(objectClass=auditWriteObject)(reqResult=0))"')  # fmt: skip
    assert delta.delta and delta.logbase == "cn=log" and delta.logfilter.startswith("(&(objectClass")


def test_syncrepl_suffixmassage_is_kept():
    """Its effect, side by side with slapd: tests/replication/test_suffixmassage.py."""
    spec = parse_syncrepl(
        'rid=001 provider=ldap://x/ searchbase="cn=config,cn=consumer" suffixmassage="cn=config"'
    )
    assert (spec.searchbase, spec.suffixmassage) == ("cn=config,cn=consumer", "cn=config")
