"""Access control applied to the directory's operations, as slapd (back-mdb and the frontend) applies it.

`AccessControl` holds one `acl.Policy` per database (its `access` lines, then the global ones) and one for
entries no database holds (the root DSE, cn=Subschema). The directory asks it questions in slapd's terms:
may this session `search` the base entry, which attributes and values of this entry may it `read`, may it add to
the `children` of this parent. `SearchGuard` is the per-search form: the filter evaluated with `search` access
per attribute (a denied assertion is Undefined, as in slapd's test_filter), then `read` on `entry`, then on each
attribute and value returned.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyldapd.config.slapdconf import ConfigError, tokenize
from pyldapd.model import filter as flt
from pyldapd.model.dn import DNError, normalize_dn, rdn_attributes, split_rdn
from pyldapd.model.entry import Attribute, Entry
from pyldapd.protocol.ldap import ResultCode
from pyldapd.server import acl
from pyldapd.server.acl import (
    AUTH,
    CHILDREN,
    COMPARE,
    DISCLOSE,
    ENTRY,
    READ,
    SEARCH,
    AccessContext,
    Accessor,
    ACLError,
    Policy,
    Target,
)
from pyldapd.server.entries import MANAGEABLE
from pyldapd.server.errors import LDAPError

if TYPE_CHECKING:
    from pyldapd.server.directory import Backend, Directory, Session

LOCAL_SSF = 71  # slapd's strength for ldapi:// (LDAP_PVT_SASL_LOCAL_SSF)
_INDEX_PREFIX = re.compile(r"^\{-?\d+\}")


@dataclass
class SimpleChange:
    operation: int
    attr: str
    values: list[bytes]


def parse_rules(texts: list[str], sources: list[str]) -> list[acl.Rule]:
    rules = []
    for index, text in enumerate(texts):
        source = sources[index] if index < len(sources) else ""
        try:
            words = tokenize(_INDEX_PREFIX.sub("", text.strip()))
            rules.append(acl.parse_access(words, source))
        except (ACLError, ValueError) as exc:
            raise config_error(source, f"access: {exc}") from None
    return rules


def config_error(source: str, message: str) -> ConfigError:
    where, _, line = source.rpartition(":")
    if not where or not line.isdigit():
        return ConfigError(source or "config", 0, message)
    return ConfigError(where, int(line), message)


class AccessControl:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.schema = directory.schema
        config = directory.config
        frontend_sources = getattr(config, "access_sources", [])
        self.frontend = self.build(config.access, frontend_sources, [], [])
        self.policies: dict[int, Policy] = {}
        for backend in directory.backends:
            db = backend.config
            self.policies[id(backend)] = self.build(db.access, getattr(db, "access_sources", []), config.access,
                                                    frontend_sources)  # fmt: skip

    def build(self, texts: list[str], sources: list[str], more: list[str], more_sources: list[str]) -> Policy:
        rules = parse_rules(texts, sources) + parse_rules(more, more_sources)
        try:
            return Policy(rules, self.schema, self.normalize)
        except ACLError as exc:
            source = next((r.source for r in rules if r.text in str(exc)), "")
            raise config_error(source, f"access: {exc}") from None

    def normalize(self, dn: str) -> str:
        return normalize_dn(dn, self.schema)

    def policy(self, backend: Backend | None) -> Policy:
        if backend is None:
            return self.frontend
        return self.policies.get(id(backend)) or self.frontend

    @property
    def configured(self) -> bool:
        return not all(p.default for p in [self.frontend, *self.policies.values()])

    @staticmethod
    def accessor(session: Session) -> Accessor:
        ssf = getattr(session, "ssf", 0) or (LOCAL_SSF if session.local else 0)
        return Accessor(
            ndn=session.bind_ndn,
            peer=session.peer,
            sockurl=getattr(session, "listener_url", "") or "",
            ssf=ssf,
            transport_ssf=getattr(session, "transport_ssf", 0) or (LOCAL_SSF if session.local else 0),
            tls_ssf=getattr(session, "tls_ssf", 0) or 0,
            sasl_ssf=getattr(session, "sasl_ssf", 0) or 0,
        )

    def context(self, txn: Any = None, backend: Backend | None = None) -> AccessContext:
        def lookup(ndn: str) -> Entry | None:
            if txn is not None and backend is not None and backend.holds(ndn):
                return txn.get(ndn)
            return self.directory.lookup_entry(ndn)

        def search(base_ndn: str, scope: int, request_filter: Any) -> list[Entry]:
            # a set's ldap:/// URL: slapd searches the database holding the base, as its rootdn, without limits
            db = self.directory.backend_for(base_ndn)
            if db is None:
                return []
            if txn is not None and db is backend:
                return internal_search(self.directory, txn, base_ndn, scope, request_filter)
            with db.db.read() as reader:
                return internal_search(self.directory, reader, base_ndn, scope, request_filter)

        return AccessContext(self.schema, lookup, search)

    def allowed(self, session: Session, backend: Backend | None, entry: Entry | None, ndn: str, attr: str,
                need: int, value: bytes | None = None, txn: Any = None, *,
                ctx: AccessContext | None = None) -> bool:  # fmt: skip
        if backend is not None and self.directory.is_root(session, backend):
            return True
        policy = self.policy(backend)
        if policy.default:
            return (acl.DEFAULT_POLICY & need) == need
        target = Target(ndn, entry, attr, value)
        return policy.allowed(self.accessor(session), target, need, ctx or self.context(txn, backend))

    def attr_key(self, description: str) -> str:
        at, _ = self.schema.split_description(description)
        return at.key if at is not None else description.split(";", 1)[0].lower()

    def check_modlist(self, session: Session, backend: Backend, entry: Entry, ndn: str, changes: list,
                      txn: Any, *, relax: bool = False) -> bool:  # fmt: skip
        """slapd's acl_check_modlist: delete rights to remove values, add rights to add them. NO-USER-MODIFICATION
        types are the server's to write and are not checked, but those a client writes with the Relax Rules
        control (MANAGEABLE), which take `manage` for every right."""
        if self.directory.is_root(session, backend):
            return True
        policy = self.policy(backend)
        if policy.default:
            return False
        ctx = self.context(txn, backend)
        who = self.accessor(session)

        def can(attr: str, need: int, value: bytes | None) -> bool:
            return policy.allowed(who, Target(ndn, entry, attr, value), need, ctx)

        for change in changes:
            at, _ = self.schema.split_description(change.attr)
            managing = False
            if at is not None and at.no_user_modification:
                if not (relax and at.key in MANAGEABLE):
                    continue
                managing = True
            add_right = acl.MANAGE if managing else acl.ADD
            delete_right = acl.MANAGE if managing else acl.DELETE
            key = at.key if at is not None else change.attr.lower()
            op = change.operation
            values = list(change.values or [])
            if op in (2, 3):  # replace, increment
                if not can(key, delete_right, None):
                    return False
                if not values:
                    continue
                op = 0
            if op == 0:
                if not all(can(key, add_right, v) for v in values):
                    return False
            elif op == 1:
                if not values:
                    if not can(key, delete_right, None):
                        return False
                elif not all(can(key, delete_right, v) for v in values):
                    return False
        return True

    # -- updates, as back-mdb checks them ------------------------------------------------------------------

    def deny(self, text: str) -> LDAPError:
        return LDAPError(ResultCode.insufficientAccessRights, text)

    @staticmethod
    def unchecked_entry_writes(backend: Backend) -> bool:
        """slapd's back-ldif checks no access on add, delete and modrdn (only the modlist of a modify or of a
        modrdn's naming values, through acl_check_modlist): who may create or remove its entries is whoever the
        database's `restrict`/`readonly` and the frontend let through."""
        return backend.config.declared_type == "ldif"

    @staticmethod
    def entry_right(need: int, relax: bool) -> int:
        """The right a write needs on `entry`: with the Relax Rules control, `manage` (slapd's access_allowed)."""
        return acl.MANAGE if relax else need

    def check_add(self, session: Session, backend: Backend, txn: Any, entry: Entry, ndn: str,
                  parent: Entry | None, parent_ndn: str, *, relax: bool = False) -> None:  # fmt: skip
        if self.directory.is_root(session, backend) or self.unchecked_entry_writes(backend):
            return
        ctx = self.context(txn, backend)
        if parent is None:
            root = Entry("")
            if not self.allowed(session, None, root, "", CHILDREN, acl.ADD, ctx=ctx):
                raise self.deny("no write access to parent")
        elif not self.allowed(session, backend, parent, parent_ndn, CHILDREN, acl.ADD, txn, ctx=ctx):
            raise self.deny("no write access to parent")
        if not self.allowed(
            session, backend, entry, ndn, ENTRY, self.entry_right(acl.ADD, relax), txn, ctx=ctx
        ):
            raise self.deny("no write access to entry")
        if backend.config.add_content_acl:  # slapd's acl_check_modlist on adds: `add` to every value added
            content = [SimpleChange(0, a.name, list(a.values)) for a in entry.attrs.values()]
            if not self.check_modlist(session, backend, entry, ndn, content, txn, relax=relax):
                raise self.deny("no write access to attribute")

    def check_delete(self, session: Session, backend: Backend, txn: Any, entry: Entry, ndn: str, *,
                     relax: bool = False) -> None:  # fmt: skip
        if self.directory.is_root(session, backend) or self.unchecked_entry_writes(backend):
            return
        ctx = self.context(txn, backend)
        parent_ndn = split_rdn(ndn)[1]
        parent = txn.get(parent_ndn) if ndn != backend.suffix_ndn else None
        if parent is None:
            raise self.deny("")  # only the rootdn deletes the suffix entry
        if not self.allowed(session, backend, parent, parent_ndn, CHILDREN, acl.DELETE, txn, ctx=ctx):
            raise self.deny("no write access to parent")
        if not self.allowed(session, backend, entry, ndn, ENTRY, self.entry_right(acl.DELETE, relax), txn,
                            ctx=ctx):  # fmt: skip
            raise self.deny("no write access to entry")

    def check_modify(self, session: Session, backend: Backend, txn: Any, entry: Entry, ndn: str,
                     changes: list, *, relax: bool = False) -> None:  # fmt: skip
        if not self.check_modlist(session, backend, entry, ndn, changes, txn, relax=relax):
            raise self.deny("")

    def check_rename_parent(
        self, session: Session, backend: Backend, txn: Any, ndn: str, moved: bool
    ) -> None:
        """back-mdb's first modrdn check (before the assertion): write (wdel when moved) on the old parent's
        children."""
        if self.directory.is_root(session, backend) or self.unchecked_entry_writes(backend):
            return
        parent_ndn = split_rdn(ndn)[1]
        parent = txn.get(parent_ndn)
        if parent is None:
            raise self.deny("no write access to parent's children")
        need = acl.DELETE if moved else acl.WRITE
        if not self.allowed(session, backend, parent, parent_ndn, CHILDREN, need, txn):
            raise self.deny("no write access to parent's children")

    def check_rename(self, session: Session, backend: Backend, txn: Any, entry: Entry, ndn: str,
                     new_parent_ndn: str, moved: bool, old_rdn: str, new_rdn: str,
                     delete_old_rdn: bool, *, relax: bool = False) -> None:  # fmt: skip
        if self.directory.is_root(session, backend):
            return
        ctx = self.context(txn, backend)
        unchecked = self.unchecked_entry_writes(backend)
        if not unchecked and not self.allowed(session, backend, entry, ndn, ENTRY, self.entry_right(acl.WRITE, relax),
                                              txn, ctx=ctx):  # fmt: skip
            raise self.deny("no write access to old entry")
        if moved and not unchecked:
            new_parent = txn.get(new_parent_ndn)
            if new_parent is not None and not self.allowed(session, backend, new_parent, new_parent_ndn,
                                                           CHILDREN, acl.ADD, txn, ctx=ctx):  # fmt: skip
                raise self.deny("no write access to new superior's children")
        changes = [SimpleChange(0, attr, [value.encode()]) for attr, value in rdn_attributes(new_rdn)]
        if delete_old_rdn:
            changes += [SimpleChange(1, attr, [value.encode()]) for attr, value in rdn_attributes(old_rdn)]
        if not self.check_modlist(session, backend, entry, ndn, changes, txn, relax=relax):
            raise self.deny("")

    def check_bind(self, session: Session, backend: Backend, entry: Entry, ndn: str) -> bool:
        """auth on userPassword, checked as the anonymous identity the bind runs with."""
        return self.allowed(session, backend, entry, ndn, self.attr_key("userPassword"), AUTH)

    def check_password_modify(self, session: Session, backend: Backend, txn: Any, entry: Entry, ndn: str,
                              new_value: bytes) -> None:  # fmt: skip
        change = SimpleChange(2, "userPassword", [new_value])
        if not self.check_modlist(session, backend, entry, ndn, [change], txn):
            raise self.deny("")

    def not_found(self, session: Session, backend: Backend | None, txn: Any, ndn: str,
                  referred: str | None = None, scope: int | None = None) -> LDAPError:  # fmt: skip
        """noSuchObject, naming the nearest existing ancestor only when it may be disclosed. `referred`: the
        request's DN, when a nearest ancestor that is a referral entry refers the request there (back-mdb's
        search and compare, ManageDsaIT or not)."""
        nearest = txn.nearest_ancestor(ndn) if txn is not None else None
        matched = ""
        if nearest is not None:
            nearest_ndn = normalize_dn(nearest.dn, self.schema)
            if self.allowed(session, backend, nearest, nearest_ndn, ENTRY, DISCLOSE, txn):
                if referred is not None:
                    from pyldapd.server.directory import refer

                    refer(nearest, txn, nearest_ndn, referred, scope)
                matched = nearest.dn
        return LDAPError(ResultCode.noSuchObject, "", matched_dn=matched)

    # -- search ----------------------------------------------------------------------------------------------

    def search_guard(self, session: Session, backend: Backend | None, request_filter: Any, txn: Any = None
                     ) -> SearchGuard | None:  # fmt: skip
        """None when access control lets this session see everything (rootdn, or the default policy)."""
        if backend is not None and self.directory.is_root(session, backend):
            return None
        policy = self.policy(backend)
        if policy.default:
            return None
        return SearchGuard(self, policy, session, backend, request_filter, txn)

    # -- controls that return or test an entry's values --------------------------------------------------

    def read_entry(self, session: Session, backend: Backend | None, entry: Entry, selection: Any,
                   txn: Any = None) -> bytes | None:  # fmt: skip
        """The attribute list a Pre-Read/Post-Read control returns, as slapd's send_search_entry builds it:
        `read` on the entry, then on each attribute and value; None when the entry itself may not be read."""
        has_children = txn.has_children if txn is not None and selection.wants_has_subordinates else None
        guard = self.search_guard(session, backend, None, txn)
        if guard is None:
            return selection.encode(entry, has_children)
        return guard.encode(entry, selection, has_children)

    def assertion_holds(self, session: Session, backend: Backend | None, entry: Entry, assertion: Any,
                        txn: Any = None) -> bool:  # fmt: skip
        """The Assertion control's filter, evaluated as slapd's test_filter does: `search` access per attribute,
        a denied assertion is Undefined, and only True lets the operation go on."""
        guard = self.search_guard(session, backend, assertion, txn)
        if guard is None:
            return self.directory.filters.matches(assertion, entry)
        return guard.matches(entry)


class SearchGuard:
    def __init__(self, control: AccessControl, policy: Policy, session: Session, backend: Backend | None,
                 request_filter: Any, txn: Any) -> None:  # fmt: skip
        self.control = control
        self.policy = policy
        self.schema = control.schema
        self.who = control.accessor(session)
        self.ctx = control.context(txn, backend)
        self.per_value = any(
            rule.val is not None or any(c.self_only for c in rule.clauses) for rule in policy.rules
        )
        self.evaluator = control.directory.filters
        self.matcher = self.compile(request_filter) if request_filter is not None else None

    def can(self, entry: Entry, ndn: str, attr: str, need: int, value: bytes | None = None) -> bool:
        return self.policy.allowed(self.who, Target(ndn, entry, attr, value), need, self.ctx)

    def ndn(self, entry: Entry) -> str:
        try:
            return normalize_dn(entry.dn, self.schema)
        except DNError:
            return entry.dn.lower()

    def base_denied(self, entry: Entry, ndn: str) -> int | None:
        """The result code a search of this base gets when `search` on its entry is denied, else None."""
        mask = self.policy.mask(self.who, Target(ndn, entry, ENTRY), self.ctx)
        if mask & SEARCH:
            return None
        return 50 if mask & DISCLOSE else 32

    def discloses(self, entry: Entry, ndn: str | None = None) -> bool:
        return self.can(entry, ndn if ndn is not None else self.ndn(entry), ENTRY, DISCLOSE)

    # the filter, with `search` access per assertion
    def compile(self, f: Any) -> Callable[[Entry], Any]:
        if isinstance(f, flt.And | flt.Or):
            is_and = isinstance(f, flt.And)
            subs = [self.compile(g) for g in f.filters] if is_and else self.compile_or(f.filters)

            def combine(entry: Entry) -> Any:
                result: Any = is_and
                for sub in subs:
                    r = sub(entry)
                    if r is (not is_and):
                        return r
                    if r is None:
                        result = None
                return result

            return combine
        if isinstance(f, flt.Not):
            inner = self.compile(f.filter)

            def negate(entry: Entry) -> Any:
                r = inner(entry)
                return None if r is None else not r

            return negate
        leaf = self.evaluator.compile3(f)
        attr = getattr(f, "attr", None)
        if isinstance(f, flt.Extensible) and not attr:
            # a matching rule on every attribute (slapd's test_mra_filter): the attributes this session may not
            # search are passed over, as if the entry did not have them
            def guarded_any(entry: Entry) -> Any:
                ndn = getattr(entry, "_acl_ndn", None) or self.ndn(entry)
                bases = {k.split(";", 1)[0] for k in entry.attrs}
                denied = {k for k in bases if not self.can(entry, ndn, k, SEARCH, f.value)}
                if not denied:
                    return leaf(entry)
                view = Entry(entry.dn, {k: a for k, a in entry.attrs.items()
                                        if k.split(";", 1)[0] not in denied}, entry.id)  # fmt: skip
                return leaf(view)

            return guarded_any
        if not attr:
            return leaf
        key = self.control.attr_key(attr)
        value = getattr(f, "value", None) if isinstance(f, flt.Equality | flt.Approx | flt.GreaterOrEqual |
                                                         flt.LessOrEqual) else None  # fmt: skip
        at = self.schema.attribute_type(attr.split(";", 1)[0])
        subkeys = {sub.key for sub in self.schema.subtypes(at)} - {key} if at is not None else set()
        if isinstance(f, flt.Extensible):
            subkeys = set()  # slapd's test_mra_filter checks the asserted type only

        def guarded(entry: Entry) -> Any:
            ndn = getattr(entry, "_acl_ndn", None) or self.ndn(entry)
            if not self.can(entry, ndn, key, SEARCH, value):
                return None
            if subkeys:
                # slapd's test_filter checks `search` on each subtype present (cn, title... under name): a
                # denied one cannot match, and makes the result Undefined unless an allowed one matches
                denied = {k.split(";", 1)[0] for k in entry.attrs if k.split(";", 1)[0] in subkeys}
                denied = {k for k in denied if not self.can(entry, ndn, k, SEARCH, value)}
                if denied:
                    view = Entry(entry.dn, {k: a for k, a in entry.attrs.items()
                                            if k.split(";", 1)[0] not in denied}, entry.id)  # fmt: skip
                    return True if leaf(view) is True else None
            return leaf(entry)

        return guarded

    def compile_or(self, filters: tuple[Any, ...]) -> list[Callable[[Entry], Any]]:
        """An OR's members; its equality terms on one attribute as one: one `search` check and one set lookup
        per entry, not one per term, when no rule looks at asserted values (`val=`, `self`)."""
        if self.per_value:
            return [self.compile(g) for g in filters]
        groups: dict[str, list[Any]] = {}
        for g in filters:
            if isinstance(g, flt.Equality):
                groups.setdefault(g.attr.lower(), []).append(g)
        out: list[Callable[[Entry], Any]] = []
        for g in filters:
            group = groups.get(g.attr.lower()) if isinstance(g, flt.Equality) else None
            if group is None or len(group) == 1:
                out.append(self.compile(g))
            elif group[0] is g:
                leaf = self.evaluator.compile3(flt.Or(tuple(group)))
                key = self.control.attr_key(g.attr)

                def guarded(entry: Entry, leaf: Any = leaf, key: str = key) -> Any:
                    ndn = getattr(entry, "_acl_ndn", None) or self.ndn(entry)
                    return leaf(entry) if self.can(entry, ndn, key, SEARCH) else None

                out.append(guarded)
        return out

    def matches(self, entry: Entry) -> bool:
        return self.matcher is None or self.matcher(entry) is True

    def readable(self, entry: Entry, ndn: str | None = None) -> bool:
        return self.can(entry, ndn if ndn is not None else self.ndn(entry), ENTRY, READ)

    def visible_entry(self, entry: Entry, ndn: str, selection: Any) -> tuple[Entry, Any]:
        """A copy of `entry` with only what this session may read, and the selection for its computed
        attributes."""
        shown = Entry(entry.dn, {}, entry.id)
        for key, attribute in entry.attrs.items():
            base = key.split(";", 1)[0]
            if self.per_value and not selection.types_only:
                # slapd's send_search_entry checks each value only: a `val=` rule can grant one value of an
                # attribute that the attribute-wide rules deny; an attribute with no readable value is left out
                values = [v for v in attribute.values if self.can(entry, ndn, base, READ, v)]
                if not values:
                    continue
            else:
                if not self.can(entry, ndn, base, READ):
                    continue
                values = attribute.values
            shown.attrs[key] = Attribute(attribute.name, values)
        if selection.computed:
            selection = copy.copy(selection)
            selection.computed = [c for c in selection.computed if self.can(entry, ndn, c.lower(), READ)]
            selection.wants_has_subordinates = "hasSubordinates" in selection.computed
        return shown, selection

    def for_sync(
        self, backend: Backend, base_ndn: str, selection: Any
    ) -> tuple[Any, Callable[[Entry], bool]]:
        """The selection and filter a sync search (syncprov) uses: only readable entries, attributes, values."""
        with backend.db.read() as txn:
            base = txn.get(base_ndn)
            if base is None:
                raise LDAPError(ResultCode.noSuchObject, "")
            denied = self.base_denied(base, base_ndn)
            if denied is not None:
                raise LDAPError(denied, "")

        def matches(entry: Entry) -> bool:
            return self.matches(entry) and self.readable(entry)

        return GuardedSelection(self, selection), matches

    def encode(self, entry: Entry, selection: Any, has_children: Any) -> bytes | None:
        """The attribute list to send for `entry`, or None when the entry itself may not be read."""
        ndn = self.ndn(entry)
        if not self.readable(entry, ndn):
            return None
        if getattr(selection, "only_none", False):  # "1.1": no attribute to check
            return selection.encode(entry, has_children)
        shown, sel = self.visible_entry(entry, ndn, selection)
        return sel.encode(shown, has_children)


def internal_search(
    directory: Directory, txn: Any, base_ndn: str, scope: int, request_filter: Any
) -> list[Entry]:
    """Entries of one database under base_ndn in scope (0 base, 1 one, 2 sub, 3 children) matching the filter."""
    base = txn.get(base_ndn)
    if base is None:
        return []
    found = [base] if scope in (0, 2) else []
    if scope != 0:
        level = [base]
        while level and len(found) < 1_000_000:  # bounded: a tree has finitely many levels
            level = [
                child for parent in level for child in txn.children(normalize_dn(parent.dn, directory.schema))
            ]
            found.extend(level)
            if scope == 1:
                break
    return [entry for entry in found if directory.filters.matches(request_filter, entry)]


def compare_allowed(control: AccessControl, session: Session, backend: Backend | None, entry: Entry, ndn: str,
                    attr: str, value: bytes) -> tuple[bool, bool]:  # fmt: skip
    """(may compare, may disclose the entry)."""
    ctx = control.context(None, backend)
    can = control.allowed(session, backend, entry, ndn, attr, COMPARE, value, ctx=ctx)
    disclose = can or control.allowed(session, backend, entry, ndn, ENTRY, DISCLOSE, ctx=ctx)
    return can, disclose


__all__ = ["AccessControl", "SearchGuard", "compare_allowed", "AUTH", "CHILDREN", "ENTRY", "READ"]


class GuardedSelection:
    """An AttributeSelection that shows only what the search's session may read."""

    def __init__(self, guard: SearchGuard, selection: Any) -> None:
        self.guard = guard
        self.selection = selection

    def __getattr__(self, name: str) -> Any:
        return getattr(self.selection, name)

    def encode(self, entry: Entry, has_children: Any) -> bytes:
        shown, selection = self.guard.visible_entry(entry, self.guard.ndn(entry), self.selection)
        return selection.encode(shown, has_children)
