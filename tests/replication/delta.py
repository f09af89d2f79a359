"""Configurations for delta-syncrepl tests (issue 11): a provider with an accesslog database that syncprov serves
(as OpenLDAP's test043 sets it up), a delta consumer, and a delta multi-provider node. One text starts Debian's
slapd and pyldapd alike."""

from __future__ import annotations

from pathlib import Path

from tests.servers import ROOTDN, ROOTPW, SUFFIX, ldap_tool, slapd_conf

LOGBASE = "cn=accesslog"
LOGFILTER = "(&(objectClass=auditWriteObject)(reqResult=0))"
INDEXES = "index objectClass eq\nindex entryUUID,entryCSN eq\nindex uid eq"
MODULES = "moduleload syncprov\nmoduleload accesslog\n"  # pyldapd knows the accesslog schema after it too
DELTA = f'syncdata=accesslog logbase="{LOGBASE}" logfilter="{LOGFILTER}"'


def log_database(directory: Path) -> str:
    """The log database, served by syncprov as slapd's delta-syncrepl providers serve it."""
    log_dir = Path(directory).parent / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    return (f"database mdb\nsuffix {LOGBASE}\nrootdn {ROOTDN}\ndirectory {log_dir}\nmaxsize 104857600\n"
            "index objectClass eq\nindex reqStart eq\nindex entryCSN eq\n"
            "overlay syncprov\nsyncprov-nopresent TRUE\nsyncprov-reloadhint TRUE\n")  # fmt: skip


def accesslog_overlay(purge: str = "") -> str:
    return "overlay accesslog\nlogdb cn=accesslog\nlogops writes\nlogsuccess TRUE\n" + (
        f"logpurge {purge}\n" if purge else ""
    )


def delta_provider_conf(directory: Path, *, slapd: bool, purge: str = "", server_id: int = 0,
                        consumer_of: str = "") -> str:  # fmt: skip
    """A delta provider; with consumer_of (a provider URL) also a delta consumer: a cascading node."""
    glob = (f"serverID {server_id}\n" if server_id else "") + MODULES
    db = "overlay syncprov\nsyncprov-checkpoint 100 10\n" + accesslog_overlay(purge)
    if consumer_of:
        db = delta_stanza(1, consumer_of) + f"updateref {consumer_of}\n" + db
    return slapd_conf(directory, indexes=INDEXES, modules=True, extra_global=glob + log_database(directory),
                      extra_db=db)  # fmt: skip


def delta_stanza(rid: int, provider_url: str, type_: str = "refreshAndPersist") -> str:
    return (f'syncrepl rid={rid:03d} provider={provider_url} bindmethod=simple binddn="{ROOTDN}" '
            f'credentials={ROOTPW} searchbase="{SUFFIX}" type={type_} retry="1 +" timeout=3 interval=00:00:00:01 '
            f"{DELTA}\n")  # fmt: skip


def delta_consumer_conf(
    directory: Path, provider_url: str, *, slapd: bool, type_: str = "refreshAndPersist"
) -> str:
    db = delta_stanza(1, provider_url, type_) + f"updateref {provider_url}\n"
    return slapd_conf(directory, indexes=INDEXES, modules=slapd, extra_db=db)


def delta_mesh_conf(directory: Path, index: int, ports: list[int], provider_urls: dict[int, str], *,
                    slapd: bool = False) -> str:  # fmt: skip
    """Node `index` of a delta multi-provider mesh: serverIDs, one delta stanza per other node (provider_urls,
    by node index: a LinkProxy's URL when the test partitions), mirrormode, syncprov, accesslog."""
    glob = "".join(f"serverID {i + 1} ldap://127.0.0.1:{port}/\n" for i, port in enumerate(ports))
    glob += MODULES
    stanzas = "".join(delta_stanza(j + 1, url) for j, url in sorted(provider_urls.items()) if j != index)
    db = stanzas + "mirrormode on\noverlay syncprov\nsyncprov-checkpoint 100 1\n" + accesslog_overlay()
    return slapd_conf(directory, indexes=INDEXES, modules=True, extra_global=glob + log_database(directory),
                      extra_db=db)  # fmt: skip


def log_entries(server) -> int:
    """How many successful write log entries the server's log database holds."""
    result = ldap_tool("ldapsearch", "-H", server.url, "-x", "-D", ROOTDN, "-w", ROOTPW, "-LLL", "-b", LOGBASE,
                       LOGFILTER, "1.1")  # fmt: skip
    return result.stdout.count("dn: ")
