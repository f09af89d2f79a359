"""An ldif database (slapd-ldif(5)) in replication, as test059-consumer-config uses one: as a syncprov provider
that a Debian slapd consumer follows, and as a syncrepl consumer beside a slapd one (the same provider, the same
entries, the same LDIF files: the values that replicate are the provider's)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.replication.helpers import BASE, add, dump, modify, person, provider_conf, wait_converged
from tests.server.test_back_ldif import files
from tests.servers import ROOTDN, ROOTPW, SCHEMA_DIR, SUFFIX, start_pyldapd, start_slapd

INCLUDES = "".join(
    f"include {SCHEMA_DIR}/{name}.schema\n" for name in ("core", "cosine", "inetorgperson", "nis")
)


def ldif_database(directory: Path, extra: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    return (f'database ldif\nsuffix "{SUFFIX}"\nrootdn "{ROOTDN}"\nrootpw {ROOTPW}\ndirectory {directory}\n'
            f"{extra}")  # fmt: skip


def test_ldif_provider_followed_by_a_slapd_consumer(tmp_path: Path) -> None:
    provider = start_pyldapd(tmp_path / "provider", INCLUDES + ldif_database(
        tmp_path / "provider" / "db", "overlay syncprov\nsyncprov-checkpoint 1 1\n"), name="provider")  # fmt: skip
    consumer = None
    try:
        add(provider, BASE + "\n" + person("jdoe"))
        stanza = (f'syncrepl rid=001 provider={provider.url} bindmethod=simple binddn="{ROOTDN}" '
                  f'credentials={ROOTPW} searchbase="{SUFFIX}" type=refreshAndPersist retry="1 +" timeout=3')  # fmt: skip
        conf = (INCLUDES + "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
                + f'database mdb\nsuffix "{SUFFIX}"\nrootdn "{ROOTDN}"\nrootpw {ROOTPW}\n'
                + f"directory {tmp_path / 'consumer-db'}\n{stanza}\n")  # fmt: skip
        (tmp_path / "consumer-db").mkdir()
        consumer = start_slapd(tmp_path / "consumer", conf, name="consumer")
        wait_converged([provider, consumer])
        add(provider, person("asmith"))
        modify(provider, f"dn: uid=jdoe,ou=People,{SUFFIX}\nchangetype: modify\nreplace: sn\nsn: Doe\n\n"
                         f"dn: ou=Groups,{SUFFIX}\nchangetype: delete\n")  # fmt: skip
        held = wait_converged([provider, consumer])
        assert len(held) == 4
    finally:
        if consumer is not None:
            consumer.stop()
        provider.stop()
    # what it acknowledged is in its files: restarted, it serves the same entries
    assert (tmp_path / "provider" / "db" / "dc=example,dc=com" / "ou=people" / "uid=asmith.ldif").exists()
    again = start_pyldapd(tmp_path / "provider", provider.config_path.read_text(), name="provider")
    try:
        assert dump(again) == held
    finally:
        again.stop()


def test_ldif_consumer_alike_with_slapd(tmp_path: Path) -> None:
    provider = start_slapd(tmp_path / "provider", provider_conf(tmp_path / "provider" / "db", slapd=True),
                           name="provider")  # fmt: skip
    consumers = []
    folders = {"slapd": tmp_path / "slapd-db", "pyldapd": tmp_path / "pyldapd-db"}
    try:
        add(provider, BASE + "\n" + person("jdoe"))
        stanza = (f'syncrepl rid=001 provider={provider.url} bindmethod=simple binddn="{ROOTDN}" '
                  f'credentials={ROOTPW} searchbase="{SUFFIX}" type=refreshAndPersist retry="1 +" timeout=3')  # fmt: skip
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            consumers.append(
                start(tmp_path / name, INCLUDES + ldif_database(folders[name], stanza), name=name)
            )
        add(provider, person("asmith"))
        modify(
            provider,
            f"dn: uid=jdoe,ou=People,{SUFFIX}\nchangetype: modrdn\nnewrdn: uid=jdoe2\ndeleteoldrdn: 1\n",
        )
        held = wait_converged([provider, *consumers])
        assert len(held) == 5
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and set(files(folders["pyldapd"])) != set(files(folders["slapd"])):
            time.sleep(0.3)  # the files of the last change may follow the answers by a moment on either side
        assert set(files(folders["pyldapd"])) == set(files(folders["slapd"]))
        ours, theirs = files(folders["pyldapd"]), files(folders["slapd"])
        for (
            path
        ) in ours:  # the suffix entry holds each one's contextCSN (left out by files(), and so its last line)
            assert ours[path][:-1] == theirs[path][:-1], path
        assert dump(consumers[1]) == dump(consumers[0])
    finally:
        for server in consumers:
            server.stop()
        provider.stop()
