"""Delta-syncrepl (issue 11): a consumer with `syncdata=accesslog` replays its provider's accesslog. pyldapd and
Debian's slapd, as provider and as consumer, converge to identical content (entryCSN, entryUUID and the
timestamps included); a consumer whose cookie the log no longer covers (logpurge) falls back to a full refresh
and goes back to the log."""

from __future__ import annotations

import pytest

from tests.replication.delta import delta_consumer_conf, delta_provider_conf
from tests.replication.helpers import BASE, add, modify, person, wait_converged
from tests.servers import SUFFIX, start_pyldapd, start_slapd

PEOPLE = f"ou=People,{SUFFIX}"
CHANGES = (
    f"dn: uid=alice,{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: changed\n-\n"
    "add: mail\nmail: alice@example.com\n-\ndelete: telephoneNumber\n\n"
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
