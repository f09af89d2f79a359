"""slapd.conf(5): read OpenLDAP's configuration file format into the config model.

The tokenizer follows slapd: a line that starts with white space continues the previous one, `#` starts a
comment line, words are separated by white space, double quotes group words and a backslash escapes the next
character. An error names the file, the line and what is wrong, and nothing is started.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyldapd.config.model import (
    ALLOW_WORDS,
    AUTHZ_POLICIES,
    AUTHZ_POLICY_ALIASES,
    DISALLOW_WORDS,
    REQUIRE_WORDS,
    RESTRICT_WORDS,
    TLS_VERIFY_LEVELS,
    DatabaseConfig,
    OverlayConfig,
    SecurityFactors,
    ServerConfig,
    TLSConfig,
    parse_keywords,
    parse_log_level,
    parse_logfile_rotate,
)


class ConfigError(Exception):
    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}: line {line}: {message}")
        self.source = source
        self.line = line


@dataclass
class Directive:
    words: list[str]
    raw: str  # the logical line as written (continuations joined), for schema definitions
    source: str
    line: int

    @property
    def name(self) -> str:
        return self.words[0].lower()

    @property
    def args(self) -> list[str]:
        return self.words[1:]

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.source, self.line, message)


KNOWN_MODULES = {
    "back_mdb", "back_hdb", "back_bdb", "back_monitor", "back_ldif", "syncprov", "accesslog", "ppolicy",
    "memberof", "refint", "unique", "back_null", "dynlist", "constraint", "auditlog",
    "argon2",  # pw-argon2: pyldapd's {ARGON2} scheme is built in
}  # fmt: skip

# Directives of slapd.conf(5) that only tune slapd's own threads, caches and storage layout: pyldapd accepts and
# keeps them (README, "accepted, tuning only"); they change no answer. dbnosync asks for less durability than
# pyldapd gives: every write is committed with sync anyway.
TUNING_GLOBAL = {
    "concurrency", "index_hash64", "index_intlen", "index_substr_if_maxlen", "index_substr_if_minlen",
    "index_substr_any_len", "index_substr_any_step", "listener-threads", "tcp-buffer", "threadqueues",
}  # fmt: skip
TUNING_DATABASE = {
    "checkpoint", "dbnosync", "envflags", "idlexp", "maxreaders", "multival", "rtxnsize", "searchstack",
    "cachesize", "idlcachesize", "dncachesize", "dbconfig", "dbpagesize", "shm_key", "linearindex", "lockdetect",
    "cachefree", "checksum", "dbnolocking",
}  # fmt: skip
# Implemented by other parts of pyldapd (their own helpers): kept as they are here.
DELEGATED_GLOBAL = {"logfile", "logfile-rotate", "writetimeout", "tlsrandfile", "tlsecname", "gentlehup"}
# Directives slapd knows that pyldapd does not implement: refused with file and line, except with the value
# that is slapd's default (then they change nothing and are accepted).
DEFAULT_ONLY = {
    "reverse-lookup": "off", "schemadn": "cn=subschema",
    "sortvals": None, "attributeoptions": "lang-", "pluginlog": None, "sasl-auxprops": None,
    "sasl-host": None, "sasl-realm": None, "sasl-secprops": "noplain,noanonymous", "sasl-cbinding": None,
    "hidden": "off", "lastmod": "on", "monitoring": "on",
    "sync_use_subentry": "off", "extra_attrs": None, "maxderefdepth": "15",
    "maxentrysize": "0", "mode": "0600", "limits": None,
}  # fmt: skip
UNSUPPORTED_PREFIXES = ("authid-rewrite", "authz-rewrite")
# Everything pyldapd reads besides the directives it parses one by one (tests/server/test_directives.py goes
# through these sets: each directive works, is tuning only, or is refused).
ACCEPTED_GLOBAL = TUNING_GLOBAL | DELEGATED_GLOBAL | {k for k in DEFAULT_ONLY if k not in (
    "hidden", "lastmod", "monitoring", "sync_use_subentry", "extra_attrs",
    "maxderefdepth", "maxentrysize", "mode", "limits")}  # fmt: skip
ACCEPTED_DATABASE = TUNING_DATABASE | (set(DEFAULT_ONLY) - ACCEPTED_GLOBAL - {"limits"}) | {"schemadn"}
# parsed one by one (apply_global / apply_database / apply_access_directive): tests/server/test_directives.py
IMPLEMENTED = {"allow", "disallow", "require", "restrict", "authz-regexp", "authz-policy", "referral", "lastbind",
               "rootdse", "add_content_acl",
               "ldapsyntax", "ditcontentrule", "defaultsearchbase", "readonly", "subordinate"}  # fmt: skip

OVERLAYS = ("syncprov", "accesslog", "glue")  # the overlays pyldapd implements
# slapo-accesslog(5)'s directives (no "accesslog-" prefix)
ACCESSLOG_DIRECTIVES = ("logdb", "logops", "logpurge", "logsuccess", "logold", "logoldattr", "logbase")

# ldif (slapd-ldif(5): one LDIF file per entry) is a data database as mdb is; its declared type picks its storage
DATABASE_ALIASES = {"mdb": "mdb", "hdb": "mdb", "bdb": "mdb", "ldif": "mdb", "config": "config",
                    "monitor": "monitor", "frontend": "frontend"}  # fmt: skip
# back-mdb's own directives, which slapd-ldif(5) does not have (its only one is `directory`)
MDB_ONLY = {"index", "maxsize"} | TUNING_DATABASE

INDEX_KINDS = {
    "eq",
    "pres",
    "sub",
    "approx",
    "subinitial",
    "subany",
    "subfinal",
    "nolang",
    "nosubtypes",
    "notags",
}


def tokenize(line: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quoted = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            current.append(line[i + 1])
            in_word = True
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
            in_word = True
        elif ch.isspace() and not quoted:
            if in_word:
                words.append("".join(current))
                current = []
                in_word = False
        else:
            current.append(ch)
            in_word = True
        i += 1
    if quoted:
        raise ValueError("unbalanced quote")
    if in_word:
        words.append("".join(current))
    return words


def read_directives(path: str) -> Iterator[Directive]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ConfigError(path, 0, f"cannot read file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, 0, "file is not UTF-8") from None
    logical: list[tuple[int, str]] = []
    for number, text in enumerate(lines, 1):
        if text.startswith("#"):
            continue
        if text[:1].isspace():
            if text.strip() and logical:
                logical[-1] = (logical[-1][0], logical[-1][1] + " " + text.strip())
            continue
        if text.strip():
            logical.append((number, text.strip()))
    for number, text in logical:
        try:
            words = tokenize(text)
        except ValueError as exc:
            raise ConfigError(path, number, str(exc)) from None
        if words:
            yield Directive(words, text, path, number)


def parse_size_limit(directive: Directive) -> int | None:
    """`sizelimit 500`, `sizelimit unlimited` or slapd's specifiers (`size.soft=500 size.hard=1000 size.pr=50
    size.prtotal=... size.unchecked=...`, `time.soft=`/`time.hard=`): the soft limit the line sets (0 for
    unlimited), None when it sets only others. Every word is checked here; the directive's words are kept
    (`sizelimit_words`) and server/searchlimits.py applies the rest."""
    from pyldapd.server.searchlimits import LimitsError, LimitSet, apply_directive_word

    kind = "size" if directive.name == "sizelimit" else "time"
    if not directive.args:
        raise directive.error(f"{directive.name}: a value is required")
    soft = None
    for word in directive.args:
        try:
            apply_directive_word(LimitSet(), kind, word)
        except LimitsError as exc:
            raise directive.error(f"{directive.name}: {exc}") from None
        left, eq, text = word.partition("=")
        if eq and left.lower() not in (kind, f"{kind}.soft"):
            continue
        value = text if eq else word
        soft = 0 if value.lower() in ("unlimited", "none", "-1") else int(value)
    return soft


def parse_maxsize(directive: Directive) -> int:
    try:
        value = int(one_arg(directive))
    except ValueError:
        raise directive.error("maxsize: a number of bytes is required") from None
    if value <= 0:
        raise directive.error("maxsize: must be positive")
    return value


def one_arg(directive: Directive) -> str:
    if len(directive.args) != 1:
        raise directive.error(
            f"{directive.words[0]}: exactly one argument expected, got {len(directive.args)}"
        )
    return directive.args[0]


def parse_on_off(directive: Directive) -> bool:
    value = one_arg(directive).lower()
    if value not in ("on", "off", "true", "false", "yes", "no"):
        raise directive.error(f"{directive.words[0]}: on or off expected, got {value!r}")
    return value in ("on", "true", "yes")


def parse_index(directive: Directive, indexes: dict[str, set[str]]) -> None:
    """`index attr[,attr...] [eq,pres,sub,approx]` and `index default eq`."""
    if not 1 <= len(directive.args) <= 2:
        raise directive.error("index: usage is index <attr>[,<attr>...] [pres,eq,approx,sub]")
    kinds = set(indexes.get("default", ())) if len(directive.args) == 1 else set()
    if len(directive.args) == 1 and not kinds:
        raise directive.error("no indexes selected")  # slapd: a type, or an earlier `index default`
    if len(directive.args) == 2:
        for kind in directive.args[1].split(","):
            kind = kind.strip().lower()
            if kind not in INDEX_KINDS:
                raise directive.error(f'index type "{kind}" undefined')
            if kind.startswith("sub"):
                kind = "sub"
            if kind in ("nolang", "nosubtypes", "notags"):
                continue
            kinds.add(kind)
    for attr in directive.args[0].split(","):
        attr = attr.strip()
        if attr:
            indexes.setdefault(attr, set()).update(kinds)


def parse_server_id(directive: Directive) -> tuple[int, str]:
    if not 1 <= len(directive.args) <= 2:
        raise directive.error("serverID: usage is serverID <number> [<URL>]")
    try:
        number = int(directive.args[0], 0)
    except ValueError:
        raise directive.error(f"serverID: {directive.args[0]!r} is not a number") from None
    if not 0 <= number <= 4095:
        raise directive.error("serverID: must be between 0 and 4095")
    return number, directive.args[1] if len(directive.args) == 2 else ""


# Equality rules slapd has no index keys for (schema_init.c: no indexer)
_UNINDEXABLE_EQUALITY = frozenset(
    {
        "2.5.13.22",  # presentationAddressMatch
        "2.5.13.24",  # protocolInformationMatch
        "2.5.13.35",  # certificateMatch
        "2.5.13.39",  # certificateListMatch
        "2.5.13.46",  # attributeCertificateMatch
        "1.3.6.1.4.1.4203.666.4.1",  # authPasswordMatch
        "1.3.6.1.4.1.4203.666.4.12",  # authzMatch
        "1.3.6.1.4.1.4203.666.4.13",  # privateKeyMatch
    }
)
_ENTRY_DN = "1.3.6.1.1.20"
_DEFINITION_OID = re.compile(r"^\s*(attributetypes?|objectclass(?:es)?)\s*\(\s*([\w.:;-]+)", re.IGNORECASE)


def index_problem(attr: str, kinds: set[str], schema: Any, seen: set[str]) -> str | None:
    """What slapd says against indexing attr with kinds (back-mdb attr.c), or None: the attribute is defined,
    may be indexed, has the matching rules the kinds need, and is not indexed twice (seen: those indexed)."""
    from pyldapd.model.matching import APPROX_RULES

    base, _, options = attr.partition(";")
    at = schema.attribute_type(base)
    if at is None:
        return f'index attribute "{attr}" undefined'
    if at.oid == _ENTRY_DN or "binary" in options.lower().split(";"):
        return f'index of attribute "{attr}" disallowed'
    if "approx" in kinds and (at.equality is None or at.equality.oid not in APPROX_RULES):
        return f'approx index of attribute "{attr}" disallowed'
    if "eq" in kinds and (at.equality is None or at.equality.oid in _UNINDEXABLE_EQUALITY):
        return f'equality index of attribute "{attr}" disallowed'
    if kinds & {"sub", "subinitial", "subany", "subfinal"} and at.substr is None:
        return f'substr index of attribute "{attr}" disallowed'
    key = at.oid + (";" + options.lower() if options else "")
    if key in seen:
        return f'duplicate index definition for attr "{attr}"'
    seen.add(key)
    return None


def check_index(directive: Directive, schema: Any, seen: set[str]) -> None:
    """slapd's checks of an `index` line, against the schema defined before it."""
    kinds = {k.strip().lower() for k in directive.args[1].split(",")} if len(directive.args) == 2 else set()
    for attr in directive.args[0].split(","):
        attr = attr.strip()
        if not attr or attr.lower() == "default":
            continue
        problem = index_problem(attr, kinds, schema, seen)
        if problem is not None:
            raise directive.error(problem)


# slapd.conf TLS directive -> TLSConfig field
TLS_DIRECTIVES = {
    "tlscertificatefile": "certificate_file",
    "tlscertificatekeyfile": "certificate_key_file",
    "tlscacertificatefile": "ca_certificate_file",
    "tlscacertificatepath": "ca_certificate_path",
    "tlsverifyclient": "verify_client",
    "tlsprotocolmin": "protocol_min",
    "tlsciphersuite": "cipher_suite",
    "tlsdhparamfile": "dh_param_file",
    "tlscrlcheck": "crl_check",
    "tlscrlfile": "crl_file",
}


def apply_tls_directive(d: Directive, tls: TLSConfig) -> None:
    value = " ".join(d.args) if d.name == "tlsciphersuite" else one_arg(d)
    if d.name == "tlsverifyclient":
        if value.lower() not in TLS_VERIFY_LEVELS:
            raise d.error(f"{d.words[0]}: unknown level {value!r} (never, allow, try, demand, hard)")
        value = TLS_VERIFY_LEVELS[value.lower()]
    elif d.name == "tlsprotocolmin":
        major, _, minor = value.partition(".")
        if not major.isdigit() or (minor and not minor.isdigit()):
            raise d.error(f"{d.words[0]}: invalid version {value!r} (e.g. 3.3 for TLS 1.2)")
    elif d.name == "tlscrlcheck" and value.lower() not in ("none", "peer", "all"):
        raise d.error(f"{d.words[0]}: unknown level {value!r} (none, peer, all)")
    setattr(tls, TLS_DIRECTIVES[d.name], value)


def apply_security(d: Directive, factors: SecurityFactors) -> None:
    try:
        SecurityFactors.parse(d.args, factors)
    except ValueError as exc:
        raise d.error(f"{d.words[0]}: {exc}") from None


def scheme_available(scheme: str) -> bool:
    from pyldapd.model.passwords import hash_password

    try:
        hash_password(b"x", scheme)
    except ValueError:
        return False
    return True


def keywords(d: Directive, allowed: tuple[str, ...], *, extended_oid: bool = False) -> list[str]:
    if not d.args:
        raise d.error(f"{d.words[0]}: at least one keyword is required")
    try:
        return parse_keywords(d.args, allowed, extended_oid=extended_oid)
    except ValueError as exc:
        raise d.error(f"<{d.words[0]}> {exc}") from None


def authz_regexp(d: Directive) -> tuple[str, str]:
    if len(d.args) != 2:
        raise d.error(f"{d.words[0]}: usage is {d.words[0]} <match> <replace>")
    try:
        re.compile(d.args[0])
    except re.error as exc:
        raise d.error(f"{d.words[0]}: invalid regular expression {d.args[0]!r}: {exc}") from None
    return d.args[0], d.args[1]


def apply_subordinate(d: Directive, db: DatabaseConfig) -> None:
    """`subordinate [advertise]`: glue this database under the next database holding its suffix's superior
    (slapd's config_subordinate and glue_sub_add, their checks and texts)."""
    if len(d.args) > 1:
        raise d.error(f"{d.words[0]}: extra cruft after <[advertise]>")
    if not db.suffixes:
        raise d.error("subordinate configuration needs a suffix")
    if any(o.name == "glue" for o in db.overlays):
        raise d.error(f"glue: backend {db.suffix} already has glue overlay, cannot be a subordinate!")
    word = d.args[0].lower() if d.args else "true"
    if word == "false":
        return
    if word not in ("true", "advertise"):
        raise d.error(f'suffix "{db.suffix}": subordinate must be "TRUE", "FALSE" or "advertise"')
    db.subordinate = "advertise" if word == "advertise" else "TRUE"


def parse_threads(d: Directive, value: int) -> int:
    """`threads N`: slapd's thread pool size is pyldapd's number of worker processes (server/workers.py). slapd
    refuses fewer than 2 threads; here 1 is meaningful (one process, no supervisor) and accepted, 0 refused."""
    if value < 1:
        raise d.error(f"threads={value} smaller than minimum value 1")
    return value


def refuse_unsupported(d: Directive) -> None:
    """A directive pyldapd does not implement: fine with slapd's default value, refused otherwise."""
    default = DEFAULT_ONLY.get(d.name)
    if (
        default is not None
        and len(d.args) == 1
        and d.args[0].lower() in {default, *BOOLEAN_ALIASES.get(default, ())}
    ):
        return
    raise d.error(f"{d.words[0]}: not supported by pyldapd")


BOOLEAN_ALIASES = {"on": ("true", "yes", "1"), "off": ("false", "no", "0")}


class SlapdConfParser:
    def __init__(self) -> None:
        self.config = ServerConfig()
        self.database: DatabaseConfig | None = None
        self.overlay: OverlayConfig | None = None
        self.include_stack: list[str] = []
        # index lines are checked against the schema defined before them, as slapd does; a file that includes no
        # schema gets pyldapd's default one, so its index lines wait for the end of the file
        self._schema: Any = None
        self._schema_loaded = 0
        self._indexed: dict[int, set[str]] = {}  # id(database) -> attributes indexed
        self._pending_indexes: list[tuple[Directive, DatabaseConfig]] = []

    def parse(self, path: str) -> ServerConfig:
        self.parse_file(path)
        if self._pending_indexes:
            schema = self.schema_so_far()
            if schema is None:
                from pyldapd.model.schema import Schema

                schema = Schema.default()
            for d, db in self._pending_indexes:
                check_index(d, schema, self._indexed.setdefault(id(db), set()))
        return self.config

    def schema_so_far(self) -> Any:
        """The schema the definitions read so far make (None when there is none yet)."""
        definitions = self.config.schema_definitions
        if not definitions:
            return None
        from pyldapd.model.schema import Schema

        if self._schema is None:
            self._schema = Schema()
        for source, text in definitions[self._schema_loaded :]:
            match = _DEFINITION_OID.match(text)
            if match is not None:
                oid = match.group(2)
                if match.group(1).lower().startswith("attribute"):
                    if self._schema.attribute_type(oid) is not None:
                        continue
                elif self._schema.object_class(oid) is not None:
                    continue
            try:
                self._schema.load_text(text, source)
            except ValueError:
                pass  # the server reports schema errors when it builds its schema
        self._schema_loaded = len(definitions)
        loaded = {m.rsplit("/", 1)[-1].split(".")[0].lower() for m in self.config.modules}
        if "accesslog" in loaded and self._schema.attribute_type("reqStart") is None:
            from pyldapd.model.schema import SCHEMA_DIR  # slapd's accesslog module brings its schema

            self._schema.load_file(str(SCHEMA_DIR / "accesslog.schema"))
        return self._schema

    def parse_file(self, path: str) -> None:
        real = os.path.realpath(path)
        if real in self.include_stack:
            raise ConfigError(path, 0, "include loop")
        self.include_stack.append(real)
        try:
            for directive in read_directives(path):
                self.apply(directive)
        finally:
            self.include_stack.pop()

    def apply(self, d: Directive) -> None:
        name = d.name
        config = self.config
        if name == "include":
            target = one_arg(d)
            # a relative path is opened from the working folder, as slapd's fopen() does (OpenLDAP's test
            # scripts run slapd from tests/ with `include ./schema/core.schema`)
            if not os.path.exists(target):
                raise d.error(f"include: cannot open {target!r}")
            self.parse_file(target)
        elif name in (
            "attributetype",
            "attributetypes",
            "objectclass",
            "objectclasses",
            "objectidentifier",
            "ditcontentrule",
        ):
            config.schema_definitions.append((f"{d.source}:{d.line}", d.raw))
        elif name == "modulepath":
            config.module_paths.append(one_arg(d))
        elif name == "moduleload":
            if not d.args:
                raise d.error("moduleload: a module name is required")
            module = os.path.basename(d.args[0]).split(".")[0]
            config.modules.append(module)
            if module not in KNOWN_MODULES:
                config.warnings.append(
                    f"{d.source}: line {d.line}: module {module!r} is unknown to pyldapd, ignored"
                )
        elif name == "database":
            self.begin_database(d)
        elif name == "backend":
            one_arg(d)
        elif name == "overlay":
            if self.database is None:
                raise d.error("overlay: must follow a database directive")
            overlay = one_arg(d).lower()
            # the overlays pyldapd implements; slapd refuses names it has not loaded
            if overlay not in OVERLAYS:
                if overlay in KNOWN_MODULES:
                    raise d.error(f'overlay "{overlay}" is not implemented by pyldapd')
                raise d.error(f'overlay "{overlay}" not found')
            if overlay == "glue" and self.database.subordinate:
                raise d.error(
                    f"glue: backend {self.database.suffix} is already subordinate, cannot have glue overlay!"
                )
            self.overlay = OverlayConfig(overlay)
            self.database.overlays.append(self.overlay)
        elif self.overlay is not None and name.startswith(self.overlay.name + "-"):
            if self.overlay.name == "syncprov":
                from pyldapd.replication.provider import ProviderSettings

                try:  # checked now, so that a wrong value (or an unknown syncprov-*) names its file and line
                    ProviderSettings.from_overlay([(name, d.args)])
                except ValueError as exc:
                    raise d.error(str(exc)) from None
                loaded = {os.path.basename(m).split(".")[0].lower() for m in self.config.modules}
                if name == "syncprov-sessionlog-source" and loaded and "accesslog" not in loaded:
                    # a modular slapd (as Debian's) has the accesslog schema once its module is loaded
                    raise d.error("syncprov-sessionlog-source: couldn't get definition for attribute reqType, "
                                  "is accesslog configured? (moduleload accesslog)")  # fmt: skip
            self.overlay.settings.append((name, d.args))
        elif self.overlay is not None and self.overlay.name == "accesslog" and name in ACCESSLOG_DIRECTIVES:
            from pyldapd.overlays.accesslog import AccesslogSettings

            try:  # checked now, so that a wrong value names its file and line
                AccesslogSettings.parse([*self.overlay.settings, (name, d.args)])
            except ValueError as exc:
                if not str(exc).startswith("logdb: the accesslog"):
                    raise d.error(str(exc)) from None
            self.overlay.settings.append((name, d.args))
        elif self.database is not None and self.database.type != "frontend":
            self.apply_database(d, self.database)
        else:
            self.apply_global(d)

    def begin_database(self, d: Directive) -> None:
        declared = one_arg(d).lower()
        kind = DATABASE_ALIASES.get(declared)
        if kind is None:
            raise d.error(
                f"database: unknown database type {declared!r} (pyldapd has mdb, hdb, bdb, ldif, config, monitor)"
            )
        self.database = DatabaseConfig(type=kind, declared_type=declared, source=f"{d.source}:{d.line}")
        self.overlay = None
        if kind == "frontend":
            return
        self.config.databases.append(self.database)

    def apply_global(self, d: Directive) -> None:
        config = self.config
        name = d.name
        if name == "pidfile":
            config.pidfile = one_arg(d)
        elif name == "argsfile":
            config.argsfile = one_arg(d)
        elif name == "loglevel":
            try:
                config.loglevel = parse_log_level(d.args)
            except ValueError as exc:
                raise d.error(f"loglevel: {exc}") from None
        elif name == "logfile":
            config.logfile = one_arg(d)
        elif name == "logfile-only":
            config.logfile_only = parse_on_off(d)
        elif name == "logfile-rotate":
            config.logfile_rotate = parse_logfile_rotate(d.args, d.error)
        elif name in ("sizelimit", "timelimit"):
            soft = parse_size_limit(d)
            if soft is not None:
                setattr(config, name, soft)
            getattr(config, f"{name}_words").extend(d.args)
        elif name == "idletimeout":
            config.idletimeout = self.int_arg(d)
        elif name == "tool-threads":
            config.tool_threads = self.int_arg(d)
        elif name == "threads":  # the number of worker processes (server/workers.py)
            config.threads = parse_threads(d, self.int_arg(d))
        elif name == "sockbuf_max_incoming":
            config.max_pdu = self.int_arg(d)
        elif name == "sockbuf_max_incoming_auth":
            config.max_pdu_auth = self.int_arg(d)
        elif name == "maxfilterdepth":
            config.max_filter_depth = self.int_arg(d)
        elif name in ("conn_max_pending", "conn_max_pending_auth"):  # server/limits.py
            setattr(config, name, self.int_arg(d))
        elif name == "writetimeout":  # server/connection.py
            config.writetimeout = self.int_arg(d)
        elif name == "password-hash":
            if not d.args:
                raise d.error("password-hash: a scheme is required")
            if not all(scheme_available(scheme) for scheme in d.args):
                raise d.error("<password-hash> scheme not available")
            config.password_hash = d.args
        elif name in ("serverid",):
            config.server_ids.append(parse_server_id(d))
        elif name == "access":
            config.access.append(access_text(d))
            config.access_sources.append(f"{d.source}:{d.line}")
        elif name in TLS_DIRECTIVES:
            apply_tls_directive(d, config.tls)
        elif name == "security":
            apply_security(d, config.security)
        elif name == "localssf":
            config.local_ssf = self.int_arg(d)
        elif name == "password-crypt-salt-format":
            config.password_crypt_salt_format = one_arg(d)
        elif name == "readonly":
            config.readonly = one_arg(d).lower() in ("on", "true", "yes")
        elif self.apply_access_directive(d, None):
            pass
        elif name in ("ldapsyntax", "ldapsyntaxes"):
            config.schema_definitions.append((f"{d.source}:{d.line}", d.raw))
        elif name in DEFAULT_ONLY or name.startswith(UNSUPPORTED_PREFIXES):
            refuse_unsupported(d)
        elif name in TUNING_GLOBAL or name in TUNING_DATABASE or name in DELEGATED_GLOBAL:
            config.extra.append((name, d.args))
        else:
            raise d.error(f"unknown directive <{d.words[0]}> outside backend info and database definitions")

    def check_syncrepl_base(self, d: Directive, db: DatabaseConfig) -> None:
        """slapd refuses, at its line, a stanza whose searchbase (or massage DN) is outside the database."""
        from pyldapd.model.dn import normalize_dn
        from pyldapd.model.schema import Schema
        from pyldapd.replication.spec import SyncreplError, check_naming_context, parse_syncrepl

        schema = self.schema_so_far() or Schema.default()

        def normalize(dn: str) -> str:
            return normalize_dn(dn, schema)

        try:
            spec = parse_syncrepl(db.syncrepl[-1])
            check_naming_context(spec, [normalize(s) for s in db.suffixes], normalize)
        except SyncreplError as exc:
            if "naming context" in str(exc):
                raise d.error(str(exc)) from None
        except ValueError:
            pass  # an unparsable DN or stanza: refused where the stanza is read for use

    def apply_database(self, d: Directive, db: DatabaseConfig) -> None:
        name = d.name
        # pyldapd serves cn=config only from a slapd.d (-F), and cn=Monitor with a fixed read rule that names
        # the monitor's rootdn: nothing else written in those sections would have an effect
        # (slapd.conf(5) lets the config database have a rootdn, default cn=config, and its rootpw: test scripts
        # bind so to add databases at run time; they are written to the slapd.d's olcDatabase={0}config)
        if db.type == "config" and name not in ("rootdn", "rootpw"):
            raise d.error(
                f"{d.words[0]}: not supported by pyldapd in database config (cn=config needs -F slapd.d)"
            )
        if db.type == "monitor" and name not in ("rootdn", "rootpw", "access"):
            raise d.error(f"{d.words[0]}: not supported by pyldapd in database monitor")
        if db.declared_type == "ldif" and name in MDB_ONLY:
            raise d.error(f"unknown directive <{d.words[0]}> inside backend database definition.")
        if name == "suffix":
            suffix = one_arg(d)
            if db.type in ("config", "monitor"):
                raise d.error(f"suffix: the {db.type} database's suffix is fixed")
            self.check_suffix(d, db, suffix)
            db.suffixes.append(suffix)
        elif name == "rootdn":
            db.rootdn = one_arg(d)
        elif name == "rootpw":
            db.rootpw = one_arg(d).encode()
        elif name == "directory":
            db.directory = one_arg(d)
            if db.type == "mdb" and db.declared_type != "ldif":  # slapd-ldif opens without it (writes fail)
                # slapd refuses a directory that is not there (it never creates one)
                try:
                    if not os.path.isdir(db.directory):
                        os.stat(db.directory)
                        raise d.error("invalid path: Not a directory")
                except OSError as exc:
                    raise d.error(f"invalid path: {exc.strerror}") from None
        elif name == "maxsize":
            db.maxsize = parse_maxsize(d)
        elif name == "index":
            parse_index(d, db.indexes)
            schema = self.schema_so_far()
            if schema is None:
                self._pending_indexes.append((d, db))
            else:
                check_index(d, schema, self._indexed.setdefault(id(db), set()))
        elif name in ("sizelimit", "timelimit"):
            soft = parse_size_limit(d)
            if soft is not None:
                setattr(db, name, soft)
            getattr(db, f"{name}_words").extend(d.args)
        elif name == "readonly":
            value = one_arg(d).lower()
            if value not in ("on", "true", "yes", "off", "false", "no"):
                raise d.error("<readonly> invalid value")  # slapd's words
            db.readonly = value in ("on", "true", "yes")
        elif name == "access":
            db.access.append(access_text(d))
            db.access_sources.append(f"{d.source}:{d.line}")
        elif name == "limits":
            db.limits.append(limits_text(d))
            db.limits_sources.append(f"{d.source}:{d.line}")
        elif name == "syncrepl":
            if db.updatedn:  # slapd: updatedn and syncrepl each make the database a shadow, only one may
                raise d.error("syncrepl: database already shadowed.")
            db.syncrepl.append(d.raw.split(None, 1)[1] if d.args else "")  # keep the quoting
            self.check_syncrepl_base(d, db)
        elif name == "updateref":
            db.updateref.append(one_arg(d))
        elif name == "updatedn":
            if db.syncrepl:  # slapd: syncrepl has already made the database a shadow
                raise d.error("<updatedn> database already shadowed")
            db.updatedn = one_arg(d)
        elif name in ("mirrormode", "multiprovider", "multimaster"):
            db.multiprovider = one_arg(d).lower() in ("on", "true", "yes")
        elif name == "security":
            apply_security(d, db.security)
        elif name == "lastbind":
            value = one_arg(d).lower()
            if value not in ("on", "off", "true", "false", "yes", "no"):
                raise d.error(f"lastbind: invalid value {d.args[0]!r} (on or off)")
            db.lastbind = value in ("on", "true", "yes")
        elif name == "add_content_acl":
            value = one_arg(d).lower()
            if value not in ("on", "off", "true", "false", "yes", "no"):
                raise d.error(f"add_content_acl: invalid value {d.args[0]!r} (on or off)")
            db.add_content_acl = value in ("on", "true", "yes")
        elif name == "subordinate":
            apply_subordinate(d, db)
        elif self.apply_access_directive(d, db):
            pass
        elif name in DEFAULT_ONLY or name.startswith(UNSUPPORTED_PREFIXES):
            refuse_unsupported(d)
        elif name in TUNING_DATABASE:
            db.extra.append((name, d.args))
        elif name in ("serverid",):
            self.config.server_ids.append(parse_server_id(d))
        elif name in TUNING_GLOBAL or name in DELEGATED_GLOBAL:
            db.extra.append((name, d.args))
        else:
            raise d.error(f"unknown directive <{d.words[0]}> inside backend database definition")

    def apply_access_directive(self, d: Directive, db: DatabaseConfig | None) -> bool:
        """allow, disallow, authz-regexp, referral (global only, wherever written, as in slapd); require and
        restrict (global or per database). False when `d` is none of these."""
        config = self.config
        name = d.name
        if name == "allow":
            config.allows += keywords(d, ALLOW_WORDS)
        elif name == "disallow":
            config.disallows += keywords(d, DISALLOW_WORDS)
        elif name in ("authz-regexp", "sasl-regexp", "saslregexp"):
            config.authz_regexp.append(authz_regexp(d))
        elif name in ("authz-policy", "sasl-authz-policy"):
            policy = one_arg(d).lower()
            policy = AUTHZ_POLICY_ALIASES.get(policy, policy)
            if policy not in AUTHZ_POLICIES:
                raise d.error(
                    f"{d.words[0]}: unknown policy {d.args[0]!r} (none, from, to, any or both, all)"
                )
            config.authz_policy = policy
        elif name == "defaultsearchbase":
            config.default_search_base = one_arg(d)
            from pyldapd.model.dn import DNError, parse_dn

            try:
                parse_dn(config.default_search_base)
            except DNError:
                raise d.error(f"defaultsearchbase: invalid DN {d.args[0]!r}") from None
        elif name == "rootdse":
            path = one_arg(d)
            try:
                read_rootdse(path)
            except (OSError, ValueError) as exc:
                raise d.error(f'rootdse: could not read "{path}": {exc}') from None
            config.rootdse_files.append(path)
        elif name == "referral":
            url = one_arg(d)
            if not url.lower().startswith(("ldap://", "ldaps://", "ldapi://")):
                raise d.error(f"referral: invalid URL {url!r}")
            config.referral = url
        elif name == "require":
            words = keywords(d, REQUIRE_WORDS)
            if db is None:
                config.requires = words
            else:
                db.requires = words
        elif name == "restrict":
            words = keywords(d, RESTRICT_WORDS, extended_oid=True)
            target = config if db is None else db
            target.restrict = sorted(set(target.restrict) | set(words))
        else:
            return False
        return True

    def check_suffix(self, d: Directive, db: DatabaseConfig, suffix: str) -> None:
        """slapd refuses a suffix that is not a DN, or one a preceding database serves already (the same suffix or
        one above it)."""
        from pyldapd.model.dn import DNError, parse_dn

        def key(dn: str) -> tuple:
            return tuple(tuple((t.lower(), v.lower()) for t, v in rdn) for rdn in parse_dn(dn))

        try:
            wanted = key(suffix)
        except DNError:
            raise d.error("<suffix> invalid DN 21 (Invalid syntax)") from None
        for other in self.config.databases:
            for served in other.suffixes:
                try:
                    held = key(served)
                except DNError:
                    continue
                # slapd's select_backend: a preceding database whose suffix is this one or above it (a glued
                # subordinate must come before its superior)
                if len(held) <= len(wanted) and wanted[len(wanted) - len(held) :] == held:
                    raise d.error(
                        f'<suffix> namingContext "{suffix}" already served by a preceding '
                        f'{other.declared_type} database serving namingContext "{served}"'
                    )

    @staticmethod
    def int_arg(d: Directive) -> int:
        try:
            value = int(one_arg(d), 0)
        except ValueError:
            raise d.error(f"{d.words[0]}: {d.args[0]!r} is not a number") from None
        if value < 0:
            raise d.error(f"{d.words[0]}: must not be negative")
        return value


def access_text(d: Directive) -> str:
    """An `access` line's text after the keyword, quoting kept; its syntax is checked here (file and line)."""
    from pyldapd.server.acl import ACLError, parse_access

    try:
        parse_access(d.args)
    except ACLError as exc:
        raise d.error(f"access: {exc}") from None
    return d.raw.split(None, 1)[1] if d.args else ""


def limits_text(d: Directive) -> str:
    from pyldapd.server.searchlimits import LimitsError, parse_limits

    try:
        parse_limits(d.args)
    except LimitsError as exc:
        raise d.error(f"limits: {exc}") from None
    return d.raw.split(None, 1)[1] if d.args else ""


def validate(config: ServerConfig, source: str) -> None:
    """Checks slapd makes once the whole file is read."""
    from pyldapd.overlays.accesslog import check_database

    for db in config.databases:
        if db.type != "mdb":
            continue
        where, _, line = db.source.rpartition(":")
        if not db.suffixes:
            raise ConfigError(where, int(line or 0), f"database {db.declared_type}: no suffix given")
        if not db.directory:
            raise ConfigError(where, int(line or 0), f"database {db.declared_type}: no directory given")
        try:
            check_database(config, db)
        except ValueError as exc:
            raise ConfigError(where, int(line or 0), f"overlay accesslog: {exc}") from None
    from pyldapd.server.glue import superior_of, unsupported_above_glue

    data = config.data_databases()
    for position, db in enumerate(data):
        refusal = unsupported_above_glue(db)
        if refusal is not None:
            where, _, line = db.source.rpartition(":")
            raise ConfigError(where, int(line or 0), refusal)
        if db.subordinate and superior_of(data, position) is None:  # slapd: "subordinate config error"
            where, _, line = db.source.rpartition(":")
            raise ConfigError(where, int(line or 0), f"glue: no superior found for sub {db.suffix}!")

    from pyldapd.replication.provider import check_syncprov

    try:
        check_syncprov(config)
    except ValueError as exc:
        raise ConfigError(source, 0, f"overlay syncprov: {exc}") from None


def load_slapd_conf(path: str) -> ServerConfig:
    config = SlapdConfParser().parse(path)
    validate(config, path)
    return config


def read_rootdse(path: str) -> list[tuple[str, list[bytes]]]:
    """The attributes of a `rootdse` LDIF file (one entry with an empty DN), added to the root DSE as slapd adds
    them; a relative path is taken from the working folder, as slapd opens it."""
    from pyldapd.model.ldif import LDIFContent, parse_ldif

    with open(path, "rb") as handle:
        records = list(parse_ldif(handle.read(), allow_urls=False))
    attributes: list[tuple[str, list[bytes]]] = []
    for record in records:
        if not isinstance(record, LDIFContent) or record.dn.strip():
            raise ValueError("only the root DSE (an entry with an empty DN) may be given")
        attributes += record.attributes
    return attributes
