"""The offline tools: `pyldapd add | cat | index | test`, mirroring slapadd, slapcat, slapindex and slaptest.

They work on the LMDB database of a configured data database, read from the same config as the server
(`-f slapd.conf`, or `-F slapd.d` through `pyldapd.config.slapdd.load_slapd_d` when that module is present).
As with slapd's tools, the server should be stopped: nothing here checks for a running pyldapd (slapadd does not
either); LMDB keeps the files consistent when both write, but a running server does not see entries added behind
its back in its contextCSN or caches until it restarts.

Databases are numbered as slapd numbers them: `-n 0` is the config database (not supported by these tools),
then every `database` of the config in order (monitor included), from 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import TextIO

from pyldapd.config.model import DatabaseConfig, ServerConfig
from pyldapd.config.slapdconf import ConfigError, load_slapd_conf
from pyldapd.model.csn import CSNGenerator, CSNSet, parse_csn
from pyldapd.model.dn import DNError, is_descendant, normalize_dn, parent_dn
from pyldapd.model.entry import Attribute, Entry
from pyldapd.model.ldif import DEFAULT_WRAP, LDIFChange, LDIFError, format_entry, parse_ldif
from pyldapd.model.schema import Schema

BATCH = 1000  # entries per write transaction in `pyldapd add`


class ToolError(Exception):
    """A fatal error: printed as `pyldapd <tool>: message`, exit code 1."""


# --- shared: config, database selection ---------------------------------------------------------------------


def add_common_flags(parser: argparse.ArgumentParser, *, database: bool = True) -> None:
    parser.add_argument("-f", dest="config_file", help="slapd.conf file")
    parser.add_argument("-F", dest="config_dir", help="slapd.d configuration directory")
    parser.add_argument("-d", dest="debug", action="append", help="debug level (accepted)")
    parser.add_argument("-o", dest="options", action="append", default=[], help="option[=value]")
    parser.add_argument("-v", dest="verbose", action="store_true", help="verbose")
    if database:
        parser.add_argument("-b", dest="suffix", help="the database holding this suffix")
        parser.add_argument("-n", dest="dbnum", type=int, help="the n-th database (slapd's numbering)")
        parser.add_argument(
            "-g", dest="no_glue", action="store_true", help="no subordinate gluing (accepted)"
        )
        parser.add_argument("-c", dest="continue_", action="store_true", help="continue after errors")


def load_config(args: argparse.Namespace) -> ServerConfig:
    if args.config_dir and not args.config_file:
        try:
            from pyldapd.config import slapdd  # type: ignore[attr-defined]
        except ImportError:
            raise ToolError(
                "-F: slapd.d configuration is not supported by this build; use -f slapd.conf"
            ) from None
        return slapdd.load_slapd_d(args.config_dir)
    if not args.config_file:
        raise ToolError("a configuration is required: -f slapd.conf or -F slapd.d")
    return load_slapd_conf(args.config_file)


def numbered_databases(config: ServerConfig) -> list[DatabaseConfig]:
    """slapd's numbering: index 0 is the config database, then the configured databases in order."""
    return [db for db in config.databases if db.type not in ("config", "frontend")]


def select_database(
    config: ServerConfig, schema: Schema, args: argparse.Namespace
) -> tuple[int, DatabaseConfig]:
    """(slapd's database number, config) from -b / -n, or the first data database."""
    databases = numbered_databases(config)
    if args.suffix is not None and args.dbnum is not None:
        raise ToolError("-b and -n are mutually exclusive")
    if args.dbnum is not None:
        if args.dbnum == 0:
            raise ToolError("-n 0: the config database is not supported by this tool")
        if not 0 < args.dbnum <= len(databases):
            raise ToolError(
                "Database number selected via -n is out of range\n"
                f"Must be in the range 0 to {len(databases)} (the number of configured databases)"
            )
        db = databases[args.dbnum - 1]
        if db.type != "mdb":
            raise ToolError(f"database #{args.dbnum} ({db.type}) does not support tool mode")
        return args.dbnum, db
    if args.suffix is not None:
        try:
            wanted = normalize_dn(args.suffix, schema)
        except DNError:
            raise ToolError(f'invalid suffix "{args.suffix}"') from None
        best: tuple[int, DatabaseConfig] | None = None
        for number, db in enumerate(databases, 1):
            for suffix in db.suffixes:
                ndn = normalize_dn(suffix, schema)
                if ndn == wanted or is_descendant(wanted, ndn):
                    if best is None or len(ndn) > len(normalize_dn(best[1].suffix, schema)):
                        best = (number, db)
        if best is None or best[1].type != "mdb":
            raise ToolError(f'slap_init no backend for "{args.suffix}"')
        return best
    for number, db in enumerate(databases, 1):
        if db.type == "mdb":
            return number, db
    raise ToolError("no data database is configured")


def open_backend(config: ServerConfig, args: argparse.Namespace, *, sync: bool = True):
    """(schema, database number, Backend) for the selected database."""
    from pyldapd.server.app import StartupError, build_schema
    from pyldapd.server.directory import Backend

    try:
        schema = build_schema(config)
    except StartupError as exc:
        raise ToolError(str(exc)) from None
    number, dbconfig = select_database(config, schema, args)
    if not dbconfig.directory:
        raise ToolError(f"database #{number} ({dbconfig.suffix}) has no directory")
    return schema, number, Backend(dbconfig, schema, sync=sync)


def run_tool(name: str, body, args: argparse.Namespace) -> int:
    try:
        return body(args)
    except ToolError as exc:
        print(f"pyldapd {name}: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"pyldapd {name}: {exc}", file=sys.stderr)
        return 1


# --- pyldapd add (slapadd) ------------------------------------------------------------------------------------


class Progress:
    """slapadd's progress meter, on a terminal only."""

    def __init__(self, total_lines: int, stream: TextIO) -> None:
        self.total = max(total_lines, 1)
        self.stream = stream
        self.enabled = stream.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.entries = 0

    def update(self, line: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        done = min(line / self.total, 1.0)
        elapsed = now - self.start
        eta = elapsed / done - elapsed if done > 0 else 0.0
        bar = "#" * int(done * 20)
        rate = self.entries / elapsed if elapsed > 0 else 0.0
        self.stream.write(
            f"\r{bar:<20} {done * 100:6.2f}% eta {clock(eta)} elapsed {clock(elapsed)} spd {rate:8.0f} e/s "
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.update(self.total, force=True)
            self.stream.write("\n")
            self.stream.flush()


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"


class Loader:
    """Turns LDIF records into stored entries as slapadd does (see `cmd_add`)."""

    def __init__(self, backend, schema: Schema, number: int, args: argparse.Namespace, err: TextIO) -> None:
        self.backend = backend
        self.db = backend.db
        self.schema = schema
        self.number = number
        self.args = args
        self.err = err
        self.schema_check = not args.no_schema_check and "schema-check=no" not in args.options
        self.value_check = not args.quick or "value-check=yes" in args.options
        self.csn = CSNGenerator(args.sid)
        who = (backend.config.rootdn or "").encode()
        self.who = who
        self.max_csns = CSNSet()
        self.errors = 0
        self.added = 0
        self.waiting: dict[str, list[tuple[int, str, Entry]]] = {}  # missing parent ndn -> children
        self.dry_added: set[str] = set()
        self.suffix_ndn = backend.suffix_ndn

    def error(self, text: str) -> None:
        self.errors += 1
        print(f"pyldapd add: {text}", file=self.err)

    # -- building ----------------------------------------------------------------------------------------------

    def prepare(self, record) -> tuple[str, Entry] | None:
        """(ndn, entry) ready to store, or None after reporting an error."""
        from pyldapd.server.entries import check_entry, object_classes, structural_class
        from pyldapd.server.errors import LDAPError

        line = record.line
        if isinstance(record, LDIFChange) and record.changetype != "add":
            self.error(f'dn="{record.dn}" (line={line}): changetype {record.changetype} is not supported')
            return None
        try:
            ndn = normalize_dn(record.dn, self.schema)
        except DNError:
            self.error(f'could not parse entry (line={line}): invalid DN "{record.dn}"')
            return None
        if ndn != self.suffix_ndn and not is_descendant(ndn, self.suffix_ndn):
            self.error(
                f"line {line}: database #{self.number} ({self.backend.config.suffix}) not configured to hold "
                f'"{record.dn}"; no database configured for that naming context'
            )
            return None
        try:
            entry = self.build(record.dn, record.attributes)
            if self.schema_check:
                structural = check_entry(self.schema, entry)
            else:
                try:
                    structural = structural_class(object_classes(self.schema, entry))
                except LDAPError:
                    structural = None
        except LDAPError as exc:
            print(f"Entry ({record.dn}): {exc.message}", file=self.err)
            self.error(f'dn="{record.dn}" (line={line}): ({exc.code}) {exc.message}')
            return None
        self.stamp(entry, structural)
        if self.args.write_context:
            csn = entry.first("entrycsn")
            if csn is not None:
                try:
                    parse_csn(csn)
                    self.max_csns.update_csn(csn.decode())
                except ValueError:
                    pass
        return ndn, entry

    def build(self, dn: str, attributes) -> Entry:
        """The entry as given: types must be defined, values unique; syntax checked unless -q."""
        from pyldapd.protocol.ldap import ResultCode
        from pyldapd.server.entries import entry_from_attributes, resolve_type
        from pyldapd.server.errors import LDAPError

        if self.value_check:
            return entry_from_attributes(self.schema, dn, attributes)
        entry = Entry(dn)
        key_of = self.schema.attribute_key
        for description, values in attributes:
            resolve_type(self.schema, description)
            key = key_of(description)
            attribute = entry.attrs.get(key)
            if attribute is None:
                entry.attrs[key] = Attribute(description, list(values))
            else:
                attribute.values.extend(values)
            if len(entry.attrs[key].values) > 1 and len(set(entry.attrs[key].values)) != len(
                entry.attrs[key].values
            ):
                raise LDAPError(
                    ResultCode.attributeOrValueExists, f"{description}: value provided more than once"
                )
        return entry

    def stamp(self, entry: Entry, structural) -> None:
        """Add the operational attributes slapadd generates when the LDIF does not carry them."""
        attrs = entry.attrs
        if structural is not None and "structuralobjectclass" not in attrs:
            attrs["structuralobjectclass"] = Attribute("structuralObjectClass", [structural.name.encode()])
        csn_value = entry.first("entrycsn")
        if csn_value is None:
            csn_value = self.csn.next().encode()
        else:
            try:
                self.csn.observe(csn_value)
            except ValueError:
                pass
        now = csn_value[:14] + b"Z" if csn_value[:14].isdigit() else time.strftime("%Y%m%d%H%M%SZ").encode()
        if "entryuuid" not in attrs:
            attrs["entryuuid"] = Attribute("entryUUID", [str(uuid.uuid1()).encode()])
        if "creatorsname" not in attrs:
            attrs["creatorsname"] = Attribute("creatorsName", [self.who])
        if "createtimestamp" not in attrs:
            attrs["createtimestamp"] = Attribute("createTimestamp", [now])
        if "entrycsn" not in attrs:
            attrs["entrycsn"] = Attribute("entryCSN", [csn_value])
        if "modifiersname" not in attrs:
            attrs["modifiersname"] = Attribute("modifiersName", [self.who])
        if "modifytimestamp" not in attrs:
            attrs["modifytimestamp"] = Attribute("modifyTimestamp", [now])

    # -- storing -----------------------------------------------------------------------------------------------

    def exists(self, txn, ndn: str) -> bool:
        return ndn in self.dry_added or (txn is not None and txn.exists(ndn))

    def store(self, txn, line: int, ndn: str, entry: Entry) -> None:
        """Add one entry (txn None: dry run); a child whose parent is not loaded yet waits for it."""
        if self.exists(txn, ndn):
            self.error(
                f'could not add entry dn="{entry.dn}" (line={line}): txn_aborted! MDB_KEYEXIST: '
                "Key/data pair already exists (-30799)"
            )
            return
        if ndn != self.suffix_ndn:
            pndn = parent_dn(ndn)
            if not self.exists(txn, pndn):
                self.waiting.setdefault(pndn, []).append((line, ndn, entry))
                return
        stack = [(line, ndn, entry)]
        while stack:
            line, ndn, entry = stack.pop()
            if txn is None:
                self.dry_added.add(ndn)
            else:
                txn.add(entry, bulk=True)
            self.added += 1
            children = self.waiting.pop(ndn, None)
            if children:
                stack.extend(reversed(children))

    def write_context_csn(self) -> None:
        """-w: the suffix entry's contextCSN becomes the greatest entryCSN per server ID (merged with its own)."""
        from pyldapd.replication.state import CONTEXT_CSN_KEY

        if not self.max_csns:
            return
        with self.db.write() as txn:
            suffix = txn.get(self.suffix_ndn)
            if suffix is None:
                print("pyldapd add: -w: the suffix entry is not in the database; contextCSN not written",
                      file=self.err)  # fmt: skip
                return
            csns = CSNSet.from_values(suffix.get("contextcsn"))
            stored = txn.get_raw_metadata(CONTEXT_CSN_KEY)
            if stored:
                csns.merge(CSNSet.from_values(stored.split(b";")))
            csns.merge(self.max_csns)
            values = [v.encode() for v in csns.to_values()]
            entry = suffix.copy()
            entry.put("contextcsn", "contextCSN", values)
            txn.modify(self.suffix_ndn, entry)
            txn.put_raw_metadata(CONTEXT_CSN_KEY, b";".join(values))


def read_input(path: str | None) -> bytes:
    if path is None or path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ToolError(f"{path}: {exc.strerror}") from None


def records(data: bytes, skip_to: int) -> Iterator:
    for record in parse_ldif(data):
        if record.line >= skip_to:
            yield record


def cmd_add(args: argparse.Namespace) -> int:
    """slapadd: parents may come after their children within one load (they wait); entries whose parent never
    comes are reported at the end ("Error, entries missing!") and not stored (slapadd stores them as orphans)."""
    err = sys.stderr
    config = load_config(args)
    data = read_input(args.ldif)
    schema, number, backend = open_backend(config, args, sync=not args.quick)
    loader = Loader(backend, schema, number, args, err)
    progress = Progress(data.count(b"\n") + 1, err)
    dry = args.dry_run
    stream = records(data, args.jump or 0)
    failed = False
    try:
        done = False
        while not done and not failed:
            batch = []
            try:
                for record in stream:
                    batch.append(record)
                    if len(batch) >= BATCH:
                        break
                else:
                    done = True
            except LDIFError as exc:
                loader.error(f"could not parse entry ({exc})")
                done = True
                failed = True
            txn_cm = None if dry else backend.db.write()
            txn = txn_cm.__enter__() if txn_cm is not None else None
            try:
                for record in batch:
                    prepared = loader.prepare(record)
                    if prepared is not None:
                        loader.store(txn, record.line, *prepared)
                    if loader.errors and not args.continue_:
                        failed = True
                        break
                    progress.entries = loader.added
                    progress.update(record.line)
            except BaseException:
                if txn_cm is not None:
                    txn_cm.__exit__(*sys.exc_info())
                raise
            if txn_cm is not None:
                txn_cm.__exit__(None, None, None)
        progress.finish()
        if loader.waiting:
            failed = True  # even with -c, as slapadd
            print("Error, entries missing!", file=err)
            for pndn, children in sorted(loader.waiting.items(), key=lambda item: item[1][0][0]):
                print(f"  entry (line={children[0][0]}): {pndn}", file=err)
                for line, _ndn, entry in children:
                    print(f'  not added: dn="{entry.dn}" (line={line})', file=err)
        if not dry and args.write_context and (not failed or args.continue_):
            loader.write_context_csn()
        if not dry and args.quick:
            backend.db.sync()
    finally:
        backend.db.close()
    if args.verbose:
        print(f"added {loader.added} entries", file=err)
    # with -c, slapadd ignores bad entries (exit 0) but not missing parents or unreadable LDIF
    return 1 if failed or (loader.errors and not args.continue_) else 0


# --- pyldapd cat (slapcat) ------------------------------------------------------------------------------------


def parse_wrap(options: list[str]) -> int:
    wrap = DEFAULT_WRAP
    for option in options:
        name, _, value = option.partition("=")
        if name.strip().lower() != "ldif_wrap":
            continue
        value = value.strip().lower()
        if value == "no":
            wrap = 0
        else:
            try:
                number = int(value)
            except ValueError:
                raise ToolError(f"-o ldif_wrap={value}: a number or 'no' is required") from None
            if number == 0:
                wrap = DEFAULT_WRAP
            elif number < 2:
                raise ToolError(f"-o ldif_wrap={value}: the minimum is 2")
            else:
                wrap = number
    return wrap


SCOPES = {
    "base": 0,
    "one": 1,
    "onelevel": 1,
    "sub": 2,
    "subtree": 2,
    "children": 3,
    "subord": 3,
    "subordinate": 3,
}


def parse_ldap_url(url: str) -> tuple[str, int | None, str]:
    """ldap:///base??scope?filter -> (base, scope or None, filter text or "")."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme.lower() not in ("ldap", "ldaps", "ldapi") or parsed.netloc:
        raise ToolError(f'-H "{url}": only a local ldap:///base??scope?filter URL is accepted')
    parts = (parsed.query or "").split("?")
    base = urllib.parse.unquote(parsed.path.lstrip("/"))
    scope_text = urllib.parse.unquote(parts[1]).lower() if len(parts) > 1 else ""
    filter_text = urllib.parse.unquote(parts[2]) if len(parts) > 2 else ""
    if scope_text and scope_text not in SCOPES:
        raise ToolError(f'-H "{url}": unknown scope "{scope_text}"')
    return base, SCOPES[scope_text] if scope_text else None, filter_text


def cmd_cat(args: argparse.Namespace) -> int:
    """slapcat: every entry of the database, parents before children, user and operational attributes as
    stored; the suffix entry carries the database's current contextCSN vector."""
    from pyldapd.backends.base import Scope
    from pyldapd.model.filter import FilterError, FilterEvaluator, parse_filter
    from pyldapd.replication.state import CONTEXT_CSN_KEY, ContextState

    config = load_config(args)
    wrap = parse_wrap(args.options)
    url_base, url_scope, url_filter = parse_ldap_url(args.url) if args.url else ("", None, "")
    subtree = args.subtree or url_base
    if subtree and args.suffix is None and args.dbnum is None:
        args.suffix = subtree
    schema, _number, backend = open_backend(config, args)
    try:
        base_ndn = backend.suffix_ndn
        if subtree:
            try:
                base_ndn = normalize_dn(subtree, schema)
            except DNError:
                raise ToolError(f'invalid DN "{subtree}"') from None
        scope = Scope(url_scope) if url_scope is not None else Scope.SUB
        matchers = []
        evaluator = FilterEvaluator(schema)
        for text in (args.filter, url_filter):
            if text:
                try:
                    matchers.append(evaluator.compile(parse_filter(text)))
                except FilterError as exc:
                    raise ToolError(f'bad filter "{text}": {exc}') from None
        out = open(args.ldif, "w", encoding="utf-8", errors="surrogateescape") if args.ldif else sys.stdout
        try:
            with backend.db.read() as txn:
                suffix = txn.get(backend.suffix_ndn)
                context = ContextState()
                context.load(
                    txn.get_raw_metadata(CONTEXT_CSN_KEY), suffix.get("contextcsn") if suffix else []
                )
                context_values = context.values()
                for entry in txn.search(base_ndn, scope):
                    if matchers and not all(match(entry) for match in matchers):
                        continue
                    attributes = [(a.name, a.values) for a in entry.attrs.values() if a.values]
                    if suffix is not None and entry.id == suffix.id and context_values:
                        attributes = [(n, v) for n, v in attributes if n.lower() != "contextcsn"]
                        attributes.append(("contextCSN", context_values))
                    out.write(format_entry(entry.dn, attributes, wrap))
        finally:
            if out is not sys.stdout:
                out.close()
            else:
                out.flush()
    finally:
        backend.db.close()
    return 0


# --- pyldapd index (slapindex) --------------------------------------------------------------------------------


def cmd_index(args: argparse.Namespace) -> int:
    """slapindex: rebuild the indexes from the entries. Named attributes must be defined and indexed; every
    index is rebuilt in any case (the result is the same, slapindex would only touch those)."""
    config = load_config(args)
    schema, _number, backend = open_backend(config, args, sync=True)
    try:
        indexed = {schema.attribute_key(name) for name in backend.config.indexes} | {"objectclass"}
        for name in args.attributes:
            at = schema.attribute_type(name)
            if at is None:
                raise ToolError(f"attribute type {name} undefined")
            if at.key not in indexed:
                raise ToolError(f"no index configured for {name}")
        started = time.monotonic()
        count = backend.db.reindex()
        if args.verbose and not args.quiet:
            print(f"indexed {count} entries in {time.monotonic() - started:.1f}s", file=sys.stderr)
    finally:
        backend.db.close()
    return 0


# --- pyldapd test (slaptest) ----------------------------------------------------------------------------------


def cmd_test(args: argparse.Namespace) -> int:
    """slaptest: exit 0 when the config is sound, 1 otherwise. -Q drops the details and the success message
    (slaptest still prints "bad configuration file!"); -u (dry run) opens no database and converts nothing."""
    from pyldapd.server.app import StartupError, build_schema

    quiet = args.quiet
    if args.config_file and args.config_dir:
        try:
            from pyldapd.config import slapdd  # type: ignore[attr-defined]

            convert = getattr(slapdd, "convert_slapd_conf", None)
        except ImportError:
            convert = None
        if convert is None:
            print("pyldapd test: converting -f slapd.conf into -F slapd.d is not supported by this build",
                  file=sys.stderr)  # fmt: skip
            return 1
        if not args.dry:
            try:
                convert(args.config_file, args.config_dir)
            except (ConfigError, OSError, ValueError) as exc:
                if not quiet:
                    print(f"pyldapd test: {exc}", file=sys.stderr)
                print("pyldapd test: bad configuration file!", file=sys.stderr)
                return 1
    try:
        config = load_config(args)
        build_schema(config)
        problems = []
        for number, db in enumerate(numbered_databases(config), 1):
            if args.dbnum is not None and args.dbnum != number:
                continue
            if db.type == "mdb" and not db.directory:
                problems.append(f"{db.source}: database #{number} ({db.suffix}): no directory configured")
            elif db.type == "mdb" and not os.path.isdir(db.directory):
                problems.append(
                    f"{db.source}: directory {db.directory}: invalid path: No such file or directory"
                )
            elif (
                db.type == "mdb"
                and not args.dry
                and not os.path.exists(os.path.join(db.directory, "data.mdb"))
            ):
                problems.append(  # slaptest opens the databases read-only: a never-loaded one fails
                    f'database "{db.suffix}" cannot be opened: No such file or directory (2)\n'
                    "startup failed (test would succeed using the -u switch)"
                )
        if problems:  # slapd checks `directory` while reading the config, -u or not
            raise ToolError("\n".join(problems))
    except (ConfigError, StartupError, ToolError) as exc:
        if not quiet:
            print(f"{exc}" if isinstance(exc, ConfigError) else f"pyldapd test: {exc}", file=sys.stderr)
        print("pyldapd test: bad configuration file!", file=sys.stderr)
        return 1
    if not quiet:
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print("config file testing succeeded", file=sys.stderr)
    return 0


# --- registration ---------------------------------------------------------------------------------------------


def register(commands) -> dict:
    """Add the tool subcommands to the `pyldapd` parser; returns {command: handler}."""
    add = commands.add_parser("add", help="load LDIF into a stopped server's database (slapadd)")
    add_common_flags(add)
    add.add_argument("-l", dest="ldif", help="LDIF input file (default: standard input)")
    add.add_argument(
        "-q", dest="quick", action="store_true", help="quick mode: fewer checks, no sync per batch"
    )
    add.add_argument("-s", dest="no_schema_check", action="store_true", help="no schema checking")
    add.add_argument("-S", dest="sid", type=int, default=0, help="server ID for generated entryCSNs")
    add.add_argument("-u", dest="dry_run", action="store_true", help="dry run: write nothing")
    add.add_argument("-w", dest="write_context", action="store_true", help="write contextCSN")
    add.add_argument("-j", dest="jump", type=int, default=0, help="skip to this LDIF line")

    cat = commands.add_parser("cat", help="dump a database as LDIF (slapcat)")
    add_common_flags(cat)
    cat.add_argument("-l", dest="ldif", help="output file (default: standard output)")
    cat.add_argument("-a", dest="filter", help="only entries matching this filter")
    cat.add_argument("-H", dest="url", help="ldap:///base??scope?filter")
    cat.add_argument("-s", dest="subtree", help="only this subtree")

    index = commands.add_parser("index", help="rebuild a database's indexes (slapindex)")
    add_common_flags(index)
    index.add_argument("-q", dest="quiet", action="store_true", help="quick mode")
    index.add_argument("-t", dest="truncate", action="store_true", help="truncate mode (accepted)")
    index.add_argument("attributes", nargs="*", help="only these attributes' indexes")

    test = commands.add_parser("test", help="check a configuration (slaptest)")
    add_common_flags(test, database=False)
    test.add_argument("-n", dest="dbnum", type=int, help="only test this database")
    test.add_argument("-u", dest="dry", action="store_true", help="dry run: databases need not exist")
    test.add_argument("-Q", dest="quiet", action="count", default=0, help="quiet (-QQ: quieter)")

    return {
        "add": lambda a: run_tool("add", cmd_add, a),
        "cat": lambda a: run_tool("cat", cmd_cat, a),
        "index": lambda a: run_tool("index", cmd_index, a),
        "test": lambda a: run_tool("test", cmd_test, a),
    }
