"""slapd's `restrict`, `require` and `allow update_anon` (backend_check_restrictions in slapd's backend.c).

The frontend's (global) settings and the target database's add up; `security` strength factors are checked
before this (server/tls.py), as slapd checks them first in the same function. No I/O: the engine calls this
with the session and the kind of operation.
"""

from __future__ import annotations

from typing import Any

from pyldapd.protocol import controls as ctl
from pyldapd.protocol.ldap import ResultCode
from pyldapd.server.errors import LDAPError

READS = frozenset({"compare", "search"})
WRITES = frozenset({"add", "delete", "modify", "rename"})
ALL = READS | WRITES | {"bind", "extended"}
# the extended operations slapd restricts by name (`restrict extended=<OID>`); others count as a modify
EXOP_NAMES = {ctl.START_TLS: "starttls", ctl.PASSWORD_MODIFY: "passwd", ctl.WHO_AM_I: "whoami",
              ctl.CANCEL: "cancel"}  # fmt: skip


def restricted_ops(words: list[str]) -> set[str]:
    """`restrict` keywords -> the operations they stop (slapd's masks: read, write, all are unions; modrdn
    is rename; extended=<OID> names one extended operation)."""
    ops: set[str] = set()
    for word in words:
        if word == "read":
            ops |= READS
        elif word == "write":
            ops |= WRITES
        elif word == "all":
            ops |= ALL
        elif word == "modrdn":
            ops.add("rename")
        elif word.startswith("extended="):
            ops.add("exop:" + word.split("=", 1)[1])
        else:
            ops.add(word)
    return ops


def unrestricted_search(directory: Any, backend: Any) -> bool:
    """No `restrict` nor `require`, global or of `backend` (None: the frontend): any session may search."""
    config = directory.config
    return (
        not config.restrict
        and not config.requires
        and (backend is None or not (backend.config.restrict or backend.config.requires))
    )


def check_restrictions(directory: Any, session: Any, backend: Any, op: str, exop: str | None = None) -> None:
    """Raise LDAPError when `restrict`/`require`/anonymous updates forbid `op` (bind, search, compare, add,
    delete, modify, rename, extended) on `backend` (None: the frontend) for this session."""
    config = directory.config
    if op == "search" and unrestricted_search(directory, backend):
        return  # nothing restricted or required (the common case): a search passes
    restrict = list(config.restrict)
    requires = list(config.requires)
    if backend is not None:
        restrict += backend.config.restrict
        requires += backend.config.requires
    ops = restricted_ops(restrict)
    flag = op
    update = op in WRITES
    session_op = op == "bind"
    if op == "extended":
        if exop == ctl.START_TLS:
            session_op = True
        elif exop == ctl.PASSWORD_MODIFY:
            update = True
        elif exop not in (ctl.WHO_AM_I, ctl.CANCEL):
            flag, update = "modify", True  # slapd treats any other extended operation as a modify
    if update and session.anonymous and "update_anon" not in config.allows:
        raise LDAPError(ResultCode.strongerAuthRequired, "modifications require authentication")
    if not session_op:
        if "strong" in requires and (session.anonymous or (
                session.auth_method == "simple" and session.transport_ssf < config.security.transport)):  # fmt: skip
            raise LDAPError(ResultCode.strongerAuthRequired, "strong(er) authentication required")
        if "sasl" in requires and (session.anonymous or session.auth_method != "sasl"):
            raise LDAPError(ResultCode.strongerAuthRequired, "SASL authentication required")
        if "authc" in requires and session.anonymous:
            raise LDAPError(ResultCode.unwillingToPerform, "authentication required")
        if "bind" in requires and not session.protocol:
            raise LDAPError(ResultCode.operationsError, "BIND required")
        if "ldapv3" in requires and session.protocol and session.protocol < 3:
            raise LDAPError(ResultCode.operationsError, "operation restricted to LDAPv3 clients")
    exop_key = "exop:" + exop if exop else ""
    readonly = config.readonly or (backend is not None and backend.config.readonly)
    if flag in ops or (exop_key and exop_key in ops) or (readonly and update):
        if (ops & (READS | WRITES | {"bind", "extended"})) == READS:
            text = "read operations restricted"
        elif exop_key and exop_key in ops:
            text = "extended operation restricted"
        else:
            text = "operation restricted"
        raise LDAPError(ResultCode.unwillingToPerform, text)
