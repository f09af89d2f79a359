"""Delta-syncrepl (issue 11): a consumer with `syncdata=accesslog` replays its provider's accesslog. pyldapd and
Debian's slapd, as provider and as consumer, converge to identical content (entryCSN, entryUUID and the
timestamps included); a consumer whose cookie the log no longer covers (logpurge) falls back to a full refresh
and goes back to the log."""

from __future__ import annotations

import pytest

from tests.replication.delta import (
    INDEXES,
    delta_consumer_conf,
    delta_provider_conf,
    delta_stanza,
    log_entries,
)
from tests.replication.helpers import BASE, add, modify, person, wait_converged, wait_for
from tests.servers import SUFFIX, ldap_tool, slapd_conf, start_pyldapd, start_slapd

PEOPLE = f"ou=People,{SUFFIX}"
CHANGES = (
    f"dn: uid=alice,{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: changed\n-\n"
    "add: mail\nmail: alice@example.com\n-\ndelete: telephoneNumber\n\n"
    f"dn: uid=alice,{PEOPLE}\nchangetype: modify\nreplace: sn\nsn: other\n-\nreplace: sn\nsn: last\n-\n"
    "add: description\ndescription: d1\n-\nadd: description\ndescription: d2\n\n"  # the log's ':' separator
    f"dn: uid=bob,{PEOPLE}\nchangetype: modrdn\nnewrdn: uid=robert\ndeleteoldrdn: 0\n\n"
    f"dn: uid=carol,{PEOPLE}\nchangetype: delete\n\n"
    f"dn: uid=robert,{PEOPLE}\nchangetype: modrdn\nnewrdn: uid=robert\ndeleteoldrdn: 1\n"
    f"newsuperior: ou=Groups,{SUFFIX}\n\n"
)
STARTERS = {"pyldapd": start_pyldapd, "slapd": start_slapd}


def people() -> str:
    return (person("alice", description="first", telephoneNumber="+1 555 0100") + "\n" + person("bob") + "\n"
            + person("carol") + "\n")  # fmt: skip


@pytest.mark.parametrize(
    "provider_kind, consumer_kind",
    [("pyldapd", "pyldapd"), ("slapd", "pyldapd"), ("pyldapd", "slapd")],
)
def test_delta_refresh_and_persist(tmp_path, provider_kind, consumer_kind):
    """Initial load (a full refresh: the consumer has no cookie), then the persist stage replays each logged
    add, modify, modrdn (with and without newSuperior) and delete; after a consumer restart the changes it
    missed come from the log, with no second full refresh."""
    provider = STARTERS[provider_kind](tmp_path / "p", delta_provider_conf(tmp_path / "p" / "db",
                                       slapd=provider_kind == "slapd"), name="provider")  # fmt: skip
    consumer = None
    try:
        add(provider, BASE + "\n" + people())
        start_consumer = STARTERS[consumer_kind]
        consumer_conf = delta_consumer_conf(
            tmp_path / "c" / "db", provider.url, slapd=consumer_kind == "slapd"
        )
        consumer = start_consumer(tmp_path / "c", consumer_conf, name="consumer")
        wait_converged([provider, consumer])
        modify(provider, CHANGES)
        add(provider, person("dave", description="new"))
        common = wait_converged([provider, consumer])
        assert f"dn: uid=robert,ou=Groups,{SUFFIX}" in dict(common)
        consumer.stop()
        modify(
            provider, f"dn: uid=alice,{PEOPLE}\nchangetype: modify\nadd: description\ndescription: offline\n"
        )
        modify(provider, f"dn: uid=dave,{PEOPLE}\nchangetype: delete\n")
        add(provider, person("erin"))
        consumer = start_consumer(tmp_path / "c", consumer_conf, name="consumer")
        wait_converged([provider, consumer])
        if provider_kind == "pyldapd":  # the consumer (slapd's too) reads the log
            assert 'SRCH base="cn=accesslog"' in provider.log()
        if consumer_kind == "pyldapd":
            log = consumer.log()
            assert log.count("delta-sync: full refresh of the content") == 1, log[-3000:]
            assert "delta-sync search of cn=accesslog" in log
    finally:
        provider.stop()
        if consumer is not None:
            consumer.stop()


@pytest.mark.parametrize("provider_kind", ["pyldapd", "slapd"])
@pytest.mark.parametrize("how", ["logpurge", "log cleared"])
def test_fallback_to_full_refresh_when_the_log_cannot_cover_the_cookie(tmp_path, provider_kind, how):
    """The changes a stopped consumer missed are no longer in the log (logpurge removed them, or the log
    database was emptied): the provider answers e-syncRefreshRequired (minCSN of the log is past the cookie),
    the consumer makes a full refresh of the content, deletes included, then goes back to the log."""
    purge = "00:00:02 00:00:01" if how == "logpurge" else ""
    conf = delta_provider_conf(tmp_path / "p" / "db", slapd=provider_kind == "slapd", purge=purge)
    start_provider = STARTERS[provider_kind]
    provider = start_provider(tmp_path / "p", conf, name="provider")
    consumer = None
    try:
        add(provider, BASE + "\n" + people())
        consumer_conf = delta_consumer_conf(tmp_path / "c" / "db", provider.url, slapd=False)
        consumer = start_pyldapd(tmp_path / "c", consumer_conf, name="consumer")
        wait_converged([provider, consumer])
        consumer.stop()
        modify(
            provider,
            f"dn: uid=alice,{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: missed\n",
        )
        modify(provider, f"dn: uid=carol,{PEOPLE}\nchangetype: delete\n")
        if how == "logpurge":
            wait_for(lambda: log_entries(provider) == 0, 30, what="the purge of the log")
        else:
            provider.stop()
            for path in (tmp_path / "p" / "log").iterdir():
                path.unlink()
            provider = start_provider(tmp_path / "p", conf, name="provider", port=provider.port)
        add(provider, person("erin"))
        consumer = start_pyldapd(tmp_path / "c", consumer_conf, name="consumer")
        common = dict(wait_converged([provider, consumer]))
        assert f"dn: uid=carol,{PEOPLE}" not in common and f"dn: uid=erin,{PEOPLE}" in common
        log = consumer.log()
        assert "switching to a full refresh" in log, log[-3000:]
        searches = log.count("delta-sync search of cn=accesslog")
        modify(provider, f"dn: uid=bob,{PEOPLE}\nchangetype: modify\nadd: description\ndescription: after\n")
        wait_converged([provider, consumer])
        assert (
            consumer.log().count("delta-sync search of cn=accesslog") == searches
        )  # the log again, same search
    finally:
        provider.stop()
        if consumer is not None:
            consumer.stop()


@pytest.mark.parametrize("type_", ["refreshAndPersist", "refreshOnly"])
def test_cascade_through_a_delta_consumer_that_logs_what_it_applies(tmp_path, type_):
    """provider -> B -> C, both delta consumers: B's own accesslog records each change it replays (with the
    change's CSN, stamps and modifications), and C replays B's log. refreshOnly polls the log every interval."""
    provider = start_pyldapd(
        tmp_path / "p", delta_provider_conf(tmp_path / "p" / "db", slapd=False), name="provider"
    )
    servers = [provider]
    try:
        add(provider, BASE + "\n" + people())
        middle_conf = delta_provider_conf(tmp_path / "b" / "db", slapd=False, consumer_of=provider.url)
        middle = start_pyldapd(tmp_path / "b", middle_conf.replace("refreshAndPersist", type_), name="middle")
        servers.append(middle)
        last_conf = delta_consumer_conf(tmp_path / "c" / "db", middle.url, slapd=False, type_=type_)
        servers.append(start_pyldapd(tmp_path / "c", last_conf, name="last"))
        wait_converged(servers)
        modify(provider, CHANGES)
        add(provider, person("dave", description="new"))
        wait_converged(servers)
        assert log_entries(middle) >= 7  # its initial load, then every replayed change
        assert 'SRCH base="cn=accesslog"' in middle.log()
    finally:
        for server in servers:
            server.stop()


def test_delta_stanza_added_over_cn_config(tmp_path):
    """olcSyncrepl with syncdata=accesslog added at run time starts a delta consumer; one without logbase is
    refused (80), as every syncrepl value pyldapd cannot act on."""
    provider = start_pyldapd(
        tmp_path / "p", delta_provider_conf(tmp_path / "p" / "db", slapd=False), name="provider"
    )
    conf = slapd_conf(
        tmp_path / "c" / "db", indexes=INDEXES, extra_global="database config\nrootpw configpw\n"
    )
    consumer = start_pyldapd(tmp_path / "c", conf, name="consumer")
    config = ["-H", consumer.url, "-x", "-D", "cn=config", "-w", "configpw"]
    change = "dn: olcDatabase={{1}}mdb,cn=config\nchangetype: modify\nadd: olcSyncrepl\nolcSyncrepl: {}\n"
    try:
        add(provider, BASE + "\n" + people())
        stanza = delta_stanza(1, provider.url).removeprefix("syncrepl ").strip()
        refused = ldap_tool(
            "ldapmodify", *config, input=change.format(stanza.replace('logbase="cn=accesslog" ', ""))
        )
        assert refused.returncode == 80 and "needs logbase" in refused.stderr, refused.stderr
        done = ldap_tool("ldapmodify", *config, input=change.format(stanza))
        assert done.returncode == 0, done.stderr
        wait_converged([provider, consumer])
        modify(provider, CHANGES)
        wait_converged([provider, consumer])
        assert 'SRCH base="cn=accesslog"' in provider.log()
    finally:
        provider.stop()
        consumer.stop()
