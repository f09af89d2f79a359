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
import base64
import mmap
import os
import re
import sys
import time
import urllib.parse

from pyldapd.backends.base import StorageError
from pyldapd.config.model import DatabaseConfig, ServerConfig, parse_log_level
from pyldapd.config.slapdconf import ConfigError, load_slapd_conf
from pyldapd.model.dn import DNError, is_descendant, normalize_dn
from pyldapd.model.ldif import DEFAULT_WRAP, format_entry
from pyldapd.model.schema import Schema


class ToolError(Exception):
    """A fatal error: printed as `pyldapd <tool>: message`, exit code 1."""


# --- shared: config, database selection ---------------------------------------------------------------------


def add_common_flags(parser: argparse.ArgumentParser, *, database: bool = True) -> None:
    parser.add_argument("-f", dest="config_file", help="slapd.conf file")
    parser.add_argument("-F", dest="config_dir", help="slapd.d configuration directory")
    parser.add_argument("-d", dest="debug", action="append", help="debug level: a trace on standard error")
    parser.add_argument("-o", dest="options", action="append", default=[], help="name=value (slapd's -o)")
    parser.add_argument("-v", dest="verbose", action="store_true", help="verbose")
    if database:
        parser.add_argument("-b", dest="suffix", help="the database holding this suffix")
        parser.add_argument("-n", dest="dbnum", type=int, help="the n-th database (slapd's numbering)")
        parser.add_argument(
            "-g",
            dest="no_glue",
            action="store_true",
            help="no subordinate gluing: only the selected database, not its glued subordinates",
        )
        parser.add_argument("-c", dest="continue_", action="store_true", help="continue after errors")


# slapd's tools' -o names (slapcommon.c) and the tools that use each; others say it is meaningless for them
OPTION_TOOLS = {
    "schema-check": ("add", "modify"),
    "value-check": ("add", "modify"),
    "ldif_wrap": ("cat",),
}
OPTION_ALIASES = {"ldif-wrap": "ldif_wrap"}  # slapd's code takes both spellings
# known to slapd's tools, refused here: what they set does not exist in pyldapd's tools
REFUSED_OPTIONS = {
    **dict.fromkeys(
        (
            "sockurl",
            "domain",
            "peername",
            "sockname",
            "ssf",
            "transport_ssf",
            "tls_ssf",
            "sasl_ssf",
            "authzdn",
        ),
        "only slapacl and slapauth use it, and pyldapd has neither",
    ),
    **dict.fromkeys(
        ("syslog", "syslog-level", "syslog-user"),
        "pyldapd's tools log to standard error only, never to syslog",
    ),
}


def tool_options(tool: str, args: argparse.Namespace) -> dict[str, str]:
    """The -o options as slapd's tools read them: name=value, the name case-insensitive; unknown names are
    refused (slapd prints its usage and exits 1); a known one this tool has no use for is warned about and
    skipped, as slapd does ("value-check meaningless for tool."). Returns {name: value}, the later one winning."""
    chosen: dict[str, str] = {}
    for option in args.options:
        name, equals, value = option.partition("=")
        key = name.strip().lower()
        key = OPTION_ALIASES.get(key, key)
        if key in REFUSED_OPTIONS:
            raise ToolError(f"-o {option}: {REFUSED_OPTIONS[key]}")
        if key not in OPTION_TOOLS:
            known = ", ".join(name for name, tools in OPTION_TOOLS.items() if tool in tools)
            raise ToolError(
                f"-o {option}: unknown option" + (f" (pyldapd {tool} takes {known})" if known else "")
            )
        if tool not in OPTION_TOOLS[key]:
            print(f"pyldapd {tool}: {key} meaningless for tool.", file=sys.stderr)
            continue
        if not equals:
            raise ToolError(f"-o {option}: a value is required ({key}=...)")
        if key in ("schema-check", "value-check") and value.strip().lower() not in ("yes", "no"):
            raise ToolError(f'-o {option}: unable to parse {key}="{value}" (yes or no)')
        chosen[key] = value.strip().lower()
    return chosen


def debug_level(args: argparse.Namespace) -> int:
    """-d as slapd's tools take it (names or numbers, repeatable); an unknown level is refused."""
    if not args.debug:
        return 0
    try:
        return parse_log_level(args.debug)
    except ValueError as exc:
        raise ToolError(f"-d: {exc}") from None


def check_modes(tool: str, args: argparse.Namespace, *, value_default: bool) -> tuple[bool, bool]:
    """(schema check, value check) for slapadd and slapmodify from -s, -q and -o schema-check / value-check: a
    value check in quick mode is dropped with slapd's warning; -s with schema-check=yes is a contradiction."""
    chosen = tool_options(tool, args)
    schema_check = not args.no_schema_check
    if "schema-check" in chosen:
        if args.no_schema_check and chosen["schema-check"] == "yes":
            raise ToolError("-s and -o schema-check=yes contradict each other")
        schema_check = chosen["schema-check"] == "yes"
    value_check = chosen["value-check"] == "yes" if "value-check" in chosen else value_default
    if value_check and args.quick:
        if "value-check" in chosen:
            print(f"pyldapd {tool}: value-check incompatible with quick mode; disabled.", file=sys.stderr)
        value_check = False
    return schema_check, value_check


def load_config(args: argparse.Namespace) -> ServerConfig:
    if args.config_dir and not args.config_file:
        try:
            from pyldapd.config import slapdd  # type: ignore[attr-defined]
        except ImportError:
            raise ToolError(
                "-F: slapd.d configuration is not supported by this build; use -f slapd.conf"
            ) from None
        try:
            return slapdd.load_slapd_d(args.config_dir)
        except (ValueError, OSError) as exc:  # a refused slapd.d value, as slapd reports it (no traceback)
            raise ToolError(str(exc)) from None
    if not args.config_file:
        raise ToolError("a configuration is required: -f slapd.conf or -F slapd.d")
    return load_slapd_conf(args.config_file)


_TREE_NUMBER = re.compile(r"^olcDatabase=\{(-?\d+)\}", re.IGNORECASE)


def numbered_databases(config: ServerConfig) -> list[tuple[int, DatabaseConfig]]:
    """slapd's numbers (-n): 0 is the config database; from a slapd.conf, the configured databases in order from
    1; from a slapd.d, the {N} of each olcDatabase entry (a tree `pyldapd init` writes has {1}monitor, {2}mdb)."""
    out: list[tuple[int, DatabaseConfig]] = []
    for position, db in enumerate((d for d in config.databases if d.type not in ("config", "frontend")), 1):
        match = _TREE_NUMBER.match(db.source or "")
        out.append((int(match.group(1)) if match else position, db))
    return out


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
        last = max((n for n, _ in databases), default=0)
        db = dict(databases).get(args.dbnum)
        if db is None and 0 < args.dbnum <= last:
            # a slapd.d's {1}monitor, as slapcat says of it
            raise ToolError("database doesn't support necessary operations.")
        if db is None:
            raise ToolError(
                "Database number selected via -n is out of range\n"
                f"Must be in the range 0 to {last} (the number of configured databases)"
            )
        if db.type != "mdb":  # the monitor database, as slapcat says of it
            raise ToolError("database doesn't support necessary operations.")
        return args.dbnum, db
    if args.suffix is not None:
        try:
            wanted = normalize_dn(args.suffix, schema)
        except DNError:
            raise ToolError(f'invalid suffix "{args.suffix}"') from None
        best: tuple[int, DatabaseConfig] | None = None
        for number, db in databases:
            for suffix in db.suffixes:
                ndn = normalize_dn(suffix, schema)
                if ndn == wanted or is_descendant(wanted, ndn):
                    if best is None or len(ndn) > len(normalize_dn(best[1].suffix, schema)):
                        best = (number, db)
        if best is None or best[1].type != "mdb":
            raise ToolError(f'slap_init no backend for "{args.suffix}"')
        return best
    for number, db in databases:
        # slapd's tools skip glued subordinates: their superior takes the whole tree (server/glue.py)
        if db.type == "mdb" and not db.subordinate:
            return number, db
    raise ToolError("no data database is configured")


def glued_tree(config: ServerConfig, number: int, dbconfig: DatabaseConfig,
               args: argparse.Namespace) -> list[tuple[int, DatabaseConfig]]:  # fmt: skip
    """The selected database, and when it is a glue superior (and -g is not given) its subordinates in config
    order: slapadd routes each entry to the one holding it, slapcat lists them after the superior."""
    from pyldapd.server.glue import superior_of

    if getattr(args, "no_glue", False):
        return [(number, dbconfig)]
    databases = [(n, db) for n, db in numbered_databases(config) if db.type == "mdb"]
    configs = [db for _, db in databases]
    out = [(number, dbconfig)]
    for position, (sub_number, db) in enumerate(databases):
        if db.subordinate:
            index = superior_of(configs, position)
            if index is not None and configs[index] is dbconfig:
                out.append((sub_number, db))
    return out


def split_ldif(
    data: bytes, schema: Schema, tree: list[tuple[int, DatabaseConfig]]
) -> list[tuple[int, bytes]]:
    """The LDIF's records cut into runs that go to one database of a glued tree each, in input order: (index in
    `tree`, LDIF). Each record goes to the database holding its DN (the most specific suffix); loading the runs
    in order is slapadd's order, so an error stops the load where slapd's stops. Blank lines stand in for the
    records before a run, so the line numbers of messages stay those of the input."""
    from pyldapd.model.ldif import LDIFError, parse_ldif

    suffixes = [normalize_dn(db.suffix, schema) for _, db in tree]
    runs: list[tuple[int, list[bytes]]] = []

    def record_dn(block: list[bytes]) -> str:
        first = block[0]
        if first[:3].lower() == b"dn:" and (len(block) == 1 or not block[1].startswith(b" ")):
            value = first[3:].rstrip(b"\r")  # one unfolded dn line: no need to parse the record
            raw = base64.b64decode(value[1:].strip()) if value.startswith(b":") else value.strip()
            return raw.decode("utf-8")
        records = list(parse_ldif(b"\n".join(block), allow_urls=True))
        return records[0].dn if records else ""

    def place(block: list[bytes], first_line: int) -> None:
        target = 0
        try:
            dn = record_dn(block)
            ndn = normalize_dn(dn, schema) if dn else ""
        except (LDIFError, DNError, ValueError, IndexError, AttributeError):
            ndn = ""  # left to the superior's load, which reports it at its line
        best = -1
        for index, suffix in enumerate(suffixes):
            if ndn and (ndn == suffix or is_descendant(ndn, suffix)) and len(suffix) > best:
                target, best = index, len(suffix)
        if not runs or runs[-1][0] != target:
            runs.append((target, [b"\n" * (first_line - 1)]))
        runs[-1][1].append(b"\n".join(block) + b"\n\n")

    block: list[bytes] = []
    start = 1
    first_content = _first_content(data)
    for number, line in enumerate(bytes(data).split(b"\n"), 1):
        if line.rstrip(b"\r") == b"":
            if block:
                place(block, start)
                block = []
            continue
        if not block:
            if line.startswith(b"#") or (number == first_content and line.lower().startswith(b"version:")):
                continue  # comments between records and the version line go nowhere
            start = number
        block.append(line)
    if block:
        place(block, start)
    return [(target, b"".join(parts)) for target, parts in runs]


def _first_content(data: bytes) -> int:
    """The line number of the first line that is neither blank nor a comment."""
    for number, line in enumerate(bytes(data[:4096]).split(b"\n"), 1):
        if line.strip() and not line.startswith(b"#"):
            return number
    return 0


def tool_database(config: ServerConfig, args: argparse.Namespace) -> tuple[Schema, int, DatabaseConfig]:
    """(schema, database number, its config) for the database -b / -n select."""
    from pyldapd.server.app import StartupError, build_schema

    try:
        schema = build_schema(config)
    except StartupError as exc:
        raise ToolError(str(exc)) from None
    number, dbconfig = select_database(config, schema, args)
    if not dbconfig.directory:
        raise ToolError(f"database #{number} ({dbconfig.suffix}) has no directory")
    return schema, number, dbconfig


def run_tool(name: str, body, args: argparse.Namespace) -> int:
    try:
        return body(args)
    except ToolError as exc:
        print(f"pyldapd {name}: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, StorageError) as exc:
        print(f"pyldapd {name}: {exc}", file=sys.stderr)
        return 1


# --- pyldapd add (slapadd) ------------------------------------------------------------------------------------


def read_input(path: str | None) -> bytes | mmap.mmap:
    """The LDIF: standard input read whole, a file mapped (read-only; the load's workers share its pages)."""
    if path is None or path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            try:
                return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):  # empty, or not mappable (a pipe given as a path)
                return handle.read()
    except OSError as exc:
        raise ToolError(f"{path}: {exc.strerror}") from None


def cmd_add(args: argparse.Namespace) -> int:
    """slapadd: parents may come after their children within one load (they wait); entries whose parent never
    comes are reported at the end ("Error, entries missing!") and not stored (slapadd stores them as orphans).
    The work is spread over `tool-threads` processes (`pyldapd.cli.bulkload`)."""
    checks = check_modes("add", args, value_default=not args.quick)
    trace = debug_level(args) != 0
    if names_config_database(args):
        return add_config(args)
    config = load_config(args)
    data = read_input(args.ldif)
    schema, number, dbconfig = tool_database(config, args)
    tree = glued_tree(config, number, dbconfig, args)
    if len(tree) > 1:  # a glue superior: each entry goes to the database holding it, as slapd's glue does
        status = 0
        try:
            for target, part_data in split_ldif(data, schema, tree):
                part_number, part = tree[target]
                status = max(
                    status, add_to_database(args, config, schema, part_number, part, part_data, checks, trace)
                )
                if status and not args.continue_:
                    break
        finally:
            if isinstance(data, mmap.mmap):
                data.close()
        return status
    return add_to_database(args, config, schema, number, dbconfig, data, checks, trace)


def add_to_database(args: argparse.Namespace, config: ServerConfig, schema: Schema, number: int,
                    dbconfig: DatabaseConfig, data: bytes | mmap.mmap, checks: tuple[bool, bool],
                    trace: bool) -> int:  # fmt: skip
    """slapadd into one database; the exit status. `checks`: (schema check, value check)."""
    from pyldapd.backends.mdb import EntryCodec
    from pyldapd.cli.bulkload import LoadError, LoadOptions, default_workers, load_ldif
    from pyldapd.server.directory import Backend, stored_indexes

    err = sys.stderr
    if not dbconfig.directory:
        raise ToolError(f"database #{number} ({dbconfig.suffix}) has no directory")
    codec = EntryCodec(schema)
    codec.index_config = codec.resolve_indexes(stored_indexes(dbconfig))
    options = LoadOptions(
        number=number,
        suffix=dbconfig.suffix,
        rootdn=dbconfig.rootdn or "",
        schema_check=checks[0],
        value_check=checks[1],
        write_context=args.write_context,
        continue_=args.continue_,
        dry_run=args.dry_run,
        skip_to=args.jump or 0,
        server_id=args.sid,
        workers=default_workers(config.tool_threads),
        verbose=args.verbose,
        trace=trace,
    )
    try:
        writer, db = load_ldif(
            data, schema, codec, options, lambda: Backend(dbconfig, schema, sync=not args.quick).db, err
        )
    except LoadError as exc:
        raise ToolError(str(exc)) from None
    failed = writer.failed
    try:
        if writer.waiting:
            failed = True  # even with -c, as slapadd
            writer.report_missing()
        if not args.dry_run and args.write_context and (not failed or args.continue_):
            writer.write_context_csn()
        if not args.dry_run and args.quick:
            db.sync()
    finally:
        db.close()
        if isinstance(data, mmap.mmap):
            data.close()
    if args.verbose:
        print(f"added {writer.added} entries", file=err)
    # with -c, slapadd skips bad entries (exit 0) but not entries the database refuses, missing parents or
    # unreadable LDIF
    return 1 if failed or writer.put_failed or (writer.errors and not args.continue_) else 0


def names_config_database(args: argparse.Namespace) -> bool:
    """-n0 or -b cn=config: the config database (slapd's database 0)."""
    if args.dbnum == 0 and args.suffix is not None:
        raise ToolError("-b and -n are mutually exclusive")
    if args.dbnum == 0:
        return True
    return args.suffix is not None and args.suffix.replace(" ", "").lower() == "cn=config"


def add_config(args: argparse.Namespace) -> int:
    """slapadd -n0 -F DIR: cn=config entries from LDIF into a slapd.d (made when DIR is empty), as slapd's config
    backend takes them in tool mode. With -f slapd.conf there is no slapd.d to add to (slapd refuses it too)."""
    from pyldapd.config.slapdd import ConfigImportError, import_config_ldif

    if not args.config_dir or args.config_file:
        raise ToolError("-n0: the config database needs -F slapd.d (a slapd.conf is not an LDAP database)")
    data = read_input(args.ldif)
    text = bytes(data).decode("utf-8", "surrogateescape")
    if isinstance(data, mmap.mmap):
        data.close()
    try:
        written = import_config_ldif(args.config_dir, text, dry_run=args.dry_run)
    except ConfigImportError as exc:
        raise ToolError(str(exc)) from None
    if args.verbose:
        for dn in written:
            print(f'added: "{dn}"', file=sys.stderr)
    return 0


# --- pyldapd cat (slapcat) ------------------------------------------------------------------------------------


def parse_wrap(args: argparse.Namespace) -> int:
    """-o ldif_wrap=N|no: the line width of slapcat's LDIF (at least 2; 0 is the default width)."""
    value = tool_options("cat", args).get("ldif_wrap")
    if value is None:
        return DEFAULT_WRAP
    if value == "no":
        return 0
    try:
        number = int(value)
    except ValueError:
        raise ToolError(f"-o ldif_wrap={value}: a number or 'no' is required") from None
    if number == 0:
        return DEFAULT_WRAP
    if number < 2:
        raise ToolError(f"-o ldif_wrap={value}: the minimum is 2")
    return number


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
    stored; the suffix entry carries the database's current contextCSN vector. A glue superior is listed
    with its subordinates (server/glue.py)."""
    from pyldapd.server.directory import Backend

    wrap = parse_wrap(args)
    trace = debug_level(args) != 0
    if names_config_database(args):
        return cat_config(args, wrap)
    config = load_config(args)
    url_base, url_scope, url_filter = parse_ldap_url(args.url) if args.url else ("", None, "")
    subtree = args.subtree or url_base
    if subtree and args.suffix is None and args.dbnum is None:
        args.suffix = subtree
    schema, number, dbconfig = tool_database(config, args)
    tree = glued_tree(config, number, dbconfig, args)
    out = open(args.ldif, "w", encoding="utf-8", errors="surrogateescape") if args.ldif else sys.stdout
    try:
        # a glue superior, then its subordinates in config order (slapd's glue_tool_entry_next)
        for _part_number, part in tree:
            backend = Backend(part, schema)
            try:
                cat_database(args, schema, backend, subtree, url_scope, url_filter, wrap, out, trace)
            finally:
                backend.db.close()
    finally:
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
    return 0


def cat_database(args: argparse.Namespace, schema: Schema, backend, subtree: str, url_scope: int | None,
                 url_filter: str, wrap: int, out, trace: bool = False) -> None:  # fmt: skip
    """One database's entries for slapcat (all, or those under -s / -H's base)."""
    from pyldapd.backends.base import Scope
    from pyldapd.model.filter import FilterError, FilterEvaluator, parse_filter
    from pyldapd.replication.state import CONTEXT_CSN_KEY, ContextState
    from pyldapd.server.glue import within

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
    if not within(base_ndn, backend.suffix_ndn):
        if not within(backend.suffix_ndn, base_ndn):
            return  # a glued subordinate outside the subtree asked for
        base_ndn = backend.suffix_ndn  # a glued subordinate inside it: all of it
    with backend.db.read() as txn:
        suffix = txn.get(backend.suffix_ndn)
        context = ContextState()
        context.load(txn.get_raw_metadata(CONTEXT_CSN_KEY), suffix.get("contextcsn") if suffix else [])
        context_values = context.values() if backend.keeps_context else []
        for entry in txn.search(base_ndn, scope):
            if trace:
                print(f'=> cat( {entry.id}, "{entry.dn}" )', file=sys.stderr)
            if matchers and not all(match(entry) for match in matchers):
                continue
            attributes = [(a.name, a.values) for a in entry.attrs.values() if a.values]
            if suffix is not None and entry.id == suffix.id and context_values:
                attributes = [(n, v) for n, v in attributes if n.lower() != "contextcsn"]
                attributes.append(("contextCSN", context_values))
            out.write(format_entry(entry.dn, attributes, wrap))


def cat_config(args: argparse.Namespace, wrap: int) -> int:
    """slapcat -n0 -F DIR: the cn=config entries of a slapd.d, parents first, as stored."""
    from pyldapd.config.cnconfig import config_schema, read_slapd_d
    from pyldapd.model.filter import FilterError, FilterEvaluator, parse_filter

    if not args.config_dir or args.config_file:
        raise ToolError("-n0: the config database needs -F slapd.d")
    try:
        found = read_slapd_d(args.config_dir)
    except (OSError, ValueError) as exc:
        raise ToolError(str(exc)) from None
    schema = config_schema()
    matchers = []
    for text in (args.filter,):
        if text:
            try:
                matchers.append(FilterEvaluator(schema).compile(parse_filter(text)))
            except FilterError as exc:
                raise ToolError(f'bad filter "{text}": {exc}') from None
    base = normalize_dn(args.subtree, schema) if args.subtree else ""
    out = open(args.ldif, "w", encoding="utf-8") if args.ldif else sys.stdout
    try:
        for entry in found:
            ndn = normalize_dn(entry.dn, schema)
            if base and ndn != base and not is_descendant(ndn, base):
                continue
            if all(match(entry) for match in matchers):
                out.write(format_entry(entry.dn, [(a.name, a.values) for a in entry.attrs.values()], wrap))
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


# --- pyldapd index (slapindex) --------------------------------------------------------------------------------


def cmd_index(args: argparse.Namespace) -> int:
    """slapindex: rebuild the indexes from the entries. Named attributes must be defined and indexed; every
    index is rebuilt in any case (the result is the same, slapindex would only touch those). A glue superior is
    reindexed with its subordinates (slapd's glue tool functions), each with its own index configuration."""
    from pyldapd.server.directory import Backend

    tool_options("index", args)
    trace = debug_level(args) != 0
    config = load_config(args)
    schema, number, dbconfig = tool_database(config, args)
    indexed = {schema.attribute_key(name) for name in dbconfig.indexes} | {"objectclass"}
    for name in args.attributes:
        at = schema.attribute_type(name)
        if at is None:
            raise ToolError(f"attribute type {name} undefined")
        if at.key not in indexed:
            raise ToolError(f"no index configured for {name}")
    for _part_number, part in glued_tree(config, number, dbconfig, args):
        backend = Backend(part, schema, sync=not args.quick)
        try:
            if trace:
                print(f'=> index( "{part.suffix}" )', file=sys.stderr)
            started = time.monotonic()
            count = backend.db.reindex()
            if args.quick:
                backend.db.sync()
            if args.verbose:
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
    tool_options("test", args)
    trace = debug_level(args) != 0 and not quiet  # -Q silences the debug output too, as slaptest's
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
        for number, db in numbered_databases(config):
            if args.dbnum is not None and args.dbnum != number:
                continue
            if trace:
                print(f'=> test( {number}, "{db.suffix}" ) {db.type}', file=sys.stderr)
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
    index.add_argument("-q", dest="quick", action="store_true", help="quick mode: one sync at the end")
    index.add_argument(
        "-t", dest="truncate", action="store_true", help="truncate mode: what pyldapd index always does"
    )
    index.add_argument("attributes", nargs="*", help="only these attributes' indexes")

    test = commands.add_parser("test", help="check a configuration (slaptest)")
    add_common_flags(test, database=False)
    test.add_argument("-n", dest="dbnum", type=int, help="only test this database")
    test.add_argument("-u", dest="dry", action="store_true", help="dry run: databases need not exist")
    test.add_argument("-Q", dest="quiet", action="count", default=0, help="quiet (-QQ: quieter)")

    from pyldapd.cli.modify import add_arguments as add_modify_arguments
    from pyldapd.cli.modify import cmd_modify

    modify = commands.add_parser(
        "modify", help="apply LDIF changes to a stopped server's database (slapmodify)"
    )
    add_common_flags(modify)
    add_modify_arguments(modify)  # cli/modify.py: slapmodify's own flags

    return {
        "add": lambda a: run_tool("add", cmd_add, a),
        "modify": lambda a: run_tool("modify", cmd_modify, a),
        "cat": lambda a: run_tool("cat", cmd_cat, a),
        "index": lambda a: run_tool("index", cmd_index, a),
        "test": lambda a: run_tool("test", cmd_test, a),
    }
