"""`pyldapd modify` (slapmodify): LDIF change records applied to a stopped server's database, in LDIF order.

Each record is applied in a transaction of its own with the checks the server makes on the same change (attribute
types, value syntax, schema and naming: `pyldapd.server.entries`) and none of those that guard a client (access
control, a shadow's referral, `readonly`, NO-USER-MODIFICATION): the tool is the database's administrator, as
slapmodify is. What is stored is what the server would store: indexes kept up to date by the storage, the
operational attributes of a change (entryCSN, modifiersName, modifyTimestamp; entryUUID, creatorsName and
createTimestamp for a new entry), a tombstone for a deleted entry. As with slapmodify, the contextCSN moves only
with -w, and overlays (syncprov, accesslog) see nothing.

Where slapmodify 2.5.13 does something else, pyldapd keeps the database as the server would have it:
- modrdn and moddn records are applied (slapmodify refuses them: its backends have no offline rename);
- a record without a changetype is a modify when its first line names a modify operation (slapmodify reads every
  such record as a modify), and an add otherwise (slapmodify cannot parse it);
- a modify keeps the entry's entryUUID, creatorsName and createTimestamp (slapmodify makes new ones, so that
  every consumer would take the entry for another one);
- an add needs its parent in the database (slapmodify stores an orphan and fails only at the end);
- the exit status is 1 when any record failed, with -c too (slapmodify's says how the last record went);
- -w takes every committed change into the contextCSN, deletes included, even when the run stops at an error.
"""

from __future__ import annotations

import argparse
import mmap
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from pyldapd.backends.base import AlreadyExists, NoSuchEntry, NotAllowedOnNonLeaf, StorageError
from pyldapd.backends.mdb import WriteTxn
from pyldapd.cli.tools import (
    ToolError,
    check_modes,
    debug_level,
    glued_tree,
    load_config,
    names_config_database,
    numbered_databases,
    read_input,
    tool_database,
)
from pyldapd.config.model import DatabaseConfig, ServerConfig
from pyldapd.model.csn import CSNGenerator, CSNSet
from pyldapd.model.dn import DNError, is_descendant, normalize_dn, parent_dn
from pyldapd.model.entry import Entry
from pyldapd.model.ldif import LDIFChange, LDIFContent, LDIFError, LDIFRecord, parse_ldif
from pyldapd.model.schema import Schema
from pyldapd.protocol.ldap import Change, ResultCode
from pyldapd.server.entries import (
    MOD_ADD,
    MOD_DELETE,
    MOD_INCREMENT,
    MOD_REPLACE,
    apply_modifications,
    check_changes,
    check_entry,
    check_request_values,
    object_classes,
    rename_target,
    renamed_entry,
    resolve_type,
    structural_class,
)
from pyldapd.server.errors import LDAPError

if TYPE_CHECKING:
    from pyldapd.server.directory import Backend

MODIFY_OPERATIONS = {"add": MOD_ADD, "delete": MOD_DELETE, "replace": MOD_REPLACE, "increment": MOD_INCREMENT}
MAX_SERVER_ID = 4095  # slapd's SLAP_SYNC_SID_MAX, the largest -S
# what slapadd reports for an entry that is there already (back-mdb's words), kept for the same case here
KEY_EXISTS = "txn_aborted! MDB_KEYEXIST: Key/data pair already exists (-30799)"


@dataclass(frozen=True)
class ModifyOptions:
    """What `pyldapd modify` was asked to do, once the database is chosen."""

    continue_: bool = False  # -c
    dry_run: bool = False  # -u
    schema_check: bool = True  # not -s, not -o schema-check=no
    value_check: bool = False  # -o value-check=yes: every value of the changed entry, not only the new ones
    skip_to: int = 0  # -j: records starting before this line are skipped
    server_id: int = 0  # -S
    write_context: bool = False  # -w
    verbose: bool = False  # -v
    trace: bool = False  # -d with a level: a line as each record is taken up


class RecordFailed(Exception):
    """A record that was not applied; the text follows "pyldapd modify: "."""


class _DryRun(Exception):
    """Ends a -u record's transaction, which then aborts: everything was checked, nothing is written."""


@dataclass
class Target:
    """One database the run may change: the selected one or a subordinate glued under it."""

    number: int
    config: DatabaseConfig
    backend: Backend
    suffix_ndn: str
    csns: CSNSet = field(default_factory=CSNSet)  # the CSNs of the changes committed here, for -w


class ChangeApplier:
    """Applies LDIF records one by one to the databases of a glued tree (`targets`, the selected one first)."""

    def __init__(self, schema: Schema, config: ServerConfig, targets: list[Target], options: ModifyOptions,
                 err: TextIO) -> None:  # fmt: skip
        self.schema = schema
        self.config = config
        self.targets = targets
        self.options = options
        self.err = err
        self.csn = CSNGenerator(options.server_id)
        self.failures = 0
        self.suffixes = [  # every configured database's suffixes, normalized: which one holds a DN
            (number, database, normalize_dn(suffix, schema))
            for number, database in numbered_databases(config)
            for suffix in database.suffixes
        ]
        for target in targets:  # new CSNs sort after every one the database has recorded
            for value in self.stored_context(target).values():
                self.observe(value)

    # -- the run ---------------------------------------------------------------------------------------------

    def run(self, data: bytes | mmap.mmap) -> int:
        """Apply every record (stopping at the first failure unless -c); the exit status."""
        for start, block, header in record_blocks(data):
            if start < self.options.skip_to:
                continue
            try:
                records = list(parse_ldif(block, first_line=start, header=header, implicit_modify=True))
            except LDIFError as exc:  # slapmodify's words name the record's first line; ours, where it failed
                self.fail(f"could not parse entry (line={start}): {exc}")
                if not self.options.continue_:
                    break
                continue
            stopped = False
            for record in records:
                try:
                    self.apply(record)
                except RecordFailed as exc:
                    self.fail(str(exc))
                    if not self.options.continue_:
                        stopped = True
                        break
            if stopped:
                break
        if self.options.write_context and not self.options.dry_run:
            self.write_context_csns()
        return 1 if self.failures else 0

    def fail(self, text: str) -> None:
        self.failures += 1
        print(f"pyldapd modify: {text}", file=self.err)

    def apply(self, record: LDIFRecord) -> None:
        kind = record.changetype if isinstance(record, LDIFChange) else "add"
        request = "modrdn" if kind in ("modrdn", "moddn") else kind
        line = record.line
        if isinstance(record, LDIFChange) and record.controls:
            # a control asks for something of an LDAP operation; slapmodify drops them unread
            raise RecordFailed(f'dn="{record.dn}" (line={line}): control lines are not supported')
        try:
            ndn = normalize_dn(record.dn, self.schema)
        except DNError:
            raise RecordFailed(f'DN="{record.dn}" normalization failed (line={line})') from None
        target = self.target_for(ndn, record.dn, line, request)
        if self.options.trace:
            print(f'=> {request}( "{ndn}" ) (line={line})', file=self.err)
        try:
            with self.transaction(target) as txn:
                if isinstance(record, LDIFContent) or record.changetype == "add":
                    eid = self.add(txn, target, record, ndn)
                elif record.changetype == "modify":
                    eid = self.modify(txn, target, record, ndn)
                elif record.changetype == "delete":
                    eid = self.delete(txn, target, record, ndn)
                else:
                    eid = self.rename(txn, target, record, ndn)
        except StorageError as exc:
            raise RecordFailed(f'could not {request} entry dn="{ndn}" (line={line}): {exc}') from None
        if self.options.verbose:
            written = "" if self.options.dry_run else f" ({eid:08x})"
            print(f'{request}: "{ndn}"{written}', file=self.err)

    @contextmanager
    def transaction(self, target: Target) -> Iterator[WriteTxn]:
        """The record's write transaction; with -u it aborts once everything has been checked."""
        try:
            with target.backend.db.write() as txn:
                yield txn
                if self.options.dry_run:
                    raise _DryRun
        except _DryRun:
            pass

    # -- where a record goes ---------------------------------------------------------------------------------

    def target_for(self, ndn: str, dn: str, line: int, request: str) -> Target:
        """The database of the tree holding `ndn`, as slapmodify picks it; a DN that another configured database
        holds (a subordinate left out by -g, say) is refused with slapmodify's hint."""
        if not ndn:
            raise RecordFailed(f'line {line}: {request} entry with empty dn=""')
        found = self.target_holding(ndn)
        if found is not None:
            return found
        selected = self.targets[0]
        text = (
            f"line {line}: database #{selected.number} ({selected.config.suffix}) not configured to hold "
            f'"{dn}"'
        )
        elsewhere = self.configured_for(ndn)
        if elsewhere is not None:
            number, config = elsewhere
            raise RecordFailed(f"{text}; did you mean to use database #{number} ({config.suffix})?")
        raise RecordFailed(f"{text}; no database configured for that naming context")

    def target_holding(self, ndn: str) -> Target | None:
        """The target that is the configured database holding `ndn` (the most specific suffix), if any."""
        configured = self.configured_for(ndn)
        if configured is None:
            return None
        return next((t for t in self.targets if t.config is configured[1]), None)

    def configured_for(self, ndn: str) -> tuple[int, DatabaseConfig] | None:
        """The configured database whose suffix holds `ndn` most specifically."""
        best: tuple[int, DatabaseConfig, str] | None = None
        for number, config, suffix_ndn in self.suffixes:
            if within(ndn, suffix_ndn) and (best is None or len(suffix_ndn) > len(best[2])):
                best = (number, config, suffix_ndn)
        return (best[0], best[1]) if best is not None else None

    # -- the four changes ------------------------------------------------------------------------------------

    def add(self, txn: WriteTxn, target: Target, record: LDIFRecord, ndn: str) -> int:
        """An entry built as slapmodify builds it: each attribute added to an empty entry as a modify adds it."""
        entry = Entry(record.dn)
        for description, values in record.attributes:
            self.change(entry, Change(MOD_ADD, description, list(values)), record.dn, record.line)
        self.check(entry, record.dn, record.line)
        if txn.exists(ndn):
            raise RecordFailed(f'could not add entry dn="{ndn}" (line={record.line}): {KEY_EXISTS}')
        csn = self.stamp(entry)
        try:
            eid = txn.add(entry)
        except AlreadyExists:
            raise RecordFailed(f'could not add entry dn="{ndn}" (line={record.line}): {KEY_EXISTS}') from None
        except NoSuchEntry:
            raise RecordFailed(
                f'could not add entry dn="{ndn}" (line={record.line}): parent entry "{parent_dn(ndn)}" does not '
                "exist"
            ) from None
        self.committed(txn, target, csn)
        return eid

    def modify(self, txn: WriteTxn, target: Target, record: LDIFChange, ndn: str) -> int:
        current = self.existing(txn, ndn, record.line)
        entry = current.copy()
        for operation, description, values in record.modifications:
            change = Change(MODIFY_OPERATIONS[operation], description, list(values))
            self.change(entry, change, record.dn, record.line)
        if record.modifications:  # a modify without changes only records that it happened, as slapmodify's
            self.check(entry, record.dn, record.line)
        self.observe_entry(current)
        csn = self.stamp(entry)
        txn.modify(ndn, entry)
        self.committed(txn, target, csn)
        return current.id

    def delete(self, txn: WriteTxn, target: Target, record: LDIFChange, ndn: str) -> int:
        from pyldapd.replication.state import entry_uuid_bytes, write_tombstone

        current = self.existing(txn, ndn, record.line)
        try:
            txn.delete(ndn)
        except NotAllowedOnNonLeaf:
            raise RecordFailed(
                f'could not delete entry dn="{ndn}" (line={record.line}): delete failed: subordinate objects must '
                "be deleted first"
            ) from None
        self.observe_entry(current)
        csn = self.csn.next()
        entry_uuid = entry_uuid_bytes(current)
        if entry_uuid is not None:  # as the server: a late replicated change to it cannot bring it back
            write_tombstone(txn, entry_uuid, csn)
        self.committed(txn, target, csn)
        return current.id

    def rename(self, txn: WriteTxn, target: Target, record: LDIFChange, ndn: str) -> int:
        """modrdn/moddn, with the checks of the server's modify DN."""
        line = record.line

        def refused(code: int, text: str) -> RecordFailed:
            return RecordFailed(f'could not modrdn entry dn="{ndn}" (line={line}): ({code}) {text}')

        assert record.newrdn is not None  # the LDIF reader requires it
        try:
            new_dn, new_ndn = rename_target(self.schema, record.dn, record.newrdn, record.newsuperior)
        except LDAPError as exc:
            raise refused(int(exc.code), exc.message) from None
        if self.target_holding(new_ndn) is not target:
            raise refused(int(ResultCode.affectsMultipleDSAs), "cannot rename between DSAs")
        if ndn == target.suffix_ndn:
            raise refused(int(ResultCode.unwillingToPerform), "cannot rename the suffix entry")
        if new_ndn != ndn and is_descendant(new_ndn, ndn):
            raise refused(int(ResultCode.unwillingToPerform), "cannot place an entry below itself")
        current = self.existing(txn, ndn, line)
        if record.newsuperior is not None and not txn.exists(parent_dn(new_ndn)):
            raise refused(int(ResultCode.noSuchObject), "new superior not found")
        if new_ndn != ndn and txn.exists(new_ndn):
            raise refused(int(ResultCode.entryAlreadyExists), f'"{new_dn}" already exists')
        try:
            entry = renamed_entry(
                self.schema, current, record.newrdn, record.newsuperior, record.deleteoldrdn
            )
        except LDAPError as exc:
            raise refused(int(exc.code), exc.message) from None
        self.check(entry, entry.dn, line)
        self.observe_entry(current)
        csn = self.stamp(entry)
        txn.rename(ndn, entry)
        self.committed(txn, target, csn)
        return current.id

    # -- checks ----------------------------------------------------------------------------------------------

    def existing(self, txn: WriteTxn, ndn: str, line: int) -> Entry:
        entry = txn.get(ndn)
        if entry is None:
            raise RecordFailed(f'no such entry "{ndn}" in database (lineno={line})')
        return entry

    def change(self, entry: Entry, change: Change, dn: str, line: int) -> None:
        """One change of a record, in slapmodify's three steps: the type, the values, the change itself."""
        try:
            resolve_type(self.schema, change.attr)
        except LDAPError as exc:
            raise RecordFailed(
                f'slap_str2ad("{change.attr}") failed for entry "{dn}" ({int(exc.code)}: {exc.message}, '
                f"lineno={line})"
            ) from None
        try:
            check_changes(self.schema, [change], user_modification=False)
        except LDAPError as exc:
            raise RecordFailed(
                f'DN="{dn}": unable to validate attr={change.attr} (line={line}): ({int(exc.code)}) {exc.message}'
            ) from None
        try:
            apply_modifications(self.schema, entry, [change])
        except LDAPError as exc:
            raise RecordFailed(
                f'DN="{dn}": unable to modify attr={change.attr} (line={line}): ({int(exc.code)}) {exc.message}'
            ) from None

    def check(self, entry: Entry, dn: str, line: int) -> None:
        """The entry as the change leaves it, as slapmodify's slap_tool_entry_check: an objectClass always, the
        schema unless -s (its structuralObjectClass may not change), every value with -o value-check=yes."""
        if not entry.get("objectclass"):
            raise RecordFailed(f'dn="{dn}" (line={line}): no objectClass attribute')
        try:
            if self.options.schema_check:
                structural = check_entry(
                    self.schema, entry, old_structural=entry.first("structuralobjectclass")
                )
            else:
                try:
                    structural = structural_class(object_classes(self.schema, entry))
                except LDAPError:
                    structural = None
            if structural is not None and "structuralobjectclass" not in entry.attrs:
                entry.put("structuralobjectclass", "structuralObjectClass", [structural.name.encode()])
            if self.options.value_check:
                for attribute in entry.attrs.values():
                    at = resolve_type(self.schema, attribute.name)
                    check_request_values(at, attribute.name, attribute.values, self.schema)
        except LDAPError as exc:
            raise RecordFailed(f'dn="{dn}" (line={line}): ({int(exc.code)}) {exc.message}') from None

    # -- operational attributes and contextCSN ---------------------------------------------------------------

    def stamp(self, entry: Entry) -> str:
        """The change's entryCSN, modifiersName and modifyTimestamp (the database's rootdn, as slapmodify writes
        it); entryUUID, creatorsName and createTimestamp when the entry has none (a new one, unless the LDIF
        brings its own, as slapadd keeps them)."""
        csn = self.csn.next()
        now = (csn[:14] + "Z").encode()  # the time of the CSN, as the server derives it
        who = (self.targets[0].config.rootdn or "").encode()
        if "entryuuid" not in entry.attrs:
            entry.put("entryuuid", "entryUUID", [str(uuid.uuid1()).encode()])
        if "creatorsname" not in entry.attrs:
            entry.put("creatorsname", "creatorsName", [who])
        if "createtimestamp" not in entry.attrs:
            entry.put("createtimestamp", "createTimestamp", [now])
        entry.put("entrycsn", "entryCSN", [csn.encode()])
        entry.put("modifiersname", "modifiersName", [who])
        entry.put("modifytimestamp", "modifyTimestamp", [now])
        return csn

    def observe(self, csn: str | bytes) -> None:
        try:
            self.csn.observe(csn)
        except ValueError:
            pass  # not a CSN: nothing to stay above

    def observe_entry(self, entry: Entry) -> None:
        value = entry.first("entrycsn")
        if value is not None:
            self.observe(value)

    def committed(self, txn: WriteTxn, target: Target, csn: str) -> None:
        """Count the change's CSN for -w once its transaction commits (never for -u, or when it aborts)."""
        if self.options.write_context and not self.options.dry_run:
            txn.on_commit(lambda: target.csns.update_csn(csn))

    @staticmethod
    def stored_context(target: Target) -> CSNSet:
        from pyldapd.replication.state import CONTEXT_CSN_KEY, ContextState

        state = ContextState()
        with target.backend.db.read() as txn:
            suffix = txn.get(target.suffix_ndn)
            state.load(txn.get_raw_metadata(CONTEXT_CSN_KEY), suffix.get("contextcsn") if suffix else [])
        return state.csns

    def write_context_csns(self) -> None:
        """-w: each changed database's contextCSN raised to the greatest CSN per server ID of its changes."""
        from pyldapd.cli.bulkload import store_context_csns

        for target in self.targets:
            if not target.csns:
                continue
            try:
                suffix = store_context_csns(target.backend.db, target.suffix_ndn, target.csns)
            except StorageError as exc:
                self.fail(f"could not modify ctxcsn ({exc})")
                continue
            if suffix is None:
                self.fail("context entry is missing")  # slapmodify's words
            elif self.options.verbose:
                print(f'modified: "{suffix.dn}" ({suffix.id:08x})', file=self.err)


def within(ndn: str, suffix_ndn: str) -> bool:
    return ndn == suffix_ndn or is_descendant(ndn, suffix_ndn)


def record_blocks(data: bytes | mmap.mmap) -> Iterator[tuple[int, bytes, bool]]:
    """The LDIF cut at blank lines: (number of the block's first line, its text, whether it may hold the
    "version:" line). Each block is read on its own, so that with -c an unreadable record costs only itself."""
    line, position, size = 1, 0, len(data)
    block: list[bytes] = []
    start = 1
    first = True
    while position < size:
        end = data.find(b"\n", position)
        end = size if end < 0 else end
        raw = bytes(data[position:end])
        text = raw[:-1] if raw.endswith(b"\r") else raw
        # a separator: an empty line, or one of blanks that is no continuation (those start with a space)
        if not text.startswith(b" ") and not text.strip():
            if block:
                yield start, b"\n".join(block) + b"\n", first
                # the version line may follow blocks of comments only (folded comments go on with a space)
                first = first and all(kept.startswith((b"#", b" ")) for kept in block)
                block = []
        else:
            if not block:
                start = line
            block.append(raw)
        position, line = end + 1, line + 1
    if block:
        yield start, b"\n".join(block) + b"\n", first


# --- command line ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """slapmodify's own flags (the common ones come from `pyldapd.cli.tools.add_common_flags`)."""
    parser.add_argument("-l", dest="ldif", help="LDIF input file (default: standard input)")
    parser.add_argument("-j", dest="jump", type=int, default=0, help="skip the records before this LDIF line")
    parser.add_argument("-q", dest="quick", action="store_true", help="quick mode: one sync at the end")
    parser.add_argument("-s", dest="no_schema_check", action="store_true", help="no schema checking")
    parser.add_argument("-S", dest="sid", type=int, default=0, help="server ID for generated entryCSNs")
    parser.add_argument(
        "-u", dest="dry_run", action="store_true", help="dry run: check everything, write nothing"
    )
    parser.add_argument("-w", dest="write_context", action="store_true", help="write contextCSN at the end")


def modify_options(args: argparse.Namespace) -> ModifyOptions:
    """The flags, checked as slapmodify checks them (-o takes schema-check and value-check)."""
    if args.config_file and args.config_dir:  # slapd would convert the file into the folder first
        raise ToolError(
            "-f and -F together: convert the slapd.conf with `pyldapd test -f FILE -F DIR`, then give one of them"
        )
    schema_check, value_check = check_modes("modify", args, value_default=False)
    if not 0 <= args.sid <= MAX_SERVER_ID:
        raise ToolError(f"-S {args.sid}: a server ID is 0 to {MAX_SERVER_ID}")
    if args.jump < 0:
        raise ToolError(f"-j {args.jump}: a line number is 0 or more")
    level = debug_level(args)
    return ModifyOptions(
        continue_=args.continue_,
        dry_run=args.dry_run,
        schema_check=schema_check,
        value_check=value_check,
        skip_to=args.jump,
        server_id=args.sid,
        write_context=args.write_context,
        verbose=args.verbose,
        trace=level != 0,
    )


def cmd_modify(args: argparse.Namespace) -> int:
    """slapmodify: the records of the LDIF applied to the selected database and the subordinates glued under it
    (each record goes to the one holding its DN); -q leaves the syncing to the end."""
    from pyldapd.server.directory import Backend

    if names_config_database(args):
        raise ToolError(
            "-n 0: pyldapd modify does not change the config database; change cn=config with ldapmodify on the "
            "running server"
        )
    options = modify_options(args)
    config = load_config(args)
    schema, number, dbconfig = tool_database(config, args)
    data = read_input(args.ldif)
    targets: list[Target] = []
    try:
        for part_number, part in glued_tree(config, number, dbconfig, args):
            backend = Backend(part, schema, sync=not args.quick)
            targets.append(Target(part_number, part, backend, backend.suffix_ndn))
        status = ChangeApplier(schema, config, targets, options, sys.stderr).run(data)
        if args.quick and not args.dry_run:
            for target in targets:
                target.backend.db.sync()
    finally:
        for target in targets:
            target.backend.db.close()
        if isinstance(data, mmap.mmap):
            data.close()
    return status
