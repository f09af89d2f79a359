"""syncrepl's suffixmassage= (slapd.conf(5)): a consumer keeps the provider's searchbase under another DN, the
entries' DNs and their DN-syntax values rewritten as slapd's rewrite rule does. Debian's slapd provides; a slapd
consumer and a pyldapd consumer from the same config must hold the same entries, through a refresh and through
persistent changes (test059-consumer-config relies on it to keep a consumer's cn=config elsewhere)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.replication.helpers import BASE, add, modify, person, provider_conf
from tests.server.test_differential import canonical
from tests.servers import ROOTDN, ROOTPW, SUFFIX, free_port, ldap_tool, slapd_conf, start_pyldapd, start_slapd

MIRROR = "dc=example,dc=org"
GROUP = f"""dn: cn=admins,ou=Groups,{SUFFIX}
objectClass: groupOfNames
cn: admins
member: uid=jdoe,ou=People,{SUFFIX}
member: cn=outside,o=elsewhere
seeAlso: ou=People,{SUFFIX}
"""


def consumer_conf(directory: Path, provider_url: str) -> str:
    stanza = (f'syncrepl rid=001 provider={provider_url} bindmethod=simple binddn="{ROOTDN}" credentials={ROOTPW} '
              f'searchbase="{SUFFIX}" suffixmassage="{MIRROR}" type=refreshAndPersist retry="1 +" timeout=3')  # fmt: skip
    text = slapd_conf(directory, modules=True, indexes="index objectClass eq\nindex entryUUID,entryCSN eq",
                      extra_db=stanza)  # fmt: skip
    return text.replace(f'suffix "{SUFFIX}"', f'suffix "{MIRROR}"').replace(f'rootdn "{ROOTDN}"',
                                                                             f'rootdn "cn=admin,{MIRROR}"')  # fmt: skip


def held(server) -> list:
    found = ldap_tool("ldapsearch", "-x", "-LLL", "-H", server.url, "-b", MIRROR, "(objectClass=*)", "*",
                      "entryUUID", "entryCSN", "creatorsName", "modifiersName")  # fmt: skip
    if found.returncode == 32:
        return []
    assert found.returncode == 0, found.stderr
    return canonical(found.stdout)


def wait_same(consumers, wanted_entries: int, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    dumps: list = []
    while time.monotonic() < deadline:
        dumps = [held(c) for c in consumers]
        if len(dumps[0]) == wanted_entries and dumps[1] == dumps[0]:
            return dumps[0]
        time.sleep(0.3)
    logs = "\n".join(f"--- {c.name}\n{c.log()[-3000:]}" for c in consumers)
    raise AssertionError(f"consumers differ: {dumps}\n{logs}")


def test_suffixmassage_alike_with_slapd(tmp_path: Path) -> None:
    provider = start_slapd(tmp_path / "provider", provider_conf(tmp_path / "provider" / "db", slapd=True),
                           name="provider")  # fmt: skip
    consumers = []
    try:
        add(provider, BASE + "\n" + person("jdoe") + "\n" + GROUP)
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            folder = tmp_path / name
            consumers.append(start(folder, consumer_conf(folder / "db", provider.url), name=name))
        first = wait_same(consumers, 5)
        entries = dict(first)
        assert f"dn: uid=jdoe,ou=People,{MIRROR}".lower() in {dn.lower() for dn in entries}
        group = next(attrs for dn, attrs in first if dn.lower().startswith("dn: cn=admins"))
        assert any(f"member: uid=jdoe,ou=people,{MIRROR}" == line.lower() for line in group), group
        # persistent changes: an add, a modify of a DN value, a rename and a delete reach both alike
        add(provider, person("asmith"))
        modify(provider, f"dn: cn=admins,ou=Groups,{SUFFIX}\nchangetype: modify\nadd: member\n"
                         f"member: uid=asmith,ou=People,{SUFFIX}\n\n"
                         f"dn: uid=jdoe,ou=People,{SUFFIX}\nchangetype: modrdn\nnewrdn: uid=jdoe2\ndeleteoldrdn: 1\n")  # fmt: skip
        modify(
            provider, f"dn: ou=Groups,{SUFFIX}\nchangetype: modify\nreplace: description\ndescription: d\n"
        )
        wait_same(consumers, 6)
        modify(provider, f"dn: uid=asmith,ou=People,{SUFFIX}\nchangetype: delete\n")
        last = wait_same(consumers, 5)
        assert not any(dn.lower().endswith(SUFFIX) for dn, _ in last)
    finally:
        for server in consumers:
            server.stop()
        provider.stop()


def test_bases_outside_the_database_refused_at_their_line_as_slaptest_does(tmp_path: Path) -> None:
    provider = "ldap://127.0.0.1:9/"
    for extra, message in (('searchbase="dc=other"', 'Base DN "dc=other" is not within the database naming context'),
                           (f'searchbase="{SUFFIX}" suffixmassage="dc=elsewhere"',
                            'Massage DN "dc=elsewhere" is not within the database naming context')):  # fmt: skip
        stanza = f"syncrepl rid=001 provider={provider} {extra}"
        conf = tmp_path / "consumer.conf"
        conf.write_text(slapd_conf(tmp_path / "db", modules=True, extra_db=stanza))
        line = conf.read_text().splitlines().index(stanza) + 1
        theirs = subprocess.run(["/usr/sbin/slaptest", "-u", "-f", str(conf)], capture_output=True, text=True,
                                timeout=60)  # fmt: skip
        ours = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-u", "-f", str(conf)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert theirs.returncode != 0 and message in theirs.stderr and f"line {line}" in theirs.stderr, (
            theirs.stderr
        )
        assert ours.returncode != 0 and f"{conf}: line {line}: {message}" in ours.stderr + ours.stdout, (
            ours.stderr
        )


def mirrored(server, wanted_entries: int, timeout: float = 30.0) -> list:
    """Wait until the server's mirror holds its own dc=example,dc=com, renamed (bounded); returns the mirror."""
    deadline = time.monotonic() + timeout
    source: list = []
    mirror: list = []
    while time.monotonic() < deadline:
        found = ldap_tool("ldapsearch", "-x", "-LLL", "-H", server.url, "-b", SUFFIX, "(objectClass=*)", "*",
                          "entryUUID", "entryCSN")  # fmt: skip
        assert found.returncode == 0, found.stderr
        source = canonical(found.stdout.replace(SUFFIX, MIRROR))
        mirror = [(dn, tuple(a for a in attrs if not a.startswith(("creatorsname", "modifiersname"))))
                  for dn, attrs in held(server)]  # fmt: skip
        if len(source) == wanted_entries and mirror == source:
            return mirror
        time.sleep(0.3)
    raise AssertionError(f"{server.name}: mirror {mirror} != {source}\n{server.log()[-3000:]}")


def test_database_consuming_from_its_own_server_gets_local_writes_as_slapd(tmp_path: Path) -> None:
    """test059's layout: one server (serverID 1) whose second database replicates the first through the server's
    own listener, multiprovider (so its cookie says sid=001). A client's write carries no origin for syncprov (slapd learns a change's server ID only from a
    replicated write's CSN), so it reaches that consumer although its sid is the write's own."""
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            folder = tmp_path / name
            port = free_port()
            url = f"ldap://127.0.0.1:{port}/"
            # multiprovider, as test059's ldif database: its cookie then names this server's ID
            mirror = consumer_conf(folder / "mirror", url).split("database mdb", 1)[1] + "multiprovider on\n"
            conf = provider_conf(folder / "db", server_id=1, slapd=name == "slapd") + "database mdb" + mirror
            servers.append(start(folder, conf, name=name, port=port))
        for server in servers:
            add(server, BASE + "\n" + person("jdoe"))
            mirrored(server, 4)  # the refresh
            # and persist: writes made after the consumer's refresh
            add(server, person("asmith"))
            modify(server, f"dn: uid=jdoe,ou=People,{SUFFIX}\nchangetype: modify\nreplace: sn\nsn: changed\n")
            last = dict(mirrored(server, 5))
            assert "sn: changed" in last[f"dn: uid=jdoe,ou=People,{MIRROR}"], last
    finally:
        for server in servers:
            server.stop()
