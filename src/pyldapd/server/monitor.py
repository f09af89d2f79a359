"""A small, read-only `cn=Monitor` tree, in the spirit of slapd's back-monitor, built afresh on every search.

    cn=Monitor                              the server: version, server ID, listeners, start time
    cn=Databases,cn=Monitor                 container
      cn=Database N,cn=Databases,...        one per data database: suffix (namingContexts), live contextCSN
    cn=Syncrepl,cn=Monitor                  container
      cn=Consumer RID,cn=Syncrepl,...       one per syncrepl consumer: rid, provider, searchbase, state,
                                            last error, conflicts resolved

Schema. Every entry is a structural `applicationProcess` (core; MUST cn) with the auxiliary `extensibleObject`,
so no object class is invented. Attribute types: `cn`, `description`, `labeledURI` (listener and provider URLs),
`namingContexts` (the suffix of a database, the searchbase of a consumer), `contextCSN`, `createTimestamp`, all
already in the schema; OpenLDAP's own back-monitor types `monitoredInfo` (1.3.6.1.4.1.4203.666.1.55.1: the
version, a database's type) and `monitorCounter` (1.3.6.1.4.1.4203.666.1.55.3: entry counts), added with
OpenLDAP's OIDs when the schema lacks them; and five of pyldapd's own (`pyldapdServerID`, `pyldapdSyncRid`,
`pyldapdSyncState`, `pyldapdLastError`, `pyldapdConflicts`, plus `pyldapdProviderServerID`) under an OID arc
made from a UUID (2.25.<uuid>, ITU-T X.667), which needs no registration. Like slapd's monitor attributes they
are all operational (USAGE dSAOperation, NO-USER-MODIFICATION): ask for `+` (or name them) to see them.

Access. Readable by (1) the rootdn of any database (a data database or a `database monitor` section), (2) root
on the local host, `gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth` over ldapi://, and the user the
server runs as, by the same route, and (3) anyone at all when the configuration has no `access` line anywhere
(slapd's default policy is then `access to * by * read`, and it would apply to a monitor database too). With
access rules configured, everybody else gets noSuchObject, as slapd answers for an entry they may not see.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyldapd.backends.base import Scope
from pyldapd.model.dn import DNError, is_descendant, normalize_dn
from pyldapd.model.entry import Entry
from pyldapd.protocol import ldap
from pyldapd.replication.conflicts import conflict_monitor_entries, install_conflict_schema
from pyldapd.server.errors import LDAPError

if TYPE_CHECKING:
    from pyldapd.server.directory import Directory, Session

MONITOR_DN = "cn=Monitor"
PEERCRED_SUFFIX = "cn=peercred,cn=external,cn=auth"
# pyldapd's own OID arc: 2.25 followed by a UUID as a decimal integer (X.667), minted once for this project.
ARC = "2.25.23394782990751888070443023800080686380"

_INT = "EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27"
_TEXT = "EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15"
_OP = "NO-USER-MODIFICATION USAGE dSAOperation"
MONITOR_SCHEMA = [
    ("1.3.6.1.4.1.4203.666.1.55.1", "monitoredInfo", f"DESC 'monitored info' {_TEXT}{{32768}} {_OP}"),
    ("1.3.6.1.4.1.4203.666.1.55.3", "monitorCounter", f"DESC 'monitor counter' {_INT} {_OP}"),
    (f"{ARC}.1.1", "pyldapdServerID", f"DESC 'server ID of this server CSNs' {_INT} SINGLE-VALUE {_OP}"),
    (f"{ARC}.1.2", "pyldapdSyncRid", f"DESC 'syncrepl replica ID' {_INT} SINGLE-VALUE {_OP}"),
    (f"{ARC}.1.3", "pyldapdSyncState", f"DESC 'syncrepl consumer state' {_TEXT} SINGLE-VALUE {_OP}"),
    (f"{ARC}.1.4", "pyldapdLastError", f"DESC 'last error of a consumer' {_TEXT} SINGLE-VALUE {_OP}"),
    (f"{ARC}.1.5", "pyldapdConflicts", f"DESC 'conflicts resolved' {_INT} SINGLE-VALUE {_OP}"),
    (f"{ARC}.1.6", "pyldapdProviderServerID", f"DESC 'server ID of a provider' {_INT} SINGLE-VALUE {_OP}"),
]


def install_schema(schema) -> None:
    """Add the monitor attribute types the schema does not have yet (by OID or by name)."""
    for oid, name, rest in MONITOR_SCHEMA:
        if schema.attribute_type(oid) is None and schema.attribute_type(name) is None:
            schema.load_text(f"attributetype ( {oid} NAME '{name}' {rest} )", "<monitor>")
    install_conflict_schema(schema, ARC)


class Monitor:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        install_schema(directory.schema)
        self.ndn = normalize_dn(MONITOR_DN, directory.schema)

    def handles(self, ndn: str) -> bool:
        return ndn == self.ndn or is_descendant(ndn, self.ndn)

    # -- access ----------------------------------------------------------------------------------------------

    def may_read(self, session: Session) -> bool:
        config = self.directory.config
        if not config.access and not any(db.access for db in config.databases):
            return True
        ndn = session.bind_ndn
        if not ndn:
            return False
        if any(ndn == b.rootdn_ndn for b in self.directory.backends):
            return True
        for db in config.databases:
            if db.type == "monitor" and db.rootdn:
                try:
                    if ndn == normalize_dn(db.rootdn, self.directory.schema):
                        return True
                except DNError:
                    pass
        local = {f"gidnumber=0+uidnumber=0,{PEERCRED_SUFFIX}",
                 f"gidnumber={os.getgid()}+uidnumber={os.getuid()},{PEERCRED_SUFFIX}"}  # fmt: skip
        return ndn in local

    # -- the tree ---------------------------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        directory = self.directory
        server = getattr(directory, "server", None)
        from pyldapd.backends.mdb import FORMAT_VERSION
        from pyldapd.server.directory import VENDOR_VERSION

        entries = []
        top = container(MONITOR_DN, "Monitor", "pyldapd monitor: the server, its databases, its consumers")
        top.put("monitoredinfo", "monitoredInfo", [VENDOR_VERSION.encode(), f"database format {FORMAT_VERSION}".encode()])  # fmt: skip
        top.put("pyldapdserverid", "pyldapdServerID", [str(directory.server_id).encode()])
        if server is not None and server.urls:
            top.put("labeleduri", "labeledURI", [u.text.encode() for u in server.urls])
        top.put("createtimestamp", "createTimestamp", [directory.started])
        entries.append(top)

        entries.append(container("cn=Databases,cn=Monitor", "Databases", "the data databases"))
        for index, backend in enumerate(directory.backends, 1):
            db = container(f"cn=Database {index},cn=Databases,cn=Monitor", f"Database {index}", "")
            db.put(
                "monitoredinfo",
                "monitoredInfo",
                [(backend.config.declared_type or backend.config.type).encode()],
            )
            db.put("namingcontexts", "namingContexts", [s.encode() for s in backend.config.suffixes])
            values = backend.context.values()
            if values:
                db.put("contextcsn", "contextCSN", values)
            roles = []
            if backend.provider is not None:
                roles.append("provider (syncprov)")
            if backend.consumers or backend.config.syncrepl:
                roles.append("multi-provider consumer" if backend.config.multiprovider else "consumer")
            if backend.config.readonly:
                roles.append("read-only")
            db.put("description", "description", [", ".join(roles or ["standalone"]).encode()])
            try:
                with backend.db.read() as txn:
                    db.put("monitorcounter", "monitorCounter", [str(txn.count()).encode()])
            except Exception:  # a counter is not worth failing the search for
                pass
            entries.append(db)
            entries += conflict_monitor_entries(backend, db.dn, container)

        entries.append(container("cn=Syncrepl,cn=Monitor", "Syncrepl", "the syncrepl consumers"))
        for backend in directory.backends:
            for rid in sorted(backend.consumers):
                consumer = backend.consumers[rid]
                status = consumer.status()
                name = f"Consumer {rid:03d}"
                entry = container(f"cn={name},cn=Syncrepl,cn=Monitor", name, f"syncrepl rid={rid:03d}")
                entry.put("pyldapdsyncrid", "pyldapdSyncRid", [str(rid).encode()])
                entry.put("labeleduri", "labeledURI", [str(status.get("provider", "")).encode()])
                entry.put("namingcontexts", "namingContexts", [consumer.spec.searchbase.encode()])
                entry.put("pyldapdsyncstate", "pyldapdSyncState", [str(status.get("state", "")).encode()])
                last_error = str(status.get("last_error") or "").strip()
                if last_error:
                    entry.put("pyldapdlasterror", "pyldapdLastError", [last_error.encode()])
                entry.put("pyldapdconflicts", "pyldapdConflicts", [str(status.get("conflicts", 0)).encode()])
                if getattr(consumer, "provider_sid", None) is not None:
                    entry.put("pyldapdproviderserverid", "pyldapdProviderServerID",
                              [str(consumer.provider_sid).encode()])  # fmt: skip
                entries.append(entry)
        return entries

    # -- search -----------------------------------------------------------------------------------------------

    def search(self, session: Session, message_id: int, base_ndn: str, scope: Scope, matches: Callable,
               selection, send: Callable[[bytes], None]) -> int:  # fmt: skip
        """Answer a search whose base is in cn=Monitor; returns the number of entries sent."""
        if not self.may_read(session):
            raise LDAPError(ldap.ResultCode.noSuchObject, "")
        entries = self.entries()
        schema = self.directory.schema
        by_ndn = {normalize_dn(e.dn, schema): e for e in entries}
        if base_ndn not in by_ndn:
            raise LDAPError(ldap.ResultCode.noSuchObject, "", matched_dn=self.matched(base_ndn, by_ndn))
        parents = {ndn: ndn.split(",", 1)[1] if "," in ndn else "" for ndn in by_ndn}
        with_children = set(parents.values())
        sent = 0
        for ndn, entry in by_ndn.items():
            if not in_scope(ndn, base_ndn, scope, parents[ndn]):
                continue
            if not matches(entry):
                continue
            send(ldap.encode_search_result_entry(
                message_id, entry.dn, selection.encode(entry, lambda n: n in with_children)))  # fmt: skip
            sent += 1
        return sent

    @staticmethod
    def matched(ndn: str, by_ndn: dict[str, Entry]) -> str:
        while "," in ndn:
            ndn = ndn.split(",", 1)[1]
            if ndn in by_ndn:
                return by_ndn[ndn].dn
        return ""


def in_scope(ndn: str, base: str, scope: Scope, parent: str) -> bool:
    if scope == Scope.BASE:
        return ndn == base
    if scope == Scope.ONE:
        return parent == base
    if scope == Scope.SUB:
        return ndn == base or is_descendant(ndn, base)
    return is_descendant(ndn, base)  # children


def container(dn: str, cn: str, description: str) -> Entry:
    entry = Entry(dn)
    entry.put("objectclass", "objectClass", [b"top", b"applicationProcess", b"extensibleObject"])
    entry.put("structuralobjectclass", "structuralObjectClass", [b"applicationProcess"])
    entry.put("cn", "cn", [cn.encode()])
    if description:
        entry.put("description", "description", [description.encode()])
    entry.put("entrydn", "entryDN", [dn.encode()])
    return entry
