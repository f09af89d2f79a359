"""Replication test helpers: configs for providers and consumers, dumps, and a bounded convergence wait."""

from __future__ import annotations

import time

from tests.server.test_differential import canonical
from tests.servers import ROOTDN, ROOTPW, SUFFIX, ldap_tool, slapd_conf

ADMIN = ["-x", "-D", ROOTDN, "-w", ROOTPW]
# What must be identical on every replica: user attributes and the operational attributes that replicate.
REPLICATED = [
    "*",
    "entryUUID",
    "entryCSN",
    "createTimestamp",
    "modifyTimestamp",
    "creatorsName",
    "modifiersName",
]

BASE = f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=People,{SUFFIX}
objectClass: organizationalUnit
ou: People

dn: ou=Groups,{SUFFIX}
objectClass: organizationalUnit
ou: Groups
"""


def person(uid: str, parent: str = f"ou=People,{SUFFIX}", **extra: str) -> str:
    lines = [f"dn: uid={uid},{parent}", "objectClass: inetOrgPerson", f"cn: {uid.title()} Person", f"sn: {uid}",
             f"uid: {uid}"]  # fmt: skip
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def provider_conf(directory, *, server_id: int = 0, sessionlog: int = 100, slapd: bool = False,
                  extra_db: str = "") -> str:  # fmt: skip
    glob = (f"serverID {server_id}\n" if server_id else "") + ("moduleload syncprov\n" if slapd else "")
    overlay = "overlay syncprov\nsyncprov-checkpoint 100 10\n"
    if sessionlog:
        overlay += f"syncprov-sessionlog {sessionlog}\n"
    indexes = "index objectClass eq\nindex entryUUID,entryCSN eq\nindex uid eq"
    return slapd_conf(
        directory, indexes=indexes, modules=slapd, extra_global=glob, extra_db=extra_db + overlay
    )


def consumer_conf(directory, provider_url: str, *, rid: int = 1, type_: str = "refreshAndPersist",
                  extra: str = "", slapd: bool = False, updateref: bool = True, extra_db: str = "") -> str:  # fmt: skip
    stanza = (f'syncrepl rid={rid:03d} provider={provider_url} bindmethod=simple binddn="{ROOTDN}" '
              f'credentials={ROOTPW} searchbase="{SUFFIX}" type={type_} retry="1 +" {extra}')  # fmt: skip
    db = stanza + "\n" + (f"updateref {provider_url}\n" if updateref else "") + extra_db
    indexes = "index objectClass eq\nindex entryUUID,entryCSN eq\nindex uid eq"
    return slapd_conf(directory, indexes=indexes, modules=slapd, extra_db=db)


def mesh_conf(
    directory, ports: list[int], *, slapd: bool, sessionlog: int = 1000, extra_global: str = ""
) -> str:
    """A multi-provider node: serverID with URLs, one syncrepl stanza per node (its own is ignored), mirrormode,
    syncprov. The same text starts Debian's slapd and pyldapd."""
    urls = [f"ldap://127.0.0.1:{port}/" for port in ports]
    glob = extra_global + "".join(f"serverID {i + 1} {url}\n" for i, url in enumerate(urls))
    if slapd:
        glob += "moduleload syncprov\n"
    stanzas = "".join(
        f'syncrepl rid={i + 1:03d} provider={url} bindmethod=simple binddn="{ROOTDN}" credentials={ROOTPW} '
        f'searchbase="{SUFFIX}" type=refreshAndPersist retry="1 +" timeout=3\n'
        for i, url in enumerate(urls)
    )
    db = (
        stanzas
        + f"mirrormode on\noverlay syncprov\nsyncprov-checkpoint 100 1\nsyncprov-sessionlog {sessionlog}\n"
    )
    indexes = "index objectClass eq\nindex entryUUID,entryCSN eq\nindex uid eq"
    return slapd_conf(directory, indexes=indexes, modules=slapd, extra_global=glob, extra_db=db)


def modify(server, ldif: str) -> None:
    result = ldap_tool("ldapmodify", "-H", server.url, *ADMIN, "-c", input=ldif)
    assert result.returncode == 0, f"{result.stderr}\n{server.log()[-3000:]}"


def add(server, ldif: str) -> None:
    result = ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=ldif)
    assert result.returncode == 0, f"{result.stderr}\n{server.log()[-3000:]}"


def dump(server, *, attrs: list[str] | None = None, manage: bool = False, base: str = SUFFIX):
    args = ["-LLL", "-b", base, "(objectClass=*)", *(attrs or REPLICATED)]
    if manage:
        args.insert(0, "-M")
    result = ldap_tool("ldapsearch", "-H", server.url, *ADMIN, *args)
    if result.returncode == 32:
        return []
    assert result.returncode == 0, result.stderr
    return canonical(result.stdout)


def wait_converged(servers, *, timeout: float = 30.0, attrs: list[str] | None = None, manage: bool = False):
    """Poll until every server holds the same entries; returns the common dump. Bounded in time."""
    deadline = time.monotonic() + timeout
    dumps = []
    while time.monotonic() < deadline:
        dumps = [dump(s, attrs=attrs, manage=manage) for s in servers]
        if all(d == dumps[0] for d in dumps[1:]):
            return dumps[0]
        time.sleep(0.2)
    differing = describe_difference(dumps)
    logs = "\n".join(f"--- {s.name}\n{s.log()[-4000:]}" for s in servers)
    raise AssertionError(f"servers did not converge in {timeout}s: {differing}\n{logs}")


def describe_difference(dumps) -> str:
    if not dumps:
        return "no dumps"
    first = dict(dumps[0])
    out = []
    for index, other in enumerate(dumps[1:], 1):
        other_map = dict(other)
        for dn in sorted(set(first) | set(other_map)):
            if first.get(dn) != other_map.get(dn):
                out.append(f"server0 vs server{index}: {dn}: {first.get(dn)} != {other_map.get(dn)}")
    return "; ".join(out[:10])


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
