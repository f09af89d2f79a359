"""LDAP Sync replication with real processes: pyldapd and Debian's slapd as providers and consumers.

Modelled on OpenLDAP's test017 (refreshOnly), test018 (refreshAndPersist, restarts) and filtered/glue scenarios:
after every step the servers' dumps (user attributes plus entryUUID, entryCSN, timestamps and names) must match.
"""

from __future__ import annotations

import pytest

from tests.replication.helpers import (
    BASE,
    add,
    consumer_conf,
    dump,
    modify,
    person,
    provider_conf,
    wait_converged,
    wait_for,
)
from tests.servers import SUFFIX, ldap_tool, start_pyldapd, start_slapd

STARTERS = {"pyldapd": start_pyldapd, "slapd": start_slapd}


def start(kind: str, root, name: str, conf_fn, port: int | None = None, **kw):
    directory = root / name / "db"
    directory.mkdir(parents=True, exist_ok=True)
    return STARTERS[kind](
        root / name, conf_fn(directory, slapd=(kind == "slapd"), **kw), name=name, port=port
    )


CHANGES = f"""dn: uid=u1,ou=People,{SUFFIX}
changetype: modify
replace: cn
cn: Changed One
-
add: mail
mail: u1@example.com

dn: uid=u2,ou=People,{SUFFIX}
changetype: delete

dn: uid=u3,ou=People,{SUFFIX}
changetype: modrdn
newrdn: uid=u3b
deleteoldrdn: 0

dn: ou=Staff,{SUFFIX}
changetype: add
objectClass: organizationalUnit
ou: Staff

dn: uid=u7,ou=Staff,{SUFFIX}
changetype: add
objectClass: inetOrgPerson
cn: Seven
sn: u7
uid: u7

dn: uid=u4,ou=People,{SUFFIX}
changetype: modrdn
newrdn: uid=u4
deleteoldrdn: 1
newsuperior: ou=Groups,{SUFFIX}

dn: ou=Staff,{SUFFIX}
changetype: modrdn
newrdn: ou=Team
deleteoldrdn: 1
"""


def populate(provider) -> None:
    add(provider, BASE)
    add(provider, "\n".join(person(f"u{i}") for i in range(1, 6)))


@pytest.mark.parametrize(
    "provider_kind, consumer_kind",
    [("pyldapd", "pyldapd"), ("slapd", "pyldapd"), ("pyldapd", "slapd")],
)
@pytest.mark.parametrize("type_", ["refreshAndPersist", "refreshOnly"])
def test_replication_scenario(tmp_path, provider_kind, consumer_kind, type_):
    provider = start(provider_kind, tmp_path, "provider", provider_conf)
    consumer = None
    try:
        populate(provider)
        extra = "interval=00:00:00:01" if type_ == "refreshOnly" else ""
        consumer = start(consumer_kind, tmp_path, "consumer", consumer_conf, provider_url=provider.url,
                         type_=type_, extra=extra)  # fmt: skip
        wait_converged([provider, consumer])
        modify(provider, CHANGES)
        common = wait_converged([provider, consumer])
        dns = [dn for dn, _ in common]
        assert (
            f"dn: uid=u4,ou=Groups,{SUFFIX}" in dns
            and f"dn: uid=u7,ou=Team,{SUFFIX}" in dns
            and f"dn: uid=u2,ou=People,{SUFFIX}" not in dns
        )
        # consumer offline while the provider changes (the session log covers the gap)
        consumer.stop()
        modify(provider, f"dn: uid=u5,ou=People,{SUFFIX}\nchangetype: delete\n")
        add(provider, person("u6", mail="x@y"))
        modify(provider, f"dn: uid=u1,ou=People,{SUFFIX}\nchangetype: modify\nreplace: sn\nsn: Renamed\n")
        consumer = start(consumer_kind, tmp_path, "consumer", consumer_conf, provider_url=provider.url,
                         type_=type_, extra=extra)  # fmt: skip
        wait_converged([provider, consumer])
        # provider restart: the consumer resumes from its cookie
        provider.stop()
        provider = start(provider_kind, tmp_path, "provider", provider_conf, port=provider.port)
        modify(
            provider, f"dn: uid=u6,ou=People,{SUFFIX}\nchangetype: modify\nadd: description\ndescription: x\n"
        )
        wait_converged([provider, consumer])
        if consumer_kind == "pyldapd":  # it resumed from its cookie: no reload from scratch
            requests = [line for line in consumer.log().splitlines() if "sync search with cookie" in line]
            assert len(requests) >= 2 and all(",csn=" in line for line in requests[1:])
        # a read-only consumer refers writes to its provider
        result = ldap_tool("ldapmodify", "-H", consumer.url, "-x", "-D", "cn=admin,dc=example,dc=com", "-w",
                           "secret", input=f"dn: uid=u1,ou=People,{SUFFIX}\nchangetype: delete\n")  # fmt: skip
        assert result.returncode == 10, result.stderr
    finally:
        provider.stop()
        if consumer is not None:
            consumer.stop()


@pytest.mark.parametrize("provider_kind", ["pyldapd", "slapd"])
def test_present_phase_without_session_log(tmp_path, provider_kind):
    """With no session log the provider sends a present phase; deletes while offline still reach the consumer."""
    provider = start(provider_kind, tmp_path, "provider", provider_conf, sessionlog=0)
    consumer = start("pyldapd", tmp_path, "consumer", consumer_conf, provider_url=provider.url)
    try:
        populate(provider)
        wait_converged([provider, consumer])
        consumer.stop()
        modify(provider, f"dn: uid=u2,ou=People,{SUFFIX}\nchangetype: delete\n\n"
                         f"dn: uid=u3,ou=People,{SUFFIX}\nchangetype: delete\n")  # fmt: skip
        consumer = start("pyldapd", tmp_path, "consumer", consumer_conf, provider_url=provider.url)
        common = wait_converged([provider, consumer])
        assert f"dn: uid=u3,ou=People,{SUFFIX}" not in [dn for dn, _ in common]
    finally:
        provider.stop()
        consumer.stop()


@pytest.mark.parametrize("provider_kind", ["pyldapd", "slapd"])
def test_filtered_replication_creates_glue(tmp_path, provider_kind):
    provider = start(provider_kind, tmp_path, "provider", provider_conf)
    consumer = start("pyldapd", tmp_path, "consumer", consumer_conf, provider_url=provider.url,
                     extra='filter="(objectClass=inetOrgPerson)"')  # fmt: skip
    try:
        populate(provider)
        wait_for(lambda: len(dump(consumer)) == 5, what="the five people on the consumer")
        people = dump(consumer)
        assert all("uid=u" in dn for dn, _ in people)
        glue = [
            entry for entry in dump(consumer, manage=True, attrs=["objectClass"]) if "uid=u" not in entry[0]
        ]
        assert sorted(dn for dn, _ in glue) == sorted([f"dn: ou=People,{SUFFIX}", f"dn: {SUFFIX}"])
        assert all(attrs == ("objectclass: glue", "objectclass: top") for _, attrs in glue)
        provider_people = [e for e in dump(provider) if "uid=u" in e[0]]
        assert people == provider_people
    finally:
        provider.stop()
        consumer.stop()


@pytest.mark.parametrize("consumer_kind", ["pyldapd", "slapd"])
def test_a_subtree_filter_on_entrydn_replicates_that_subtree(tmp_path, consumer_kind):
    """A consumer's filter of slapd's DN relation rule on the computed entryDN (a common way to replicate one
    subtree of a suffix) selects that subtree on a pyldapd provider, changes included."""
    provider = start("pyldapd", tmp_path, "provider", provider_conf)
    consumer = start(consumer_kind, tmp_path, "consumer", consumer_conf, provider_url=provider.url,
                     extra=f'filter="(entryDN:dnSubtreeMatch:=ou=People,{SUFFIX})"')  # fmt: skip
    try:
        populate(provider)
        add(provider, person("g1", parent=f"ou=Groups,{SUFFIX}"))
        people = [f"dn: ou=People,{SUFFIX}"] + [f"dn: uid=u{i},ou=People,{SUFFIX}" for i in range(1, 6)]
        wait_for(lambda: sorted(dn for dn, _ in dump(consumer)) == sorted(people), what="the People subtree")
        modify(provider, f"dn: uid=u1,ou=People,{SUFFIX}\nchangetype: modify\nreplace: sn\nsn: changed\n\n"
                         f"dn: uid=g1,ou=Groups,{SUFFIX}\nchangetype: modify\nreplace: sn\nsn: changed\n")  # fmt: skip
        wait_for(lambda: [e for e in dump(consumer) if "uid=u1," in e[0]]
                 == [e for e in dump(provider) if "uid=u1," in e[0]], what="the change of u1")  # fmt: skip
        assert sorted(dn for dn, _ in dump(consumer)) == sorted(people)  # nothing of ou=Groups
    finally:
        provider.stop()
        consumer.stop()


def test_cookie_override_forces_reload(tmp_path):
    provider = start("pyldapd", tmp_path, "provider", provider_conf)
    consumer = start("pyldapd", tmp_path, "consumer", consumer_conf, provider_url=provider.url)
    try:
        populate(provider)
        wait_converged([provider, consumer])
        consumer.stop()
        conf = consumer.config_path.read_text()
        consumer = start_pyldapd(consumer.workdir, conf, name="consumer", extra_args=["-c", "rid=001"])
        wait_converged([provider, consumer])
        assert "sync search with cookie rid=001" in consumer.log() or "rid=001" in consumer.log()
    finally:
        provider.stop()
        consumer.stop()


def test_partial_replication_attrs_and_exattrs(tmp_path):
    provider = start("pyldapd", tmp_path, "provider", provider_conf)
    consumer = start("pyldapd", tmp_path, "consumer", consumer_conf, provider_url=provider.url,
                     extra='attrs="objectClass,ou,uid,cn,sn,mail" exattrs="mail" schemachecking=off')  # fmt: skip
    try:
        populate(provider)
        modify(provider, f"dn: uid=u1,ou=People,{SUFFIX}\nchangetype: modify\nadd: mail\nmail: a@b\n-\n"
                         "add: description\ndescription: not replicated\n")  # fmt: skip
        wait_for(
            lambda: any("uid=u1" in dn for dn, _ in dump(consumer, attrs=["cn"])), what="u1 on the consumer"
        )
        wait_for(lambda: dict(dump(consumer, attrs=["*"])).get(f"dn: uid=u1,ou=People,{SUFFIX}") is not None,
                 what="u1")  # fmt: skip
        attrs = dict(dump(consumer, attrs=["*"]))[f"dn: uid=u1,ou=People,{SUFFIX}"]
        assert "cn: U1 Person" in attrs
        assert not any(a.startswith(("mail:", "description:")) for a in attrs)
    finally:
        provider.stop()
        consumer.stop()


def test_ldapi_sasl_external_consumer_and_checkpoint(tmp_path):
    provider = start("pyldapd", tmp_path, "provider", provider_conf)
    url = provider.ldapi_url + "/"
    conf = lambda directory, slapd=False: consumer_conf(directory, url, updateref=False).replace(  # noqa: E731
        'bindmethod=simple binddn="cn=admin,dc=example,dc=com" credentials=secret',
        "bindmethod=sasl saslmech=EXTERNAL",
    )
    consumer = start("pyldapd", tmp_path, "consumer", conf)
    try:
        populate(provider)
        wait_converged([provider, consumer])
        # the live contextCSN is visible on the suffix; after a clean stop it is stored there too
        live = dict(dump(provider, attrs=["contextCSN"], base=SUFFIX))[f"dn: {SUFFIX}"]
        assert any(a.startswith("contextcsn: ") for a in live)
        provider.stop()
        provider = start("pyldapd", tmp_path, "provider", provider_conf, port=provider.port)
        stored = dict(dump(provider, attrs=["contextCSN"], base=SUFFIX))[f"dn: {SUFFIX}"]
        assert stored == live
        consumer_state = dict(dump(consumer, attrs=["contextCSN"], base=SUFFIX))[f"dn: {SUFFIX}"]
        assert consumer_state == live  # any consumer can become a provider: it holds the provider's state
    finally:
        provider.stop()
        consumer.stop()


@pytest.mark.parametrize("provider_kind", ["pyldapd", "slapd"])
def test_consumer_over_starttls(tmp_path, provider_kind):
    """starttls=critical with tls_cacert and tls_reqcert=demand: the replication link is encrypted and verified."""
    from tests.certs import make_pki, tls_conf

    pki = make_pki(tmp_path / "pki")
    directory = tmp_path / "provider" / "db"
    directory.mkdir(parents=True)
    conf = provider_conf(directory, slapd=provider_kind == "slapd").replace(
        "database mdb", tls_conf(pki) + "database mdb", 1
    )
    provider = STARTERS[provider_kind](tmp_path / "provider", conf, name="provider")
    extra = f"starttls=critical tls_cacert={pki.ca_cert} tls_reqcert=demand"
    consumer = start("pyldapd", tmp_path, "consumer", consumer_conf, provider_url=provider.url, extra=extra)
    bad = None
    try:
        populate(provider)
        wait_converged([provider, consumer])
        # a consumer that cannot verify the provider's certificate does not replicate, and says why
        bad = start("pyldapd", tmp_path / "bad", "consumer", consumer_conf, provider_url=provider.url,
                    extra=f"starttls=critical tls_cacert={pki.other_ca_cert}")  # fmt: skip
        wait_for(lambda: "certificate verify failed" in bad.log(), what="a TLS verification error")
        assert dump(bad) == []
    finally:
        provider.stop()
        consumer.stop()
        if bad is not None:
            bad.stop()


@pytest.mark.parametrize("consumer_kind", ["pyldapd", "slapd"])
def test_full_refresh_after_a_move_under_a_newer_parent(tmp_path, consumer_kind):
    """A whole-database search lists entries by id, as back-mdb (so a refresh does too): an entry moved under a
    parent made after it comes before that parent. A new consumer still ends with the provider's tree, no glue
    left (it holds the early child under glue until the parent comes, as slapd's consumer does)."""
    provider = start("pyldapd", tmp_path, "provider", provider_conf)
    consumer = None
    try:
        populate(provider)  # uid=u1..u5 under ou=People
        add(provider, f"dn: ou=Later,{SUFFIX}\nobjectClass: organizationalUnit\nou: Later\n")
        add(provider, f"dn: ou=Deeper,ou=Later,{SUFFIX}\nobjectClass: organizationalUnit\nou: Deeper\n")
        modify(provider, f"dn: uid=u2,ou=People,{SUFFIX}\nchangetype: modrdn\nnewrdn: uid=u2\n"
                         f"deleteoldrdn: 1\nnewsuperior: ou=Deeper,ou=Later,{SUFFIX}\n")  # fmt: skip
        listed = ldap_tool(
            "ldapsearch", "-x", "-H", provider.url, "-LLL", "-b", SUFFIX, "(objectClass=*)", "1.1"
        )
        order = [line for line in listed.stdout.splitlines() if line.startswith("dn: ")]
        moved = f"dn: uid=u2,ou=Deeper,ou=Later,{SUFFIX}"
        assert order.index(moved) < order.index(f"dn: ou=Later,{SUFFIX}"), (
            order
        )  # the case this test is about
        consumer = start(consumer_kind, tmp_path, "consumer", consumer_conf, provider_url=provider.url)
        common = wait_converged([provider, consumer])
        assert moved in [dn for dn, _ in common]
        glue = ldap_tool("ldapsearch", "-x", "-H", consumer.url, "-D", "cn=admin,dc=example,dc=com", "-w", "secret",
                         "-LLL", "-M", "-b", SUFFIX, "(objectClass=glue)", "1.1")  # fmt: skip
        assert glue.returncode == 0 and "dn:" not in glue.stdout, glue.stdout
    finally:
        provider.stop()
        if consumer is not None:
            consumer.stop()
