"""cn=config (slapd-config(5)): the configuration as LDAP entries, and the slapd.d directory that stores them.

The entries are the source of truth of a server run with `-F`: `config_from_entries` turns them into the same
ServerConfig that slapd.conf gives, `entries_from_config` goes the other way (`pyldapd init`, and
`pyldapd test -f slapd.conf -F DIR` as slaptest converts). A slapd.d directory holds one LDIF file per entry,
named by its RDN, each under the folder of its parent, with slapd's CRC32 header; every write replaces a file
atomically (temporary file, fsync, rename, fsync of the folder), so a crash leaves the old or the new file.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
import re
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from pyldapd.backends.ldif import HEADER, write_file_atomically
from pyldapd.config.model import (
    ALLOW_WORDS,
    AUTHZ_POLICIES,
    AUTHZ_POLICY_ALIASES,
    DISALLOW_WORDS,
    LOG_LEVELS,
    REQUIRE_WORDS,
    RESTRICT_WORDS,
    DatabaseConfig,
    OverlayConfig,
    SecurityFactors,
    ServerConfig,
    parse_keywords,
    parse_log_level,
    parse_logfile_rotate,
)
from pyldapd.model.entry import Attribute, Entry
from pyldapd.model.ldif import LDIFContent, _fold, format_line, parse_ldif
from pyldapd.model.schema import Schema

if TYPE_CHECKING:
    from pyldapd.server.searchlimits import LimitSet

CONFIG_DN = "cn=config"
SCHEMA_DN = "cn=schema,cn=config"
# the schema elements an olcSchemaConfig entry holds (lowercase)
SCHEMA_ELEMENTS = ("olcobjectidentifier", "olcattributetypes", "olcldapsyntaxes", "olcobjectclasses",
                   "olcditcontentrules")  # fmt: skip
ORDER_PREFIX = re.compile(r"^\{(-?\d+)\}")
DATA_TYPES = {"mdb": "olcMdbConfig", "hdb": "olcHdbConfig", "bdb": "olcBdbConfig", "ldif": "olcLdifConfig"}
# Names the seed how-to prints that slapd 2.5 does not know: accepted, stored under the real names.
ALIASES = {
    "olcsyncprovcheckpoint": "olcSpCheckpoint",
    "olcsyncprovsessionlog": "olcSpSessionlog",
    "olcsyncprovnopresent": "olcSpNoPresent",
    "olcsyncprovreloadhint": "olcSpReloadHint",
    "olcmirrormode": "olcMultiProvider",
}
SYNCPROV_SETTINGS = {
    "olcspcheckpoint": "syncprov-checkpoint",
    "olcspsessionlog": "syncprov-sessionlog",
    "olcspnopresent": "syncprov-nopresent",
    "olcspreloadhint": "syncprov-reloadhint",
    "olcspsessionlogsource": "syncprov-sessionlog-source",
}

# slapo-accesslog(5): olcAccessLog* <-> the slapd.conf directive
ACCESSLOG_SETTINGS = {
    "olcaccesslogdb": "logdb",
    "olcaccesslogops": "logops",
    "olcaccesslogpurge": "logpurge",
    "olcaccesslogsuccess": "logsuccess",
    "olcaccesslogold": "logold",
    "olcaccesslogoldattr": "logoldattr",
    "olcaccesslogbase": "logbase",
}
OVERLAY_SETTINGS = {**SYNCPROV_SETTINGS, **ACCESSLOG_SETTINGS}
OVERLAY_CLASSES = {"syncprov": "olcSyncProvConfig", "accesslog": "olcAccessLogConfig"}


class ConfigValueError(ValueError):
    """A value slapd's config handlers refuse; the text is the message slapd sends back (result 80)."""


# What pyldapd does with each olc* attribute of the entries it reads (cn=config, the frontend, the data
# databases, their overlays). Attributes read by config_from_entries are not listed. tests/server/
# test_directives.py goes through olc.schema: every attribute is read, tuning only, delegated, or refused.
TUNING_OLC = {
    "olcconcurrency", "olcindexsubstrifmaxlen", "olcindexsubstrifminlen", "olcindexsubstranylen",
    "olcindexsubstranystep", "olcindexhash64", "olcindexintlen", "olclistenerthreads",
    "olcthreadqueues", "olctcpbuffer", "olcdbcheckpoint", "olcdbnosync", "olcdbenvflags", "olcbkmdbidlexp",
    "olcdbmaxreaders", "olcdbmultival", "olcdbrtxnsize", "olcdbsearchstack",
}  # fmt: skip
# implemented by other parts of pyldapd (logging, write timeouts, pending operations, TLS)
DELEGATED_OLC = {
    "olclogfile", "olclogfileonly", "olclogfilerotate", "olcgentlehup", "olcwritetimeout", "olcconnmaxpending", "olcconnmaxpendingauth", "olctlscrlcheck",
    "olctlscrlfile", "olctlsdhparamfile", "olctlsrandfile", "olctlsecname", "olctlscacertificate",
    "olctlscertificate", "olctlscertificatekey",
}  # fmt: skip
# not implemented: accepted only with slapd's default value (slaptest writes these), refused otherwise
DEFAULT_OLC = {
    "olcattributeoptions": {"lang-"},
    "olcreverselookup": {"false"}, "olcsaslauxpropsdontusecopyignore": {"false"},
    "olcsaslsecprops": {"noplain,noanonymous"}, "olcaddcontentacl": {"false"}, "olclastmod": {"true"},
"olcmaxderefdepth": {"0", "15"}, "olcschemadn": {"cn=subschema"},
    "olcsyncusesubentry": {"false"}, "olcmonitoring": {"true", "false"}, "olcdbmode": {"0600"},
    "olcdbmaxentrysize": {"0"}, "olchidden": {"false"}, "olcdisabled": {"false"},
}  # fmt: skip
INFORMATIONAL_OLC = {"olcconfigfile", "olcconfigdir"}  # where slapd read its config: no effect
GLOBAL_READ = {
    "olcditcontentrules",  # slaptest puts slapd.conf's own ditcontentrule lines here
    "olcargsfile", "olcpidfile", "olcloglevel", "olcidletimeout", "olcthreads", "olctoolthreads", "olcserverid",
    "olctlscertificatefile", "olctlscertificatekeyfile", "olctlscacertificatefile", "olctlscacertificatepath",
    "olctlsverifyclient", "olctlsprotocolmin", "olctlsciphersuite", "olcallows", "olcdisallows", "olcrequires",
    "olcrestrict", "olcauthzregexp", "olcreferral", "olcsecurity", "olclocalssf", "olcsockbufmaxincoming",
    "olcsockbufmaxincomingauth", "olcmaxfilterdepth", "olcpasswordcryptsaltformat", "olcauthzpolicy",
    "olcdefaultsearchbase", "olcreadonly", "olcsizelimit", "olctimelimit", "olcrootdse",
}  # fmt: skip
FRONTEND_READ = {"olcdatabase", "olcaccess", "olcsizelimit", "olctimelimit", "olcpasswordhash", "olcrequires",
                 "olcrestrict", "olcsecurity", "olclastbind", "olcreadonly"}  # fmt: skip
DATABASE_READ = {
    "olcdatabase", "olcsuffix", "olcrootdn", "olcrootpw", "olcdbdirectory", "olcdbmaxsize", "olcdbindex",
    "olcaccess", "olclimits", "olcsyncrepl", "olcupdateref", "olcupdatedn", "olcmultiprovider", "olcreadonly",
    "olcsizelimit", "olctimelimit", "olcrequires", "olcrestrict", "olcsecurity", "olclastbind", "olcaddcontentacl",
    "olcsubordinate",
}  # fmt: skip
OVERLAY_READ = {"olcoverlay", *OVERLAY_SETTINGS}
MODULE_READ = {"olcmodulepath", "olcmoduleload"}


def check_supported(entry: Entry, read: set[str], *, database: bool = False) -> None:
    """Refuse an olc* attribute pyldapd would otherwise keep without acting on it (slapd's result 80)."""
    for key, attribute in entry.attrs.items():
        if not key.startswith("olc") or key in read or key in TUNING_OLC or key in DELEGATED_OLC:
            continue
        if key in INFORMATIONAL_OLC:
            continue
        allowed = DEFAULT_OLC.get(key)
        if key == "olcmonitoring" and database:
            allowed = {"true"}  # cn=Monitor always shows the data databases
        if allowed is not None and all(
            v.decode("utf-8", "replace").lower() in allowed for v in attribute.values
        ):
            continue
        raise ConfigValueError(f"<{attribute.name}> not supported by pyldapd")


def keyword_values(
    entry: Entry, name: str, allowed: tuple[str, ...], *, extended_oid: bool = False
) -> list[str]:
    words = [word for value in values(entry, name) for word in value.split()]
    try:
        return parse_keywords(words, allowed, extended_oid=extended_oid)
    except ValueError:
        raise ConfigValueError(f"<{name}> unknown feature") from None


def words_keeping_escapes(text: str) -> list[str]:
    """Whitespace-separated words, double quotes grouping, backslashes kept: slapd reads an olcAuthzRegexp
    value so (`gidnumber=0\\+uidnumber=0,...` keeps its `\\+`), where slapd.conf's reader removes one level."""
    return [quoted or bare for quoted, bare in re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', text)]


def authz_rules(entry: Entry) -> list[tuple[str, str]]:
    rules = []
    for text in ordered_texts(entry, "olcAuthzRegexp"):
        try:
            words = words_keeping_escapes(text)
            if len(words) != 2:
                raise ValueError(text)
            re.compile(words[0])
        except (ValueError, re.error):
            raise ConfigValueError(f'<olcAuthzRegexp> invalid value "{text}"') from None
        rules.append((words[0], words[1]))
    return rules


def security_of(entry: Entry) -> SecurityFactors:
    words = [word for value in values(entry, "olcSecurity") for word in value.split()]
    try:
        return SecurityFactors.parse(words)
    except ValueError:
        raise ConfigValueError("<olcSecurity> unknown factor") from None


# 2.4's database classes, kept for configs written for it: the same LMDB backend here.
EXTRA_DEFINITIONS = """
objectclass ( 2.25.23394782990751888070443023800080686380.100.1 NAME 'olcHdbConfig' SUP olcMdbConfig STRUCTURAL )
objectclass ( 2.25.23394782990751888070443023800080686380.100.2 NAME 'olcBdbConfig' SUP olcMdbConfig STRUCTURAL )
"""


@functools.cache
def olc_schema_text() -> str:
    """slapd-config(5)'s definitions, read once (before a chroot: service.preload_for_sandbox)."""
    return resources.files("pyldapd.config").joinpath("olc.schema").read_text()


@functools.cache
def _config_schema() -> Schema:
    schema = Schema.default()
    schema.load_text(olc_schema_text(), "olc.schema")
    schema.load_text(EXTRA_DEFINITIONS, "pyldapd")
    return schema


def config_schema() -> Schema:
    """The schema of the cn=config tree: the standard schemas plus slapd-config(5)'s olc* types and classes."""
    return _config_schema()


def strip_order(value: str) -> str:
    return ORDER_PREFIX.sub("", value, count=1)


def order_of(value: str) -> int | None:
    match = ORDER_PREFIX.match(value)
    return int(match.group(1)) if match else None


def canonical_name(schema: Schema, description: str) -> str:
    alias = ALIASES.get(description.lower())
    if alias is not None:
        return alias
    at = schema.attribute_type(description)
    return at.name if at is not None else description


def is_ordered(schema: Schema, description: str) -> bool:
    at = schema.attribute_type(description)
    return at is not None and any(name.upper() == "X-ORDERED" and "VALUES" in [v.upper() for v in values]
                                  for name, values in getattr(at, "extensions", ()))  # fmt: skip


def number_values(values: list[bytes]) -> list[bytes]:
    """X-ORDERED 'VALUES': every value carries its position as `{n}`."""
    return [f"{{{i}}}{strip_order(v.decode())}".encode() for i, v in enumerate(values)]


def make_entry(dn: str, attributes: list[tuple[str, list[str | bytes]]]) -> Entry:
    schema = config_schema()
    entry = Entry(dn)
    for name, values in attributes:
        encoded = [v.encode() if isinstance(v, str) else v for v in values]
        if not encoded:
            continue
        key = schema.attribute_key(name)
        if key in entry.attrs:
            entry.attrs[key].values.extend(encoded)
        else:
            entry.attrs[key] = Attribute(name, encoded)
    return entry


def values(entry: Entry, name: str) -> list[str]:
    return [v.decode("utf-8", "replace") for v in entry.get(config_schema().attribute_key(name))]


def first(entry: Entry, name: str, default: str = "") -> str:
    found = values(entry, name)
    return found[0] if found else default


def truth(value: str) -> bool:
    return value.strip().upper() in ("TRUE", "ON", "YES", "1")


# -- model -> entries ---------------------------------------------------------------------------------------


def schema_entries(definitions: list[tuple[str, str]]) -> list[Entry]:
    """One cn={n}name entry per schema file, its definitions as numbered olcAttributeTypes/olcObjectClasses."""
    groups: dict[str, dict[str, list[str]]] = {}
    for source, text in definitions:
        name = Path(source.rsplit(":", 1)[0]).stem
        words = text.strip().split(None, 1)  # the keyword may be followed by a tab (Debian's schema files)
        keyword, body = words[0], words[1] if len(words) > 1 else ""
        kind = keyword.lower()
        group = groups.setdefault(name, {"olcObjectIdentifier": [], "olcAttributeTypes": [],
                                         "olcObjectClasses": [], "olcDitContentRules": []})  # fmt: skip
        if kind.startswith("attributetype"):
            group["olcAttributeTypes"].append(body.strip())
        elif kind.startswith("objectclass"):
            group["olcObjectClasses"].append(body.strip())
        elif kind.startswith("ditcontentrule"):
            group["olcDitContentRules"].append(body.strip())
        elif kind == "objectidentifier":
            group["olcObjectIdentifier"].append(body.strip())
    entries = []
    for index, (name, group) in enumerate(groups.items()):
        attributes: list[tuple[str, list[str | bytes]]] = [("objectClass", ["olcSchemaConfig"]),
                                                           ("cn", [f"{{{index}}}{name}"])]  # fmt: skip
        for attr, items in group.items():
            attributes.append((attr, [f"{{{i}}}{item}" for i, item in enumerate(items)]))
        entries.append(make_entry(f"cn={{{index}}}{name},{SCHEMA_DN}", attributes))
    return entries


def shipped_schema_definitions() -> list[tuple[str, str]]:
    """pyldapd's own core, cosine, nis and inetorgperson files, as (source, definition) pairs."""
    out: list[tuple[str, str]] = []
    folder = resources.files("pyldapd.model").joinpath("schema_files")
    for name in ("core", "cosine", "nis", "inetorgperson"):
        text = folder.joinpath(f"{name}.schema").read_text()
        statement: list[str] = []
        for line in text.splitlines() + [""]:
            if line.startswith("#"):
                continue
            if line[:1].isspace() and statement:
                statement.append(line.strip())
                continue
            if statement:
                out.append((f"{name}.schema", " ".join(statement)))
            statement = [line.strip()] if line.strip() else []
    return out


def level_words(level: int) -> list[str]:
    if level == 0:
        return ["none"]
    names = [
        name for name, bit in LOG_LEVELS.items() if bit > 0 and bit != LOG_LEVELS["none"] and level & bit
    ]
    return names or [str(level)]


def limits_of(config: ServerConfig, db: DatabaseConfig | None) -> LimitSet:
    """The limits a database (None: the frontend) has without `limits` lines, as slapd holds them."""
    from types import SimpleNamespace

    from pyldapd.server.searchlimits import database_defaults

    backend = SimpleNamespace(config=db) if db is not None else None
    return dataclasses.replace(database_defaults(SimpleNamespace(config=config), backend))  # shared: a copy


def limit_text(kind: str, lim: LimitSet, frontend: LimitSet | None) -> list[str]:
    """olcSizeLimit/olcTimeLimit as slapd writes them (limits_unparse_one): each specifier that differs from
    the defaults, the soft one left out of a database when it is the frontend's; no value when nothing is set."""

    def number(n: int, names: dict[int, str]) -> str:
        return names.get(n, str(n)) + " "

    unlimited = {-1: "unlimited"}
    out = ""
    if kind == "size":
        hard = lim.size_hard
        if lim.size_soft != 500 and not (frontend is not None and lim.size_soft == frontend.size_soft):
            out += (" size.soft=" if hard else "") + number(lim.size_soft, unlimited)
        if hard:
            out += " size.hard=" + number(hard, unlimited)
        if lim.unchecked != -1:
            out += " size.unchecked=" + number(lim.unchecked, {0: "disabled"})
        if lim.paged_hide:
            out += " size.pr=noEstimate "
        if lim.paged:
            out += " size.pr=" + number(lim.paged, unlimited)
        if lim.paged_total:
            out += " size.prtotal=" + number(lim.paged_total, {-1: "unlimited", -2: "disabled"})
    else:
        hard = lim.time_hard
        if lim.time_soft != 3600 and not (frontend is not None and lim.time_soft == frontend.time_soft):
            out += (" time.soft=" if hard else "") + number(lim.time_soft, unlimited)
        if hard:
            out += " time.hard=" + number(hard, unlimited)
    return [out[:-1]] if out else []


def parse_limit_text(attribute: str, text: str, source: str) -> tuple[int | None, list[str]]:
    """An olcSizeLimit/olcTimeLimit value read as its sizelimit/timelimit line: (soft limit or None, words)."""
    from pyldapd.config.slapdconf import ConfigError, Directive, parse_size_limit

    name = "sizelimit" if attribute == "olcSizeLimit" else "timelimit"
    words = text.split()
    try:
        return parse_size_limit(Directive([name, *words], text, source, 0)), words
    except ConfigError as exc:
        raise ConfigValueError(f"<{attribute}> {str(exc).split(': line 0: ', 1)[-1]}") from None


def read_limits(entry: Entry, target: ServerConfig | DatabaseConfig) -> None:
    for attribute, name in (("olcSizeLimit", "sizelimit"), ("olcTimeLimit", "timelimit")):
        text = first(entry, attribute)
        if not text:
            continue
        soft, words = parse_limit_text(attribute, text, entry.dn)
        if soft is not None:
            setattr(target, name, soft)
        setattr(target, f"{name}_words", words)


def database_entry(index: int, db: DatabaseConfig, config: ServerConfig | None = None) -> Entry:
    kind = db.declared_type if db.declared_type in DATA_TYPES else "mdb"
    attributes: list[tuple[str, list[str | bytes]]] = [
        ("objectClass", ["olcDatabaseConfig", DATA_TYPES[kind]]),
        ("olcDatabase", [f"{{{index}}}{kind}"]),
        ("olcDbDirectory", [db.directory]),
        ("olcSuffix", list(db.suffixes)),
        ("olcSubordinate", [db.subordinate] if db.subordinate else []),
        ("olcAccess", [f"{{{i}}}{text}" for i, text in enumerate(db.access)]),
        ("olcLimits", [f"{{{i}}}{text}" for i, text in enumerate(db.limits)]),
        ("olcRootDN", [db.rootdn] if db.rootdn else []),
        ("olcRootPW", [db.rootpw] if db.rootpw else []),
        ("olcSyncrepl", [f"{{{i}}}{text}" for i, text in enumerate(db.syncrepl)]),
        ("olcUpdateRef", list(db.updateref)),
        ("olcMultiProvider", ["TRUE"] if db.multiprovider else []),
        ("olcReadOnly", ["TRUE"] if db.readonly else []),
        (
            "olcDbIndex",
            [f"{attr} {','.join(sorted(kinds))}" for attr, kinds in db.indexes.items()]
            if kind != "ldif"
            else [],
        ),
        ("olcDbMaxSize", [str(db.maxsize)] if db.maxsize and kind != "ldif" else []),
        ("olcRequires", list(db.requires)),
        ("olcRestrict", list(db.restrict)),
        ("olcSecurity", db.security.words()),
        ("olcUpdateDN", [db.updatedn] if db.updatedn else []),
        ("olcLastBind", ["TRUE"] if db.lastbind else []),
        ("olcAddContentAcl", ["TRUE"] if db.add_content_acl else []),
    ]
    if config is None:
        attributes += [
            ("olcSizeLimit", [str(db.sizelimit)] if db.sizelimit is not None else []),
            ("olcTimeLimit", [str(db.timelimit)] if db.timelimit is not None else []),
        ]
    else:  # every specifier, as slaptest writes them
        lim, frontend = limits_of(config, db), limits_of(config, None)
        attributes += [("olcSizeLimit", limit_text("size", lim, frontend)),
                       ("olcTimeLimit", limit_text("time", lim, frontend))]  # fmt: skip
    return make_entry(f"olcDatabase={{{index}}}{kind},{CONFIG_DN}", attributes)


def overlay_entry(db_dn: str, index: int, overlay: OverlayConfig) -> Entry:
    classes = ["olcOverlayConfig"] + (
        [OVERLAY_CLASSES[overlay.name]] if overlay.name in OVERLAY_CLASSES else []
    )
    attributes: list[tuple[str, list[str | bytes]]] = [("objectClass", classes),
                                                       ("olcOverlay", [f"{{{index}}}{overlay.name}"])]  # fmt: skip
    reverse = {v: k for k, v in OVERLAY_SETTINGS.items()}
    schema = config_schema()
    if overlay.name == "accesslog":  # slapd's canonical values, in its attribute order
        from pyldapd.overlays.accesslog import olc_values

        written = olc_values(overlay.settings)
        for key, name in ACCESSLOG_SETTINGS.items():
            if name in written:
                attributes.append((schema.attribute_type(key).name, list(written[name])))
        return make_entry(f"olcOverlay={{{index}}}{overlay.name},{db_dn}", attributes)
    order = list(
        OVERLAY_SETTINGS
    )  # slapd writes them in its config table's order (syncprov: as listed above)
    known = [(reverse[name.lower()], args) for name, args in overlay.settings if name.lower() in reverse]
    for key, args in sorted(known, key=lambda item: order.index(item[0])):
        attributes.append((schema.attribute_type(key).name, [" ".join(args).strip('"')]))
    return make_entry(f"olcOverlay={{{index}}}{overlay.name},{db_dn}", attributes)


def gentlehup_value(config: ServerConfig) -> str:
    """olcGentleHUP from slapd.conf's last `gentlehup on|off` ("" when not set)."""
    values = [args for name, args in config.extra if name == "gentlehup" and args]
    if not values:
        return ""
    return "TRUE" if values[-1][0].lower() in ("on", "true", "yes") else "FALSE"


DEBIAN_MODULE_PATH = "/usr/lib/ldap"
# overlays Debian's slapd builds as modules of the same name
OVERLAY_MODULES = frozenset(
    {"syncprov", "accesslog", "auditlog", "constraint", "dynlist", "memberof", "ppolicy", "refint", "unique"}
)


def needed_modules(config: ServerConfig) -> list[str]:
    """The modules a slapd.d must load for Debian's slapd to read it: those the configuration loads, and the
    ones its database types and overlays live in (Debian builds back_mdb and the overlays as modules; a
    slapd.d without them is refused at the first olcDb* attribute)."""
    modules = list(config.modules)
    have = {os.path.basename(m).split(".")[0].lower() for m in modules}
    wanted: list[str] = []
    for db in config.data_databases():
        if db.declared_type != "ldif":  # back-ldif is built into slapd (its cn=config is stored with it)
            wanted.append("back_mdb")
        wanted += [o.name for o in db.overlays if o.name in OVERLAY_MODULES]
    for name in wanted:
        if name not in have:
            have.add(name)
            modules.append(name)
    return modules


def module_entry_for(config: ServerConfig, current: Entry | None) -> Entry | None:
    """The cn=module{0} entry a slapd.d needs after a cn=config change (an overlay or database added): the
    current one with the missing modules appended, or None when nothing is missing."""
    modules = needed_modules(config)
    loaded = [strip_order(v) for v in values(current, "olcModuleLoad")] if current is not None else []
    have = {os.path.basename(m).split(".")[0].lower() for m in loaded}
    missing = [m for m in modules if os.path.basename(m).split(".")[0].lower() not in have]
    if not missing:
        return None
    if current is None:
        return make_entry(f"cn=module{{0}},{CONFIG_DN}", [
            ("objectClass", ["olcModuleList"]), ("cn", ["module{0}"]),
            ("olcModulePath", config.module_paths[:1] or [DEBIAN_MODULE_PATH]),
            ("olcModuleLoad", [f"{{{i}}}{m}" for i, m in enumerate(missing)])])  # fmt: skip
    entry = current.copy()
    key = config_schema().attribute_key("olcModuleLoad")
    added = [f"{{{len(loaded) + i}}}{m}".encode() for i, m in enumerate(missing)]
    entry.put(key, "olcModuleLoad", [*current.get(key), *added])
    return entry


def entries_from_config(config: ServerConfig, *, include_shipped_schema: bool = True) -> list[Entry]:
    """The cn=config tree of a configuration, in slapd's order (parents first)."""
    defaults = ServerConfig()
    global_attrs: list[tuple[str, list[str | bytes]]] = [
        ("objectClass", ["olcGlobal"]),
        ("cn", ["config"]),
        ("olcArgsFile", [config.argsfile] if config.argsfile else []),
        ("olcPidFile", [config.pidfile] if config.pidfile else []),
        ("olcLogLevel", level_words(config.loglevel)),
        ("olcLogFile", [config.logfile] if config.logfile else []),
        ("olcLogFileOnly", ["TRUE"] if config.logfile_only else []),  # OpenLDAP 2.6's
        ("olcLogFileRotate", [" ".join(map(str, config.logfile_rotate))] if config.logfile_rotate else []),
        ("olcIdleTimeout", [str(config.idletimeout)] if config.idletimeout else []),
        ("olcWriteTimeout", [str(config.writetimeout)] if config.writetimeout else []),
        ("olcConnMaxPending", [str(config.conn_max_pending)] if config.conn_max_pending != 100 else []),
        (
            "olcConnMaxPendingAuth",
            [str(config.conn_max_pending_auth)] if config.conn_max_pending_auth != 1000 else [],
        ),  # fmt: skip
        ("olcThreads", [str(config.threads)] if config.threads else []),
        ("olcToolThreads", [str(config.tool_threads)] if config.tool_threads else []),
        ("olcGentleHUP", [gentlehup_value(config)] if gentlehup_value(config) else []),
        ("olcServerID", [f"{sid} {url}".strip() for sid, url in config.server_ids]),
        ("olcTLSCertificateFile", [config.tls.certificate_file] if config.tls.certificate_file else []),
        (
            "olcTLSCertificateKeyFile",
            [config.tls.certificate_key_file] if config.tls.certificate_key_file else [],
        ),
        (
            "olcTLSCACertificateFile",
            [config.tls.ca_certificate_file] if config.tls.ca_certificate_file else [],
        ),
        ("olcTLSVerifyClient", [config.tls.verify_client] if config.tls.certificate_file else []),
        ("olcAllows", list(config.allows)),
        ("olcDisallows", list(config.disallows)),
        ("olcRequires", list(config.requires)),
        ("olcRestrict", list(config.restrict)),
        ("olcAuthzRegexp", [f'{{{i}}}"{m}" "{r}"' for i, (m, r) in enumerate(config.authz_regexp)]),
        ("olcReferral", [config.referral] if config.referral else []),
        ("olcDefaultSearchBase", [config.default_search_base] if config.default_search_base else []),
        ("olcRootDSE", list(config.rootdse_files)),
        ("olcReadOnly", ["TRUE"] if config.readonly else []),
        ("olcAuthzPolicy", [config.authz_policy] if config.authz_policy != "none" else []),
        ("olcSecurity", config.security.words()),
        # slaptest writes the global limits here as well as in the frontend's entry
        ("olcSizeLimit", limit_text("size", limits_of(config, None), None)),
        ("olcTimeLimit", limit_text("time", limits_of(config, None), None)),
        # settings that apply_config carries over at run time: kept when a slapd.conf's cn=config is served
        ("olcLocalSSF", [str(config.local_ssf)] if config.local_ssf != defaults.local_ssf else []),
        ("olcSockbufMaxIncoming", [str(config.max_pdu)] if config.max_pdu != defaults.max_pdu else []),
        ("olcSockbufMaxIncomingAuth", [str(config.max_pdu_auth)] if config.max_pdu_auth != defaults.max_pdu_auth
         else []),
        ("olcMaxFilterDepth", [str(config.max_filter_depth)] if config.max_filter_depth != defaults.max_filter_depth
         else []),
        ("olcPasswordCryptSaltFormat", [config.password_crypt_salt_format] if config.password_crypt_salt_format
         else []),
    ]  # fmt: skip
    entries = [make_entry(CONFIG_DN, global_attrs)]
    modules = needed_modules(config)
    if modules:
        entries.append(make_entry(f"cn=module{{0}},{CONFIG_DN}", [
            ("objectClass", ["olcModuleList"]), ("cn", ["module{0}"]),
            ("olcModulePath", config.module_paths[:1] or [DEBIAN_MODULE_PATH]),
            ("olcModuleLoad", [f"{{{i}}}{m}" for i, m in enumerate(modules)])]))  # fmt: skip
    entries.append(make_entry(SCHEMA_DN, [("objectClass", ["olcSchemaConfig"]), ("cn", ["schema"])]))
    definitions = list(config.schema_definitions)
    if include_shipped_schema and not definitions:
        definitions = shipped_schema_definitions()
    entries += schema_entries(definitions)
    frontend = [("objectClass", ["olcDatabaseConfig", "olcFrontendConfig"]), ("olcDatabase", ["{-1}frontend"]),
                ("olcAccess", [f"{{{i}}}{text}" for i, text in enumerate(config.access)]),
                ("olcSizeLimit", limit_text("size", limits_of(config, None), None)),
                ("olcTimeLimit", limit_text("time", limits_of(config, None), None)),
                ("olcPasswordHash", list(config.password_hash))]  # fmt: skip
    entries.append(make_entry(f"olcDatabase={{-1}}frontend,{CONFIG_DN}", frontend))
    root_access = "to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by * break"
    # slapd.conf's `database config` section: its rootdn (slapd's default: cn=config) and rootpw
    config_db = next((db for db in config.databases if db.type == "config"), None)
    config_rootdn = (config_db.rootdn or "cn=config") if config_db is not None else "cn=admin,cn=config"
    config_rootpw = [config_db.rootpw] if config_db is not None and config_db.rootpw else []
    entries.append(make_entry(f"olcDatabase={{0}}config,{CONFIG_DN}", [
        ("objectClass", ["olcDatabaseConfig"]), ("olcDatabase", ["{0}config"]),
        ("olcAccess", ["{0}" + root_access]), ("olcRootDN", [config_rootdn]),
        ("olcRootPW", config_rootpw)]))  # fmt: skip
    entries.append(make_entry(f"olcDatabase={{1}}monitor,{CONFIG_DN}", [
        ("objectClass", ["olcDatabaseConfig", "olcMonitorConfig"]), ("olcDatabase", ["{1}monitor"])]))  # fmt: skip
    for offset, db in enumerate(config.data_databases()):
        entry = database_entry(offset + 2, db, config)
        entries.append(entry)
        for index, overlay in enumerate(db.overlays):
            entries.append(overlay_entry(entry.dn, index, overlay))
    return entries


# -- entries -> model ---------------------------------------------------------------------------------------


def parse_index_value(text: str, indexes: dict[str, set[str]]) -> None:
    words = text.split()
    if not words or len(words) > 2:
        raise ConfigValueError(f'<olcDbIndex> invalid value "{text}"')
    kinds = {"eq"} if len(words) == 1 else {k.strip().lower() for k in words[1].split(",") if k.strip()}
    kinds = {"sub" if k.startswith("sub") else k for k in kinds} - {"nolang", "nosubtypes", "notags"}
    unknown = kinds - {"eq", "pres", "sub", "approx"}
    if unknown:
        raise ConfigValueError(f'index type "{sorted(unknown)[0]}" undefined')
    for attr in words[0].split(","):
        name = attr.strip()
        if not name:
            continue
        if any(existing.lower() == name.lower() for existing in indexes):
            raise ConfigValueError(f'<olcDbIndex> duplicate index definition for attr "{name}"')
        indexes[name] = set(kinds)


def parse_server_id(text: str) -> tuple[int, str]:
    words = strip_order(text).split()
    if not 1 <= len(words) <= 2:
        raise ConfigValueError("<olcServerID> illegal server ID")
    try:
        number = int(words[0], 0 if words[0].lower().startswith("0x") else 10)
    except ValueError:
        raise ConfigValueError("<olcServerID> illegal server ID") from None
    if not 0 <= number <= 4095:
        raise ConfigValueError("<olcServerID> illegal server ID")
    return number, words[1] if len(words) == 2 else ""


def ordered_texts(entry: Entry, name: str) -> list[str]:
    items = values(entry, name)
    items.sort(key=lambda v: order_of(v) if order_of(v) is not None else 1 << 30)
    return [strip_order(v) for v in items]


def database_from_entry(entry: Entry, children: list[Entry]) -> DatabaseConfig:
    name = strip_order(first(entry, "olcDatabase")).lower()
    # slapd writes olcMonitoring: FALSE for the config and monitor databases (they are not monitored)
    check_supported(entry, DATABASE_READ, database=name not in ("config", "monitor"))
    db = DatabaseConfig(type="mdb", declared_type=name, source=entry.dn)
    db.requires = keyword_values(entry, "olcRequires", REQUIRE_WORDS)
    db.restrict = keyword_values(entry, "olcRestrict", RESTRICT_WORDS, extended_oid=True)
    db.security = security_of(entry)
    db.updatedn = first(entry, "olcUpdateDN")
    db.lastbind = truth(first(entry, "olcLastBind", "FALSE"))
    db.add_content_acl = truth(first(entry, "olcAddContentAcl", "FALSE"))
    db.suffixes = values(entry, "olcSuffix")
    db.rootdn = first(entry, "olcRootDN")
    db.rootpw = first(entry, "olcRootPW").encode()
    db.directory = first(entry, "olcDbDirectory")
    if (
        db.directory and name != "ldif" and not os.path.isdir(db.directory)
    ):  # slapd refuses it (never makes one)
        try:
            os.stat(db.directory)
            reason = "Not a directory"
        except OSError as exc:
            reason = exc.strerror or str(exc)
        raise ConfigValueError(
            f"config error processing {entry.dn}: olcDbDirectory: value #0: invalid path: {reason}"
        )
    db.maxsize = int(first(entry, "olcDbMaxSize", "0") or 0)
    for text in values(entry, "olcDbIndex"):
        parse_index_value(text, db.indexes)
    db.access = ordered_texts(entry, "olcAccess")
    db.access_sources = [f"{entry.dn}: olcAccess {{{i}}}" for i in range(len(db.access))]
    db.limits = ordered_texts(entry, "olcLimits")
    db.limits_sources = [f"{entry.dn}: olcLimits {{{i}}}" for i in range(len(db.limits))]
    db.syncrepl = ordered_texts(entry, "olcSyncrepl")
    db.updateref = values(entry, "olcUpdateRef")
    db.multiprovider = truth(first(entry, "olcMultiProvider", "FALSE"))
    db.readonly = truth(first(entry, "olcReadOnly", "FALSE"))
    subordinate = first(entry, "olcSubordinate").lower()
    if subordinate not in ("", "false", "true", "advertise"):  # slapd's config_subordinate
        raise ConfigValueError('<olcSubordinate> subordinate must be "TRUE", "FALSE" or "advertise"')
    db.subordinate = {"true": "TRUE", "advertise": "advertise"}.get(subordinate, "")
    if db.subordinate and not db.suffixes:
        raise ConfigValueError("<olcSubordinate> subordinate configuration needs a suffix")
    read_limits(entry, db)
    for child in sorted(children, key=lambda e: order_of(first(e, "olcOverlay")) or 0):
        check_supported(child, OVERLAY_READ)
        overlay = OverlayConfig(strip_order(first(child, "olcOverlay")).lower())
        for attribute in child.attrs.values():
            setting = OVERLAY_SETTINGS.get(attribute.name.lower())
            if setting is not None:
                for value in attribute.values:
                    text = value.decode()
                    # a DN is one argument, spaces and all (slapd's ARG_DN)
                    args = [text] if setting == "syncprov-sessionlog-source" else text.split()
                    overlay.settings.append((setting, args))
        if overlay.name == "glue" and db.subordinate:  # slapd's glue_db_init
            raise ConfigValueError(
                f"glue: backend {db.suffix} is already subordinate, cannot have glue overlay!"
            )
        if overlay.name == "syncprov":
            from pyldapd.replication.provider import ProviderSettings, SyncprovConfigError

            try:  # what slapd refuses when it reads its slapd.d, in its words
                ProviderSettings.from_overlay(overlay.settings)
            except SyncprovConfigError as exc:
                key = {v: k for k, v in SYNCPROV_SETTINGS.items()}.get(exc.directive.lower(), exc.directive)
                at = config_schema().attribute_type(key)
                raise ConfigValueError(
                    f"config error processing {child.dn}: {exc.text_for(at.name if at else key)}"
                ) from None
        db.overlays.append(overlay)
    from pyldapd.server.glue import unsupported_above_glue

    refusal = unsupported_above_glue(db)
    if refusal is not None:
        raise ConfigValueError(refusal)
    return db


def config_database_settings(entry: Entry, children: list[Entry]) -> DatabaseConfig:
    """olcDatabase={0}config's replication settings (replication/configsync.py): olcSyncrepl,
    olcMultiProvider, olcUpdateRef, olcUpdateDN and its overlays, of which pyldapd runs syncprov and accesslog
    there."""
    for child in children:
        if strip_order(first(child, "olcOverlay")).lower() not in ("syncprov", "accesslog"):
            raise ConfigValueError(
                f"{child.dn}: only the syncprov and accesslog overlays are supported on the config database"
            )
    db = database_from_entry(entry, children)
    db.type = "config"
    db.suffixes = ["cn=config"]
    if not db.syncrepl and not db.updatedn:  # slapd's checks, also when it reads a slapd.d
        if db.multiprovider:
            raise ConfigValueError(
                f"config error processing {entry.dn}: <olcMultiProvider> database is not a shadow"
            )
        if db.updateref:
            raise ConfigValueError(
                f"config error processing {entry.dn}: <olcUpdateRef> must appear after syncrepl or updatedn"
            )
    return db


def config_from_entries(entries: list[Entry]) -> ServerConfig:
    config = ServerConfig()
    by_parent: dict[str, list[Entry]] = {}
    for entry in entries:
        by_parent.setdefault(entry.dn.split(",", 1)[1].lower() if "," in entry.dn else "", []).append(entry)
    root = next((e for e in entries if e.dn.lower() == CONFIG_DN), None)
    if root is None:
        raise ValueError("no cn=config entry")
    check_supported(root, GLOBAL_READ)
    config.allows = keyword_values(root, "olcAllows", ALLOW_WORDS)
    config.disallows = keyword_values(root, "olcDisallows", DISALLOW_WORDS)
    config.requires = keyword_values(root, "olcRequires", REQUIRE_WORDS)
    config.restrict = keyword_values(root, "olcRestrict", RESTRICT_WORDS, extended_oid=True)
    config.authz_regexp = authz_rules(root)
    config.referral = first(root, "olcReferral")
    config.default_search_base = first(root, "olcDefaultSearchBase")
    config.rootdse_files = values(root, "olcRootDSE")
    config.readonly = truth(first(root, "olcReadOnly", "FALSE"))
    policy = first(root, "olcAuthzPolicy", "none").lower()
    config.authz_policy = AUTHZ_POLICY_ALIASES.get(policy, policy)
    if config.authz_policy not in AUTHZ_POLICIES:
        raise ConfigValueError("<olcAuthzPolicy> unknown policy")
    config.security = security_of(root)
    for attr, name in (("local_ssf", "olcLocalSSF"), ("max_pdu", "olcSockbufMaxIncoming"),
                       ("max_pdu_auth", "olcSockbufMaxIncomingAuth"), ("max_filter_depth", "olcMaxFilterDepth")):  # fmt: skip
        if first(root, name):
            setattr(config, attr, int(first(root, name)))
    config.password_crypt_salt_format = first(root, "olcPasswordCryptSaltFormat")
    config.argsfile = first(root, "olcArgsFile")
    read_limits(root, config)  # the frontend's entry, read later, has the last word
    config.pidfile = first(root, "olcPidFile")
    config.logfile = first(root, "olcLogFile")
    config.logfile_only = first(root, "olcLogFileOnly").upper() == "TRUE"
    if first(root, "olcLogFileRotate"):
        config.logfile_rotate = parse_logfile_rotate(
            first(root, "olcLogFileRotate").split(),
            lambda text: ConfigValueError(text.replace("<logfile-rotate>", "<olcLogFileRotate>")),
        )
    levels = [word for value in values(root, "olcLogLevel") for word in value.split()]
    try:
        config.loglevel = parse_log_level(levels) if levels else 0
    except ValueError:
        raise ConfigValueError("<olcLogLevel> unknown level") from None
    config.idletimeout = int(first(root, "olcIdleTimeout", "0") or 0)
    config.writetimeout = int(first(root, "olcWriteTimeout", "0") or 0)
    config.conn_max_pending = int(first(root, "olcConnMaxPending", "100") or 100)
    config.conn_max_pending_auth = int(first(root, "olcConnMaxPendingAuth", "1000") or 1000)
    config.tool_threads = int(first(root, "olcToolThreads", "0") or 0)
    config.threads = int(first(root, "olcThreads", "0") or 0)  # worker processes (server/workers.py)
    if config.threads < 0 or (first(root, "olcThreads") and config.threads < 1):
        raise ConfigValueError(f"<olcThreads> threads={config.threads} smaller than minimum value 1")
    if first(root, "olcGentleHUP"):  # kept as slapd.conf's `gentlehup` is, where the server reads it
        config.extra.append(("gentlehup", ["on" if truth(first(root, "olcGentleHUP")) else "off"]))
    config.server_ids = [parse_server_id(v) for v in values(root, "olcServerID")]
    tls = config.tls
    tls.certificate_file = first(root, "olcTLSCertificateFile")
    tls.certificate_key_file = first(root, "olcTLSCertificateKeyFile")
    tls.ca_certificate_file = first(root, "olcTLSCACertificateFile")
    tls.ca_certificate_path = first(root, "olcTLSCACertificatePath")
    tls.verify_client = first(root, "olcTLSVerifyClient", "never").lower()
    tls.protocol_min = first(root, "olcTLSProtocolMin")
    tls.cipher_suite = first(root, "olcTLSCipherSuite")
    # slaptest writes slapd.conf's own ditcontentrule lines here; slapd reads them before cn=schema's children
    # (so a rule for a class those define stops slapd: "ObjectClass not found"), and so does pyldapd
    for text in ordered_texts(root, "olcDitContentRules"):
        config.schema_definitions.append(("cn=config", f"ditcontentrule {text}"))
    for entry in by_parent.get(SCHEMA_DN, []):
        check_supported(entry, set(SCHEMA_ELEMENTS))
        source = strip_order(first(entry, "cn"))
        for name, keyword in (("olcObjectIdentifier", "objectidentifier"), ("olcAttributeTypes", "attributetype"),
                              ("olcLdapSyntaxes", "ldapsyntax"), ("olcObjectClasses", "objectclass"),
                              ("olcDitContentRules", "ditcontentrule")):  # fmt: skip
            for text in ordered_texts(entry, name):
                config.schema_definitions.append((f"{source}.schema", f"{keyword} {text}"))
    for module in by_parent.get(CONFIG_DN, []):
        if module.dn.lower().startswith("cn=module"):
            check_supported(module, MODULE_READ)
            config.module_paths += values(module, "olcModulePath")
            config.modules += [strip_order(v) for v in values(module, "olcModuleLoad")]
    databases = sorted((e for e in by_parent.get(CONFIG_DN, []) if e.dn.lower().startswith("olcdatabase=")),
                       key=lambda e: order_of(first(e, "olcDatabase")) or 0)  # fmt: skip
    for entry in databases:
        name = strip_order(first(entry, "olcDatabase")).lower()
        if name == "frontend":
            check_supported(entry, FRONTEND_READ)
            # slapd keeps the global require/restrict/security on the frontend: both entries show them
            config.requires = sorted(
                set(config.requires) | set(keyword_values(entry, "olcRequires", REQUIRE_WORDS))
            )
            config.restrict = sorted(set(config.restrict) | set(
                keyword_values(entry, "olcRestrict", RESTRICT_WORDS, extended_oid=True)))  # fmt: skip
            config.readonly = config.readonly or truth(first(entry, "olcReadOnly", "FALSE"))
            frontend_security = security_of(entry)
            if frontend_security.words():
                config.security = frontend_security
            if first(entry, "olcTimeLimit"):
                config.timelimit = int(first(entry, "olcTimeLimit").split("=")[-1].replace("unlimited", "0"))
            config.access = ordered_texts(entry, "olcAccess")
            config.access_sources = [f"{entry.dn}: olcAccess {{{i}}}" for i in range(len(config.access))]
            read_limits(entry, config)
            if values(entry, "olcPasswordHash"):
                from pyldapd.config.slapdconf import scheme_available

                config.password_hash = values(entry, "olcPasswordHash")
                if not all(scheme_available(scheme) for scheme in config.password_hash):
                    raise ConfigValueError("<olcPasswordHash> scheme not available")
        elif name in DATA_TYPES:
            config.databases.append(database_from_entry(entry, by_parent.get(entry.dn.lower(), [])))
        elif name == "config":  # its rules are fixed; its replication is replication/configsync.py's
            config.config_database = config_database_settings(entry, by_parent.get(entry.dn.lower(), []))
        elif name == "monitor":  # its rootdn and access rules govern cn=Monitor (server/monitor.py)
            config.databases.append(database_from_entry(entry, []))
            config.databases[-1].type = "monitor"
    return config


# -- slapd.d ------------------------------------------------------------------------------------------------


def entry_path(directory: Path, dn: str) -> Path:
    """cn=config -> DIR/cn=config.ldif; olcDatabase={1}mdb,cn=config -> DIR/cn=config/olcDatabase={1}mdb.ldif."""
    rdns = split_dn(dn)
    folder = directory
    for rdn in reversed(rdns[1:]):
        folder = folder / rdn
    return folder / f"{rdns[0]}.ldif"


def split_dn(dn: str) -> list[str]:
    parts, current, escaped = [], [], False
    for ch in dn:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == ",":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return parts


# libldap's ldif_must_b64_encode list as slapd sets it: userPassword, and olcRootPW (bconfig.c), always base64
ALWAYS_BASE64 = {"userpassword", "2.5.4.35", "olcrootpw"}


def entry_ldif(entry: Entry) -> str:
    """A slapd.d file as slapd writes it (back-ldif's format): the header with the CRC32 of the rest, the entry
    under its RDN, passwords base64-encoded, one newline at the end."""
    rdn = split_dn(entry.dn)[0]
    lines = [format_line("dn", rdn.encode("utf-8"), 78)]
    for attribute in entry.attrs.values():
        secret = attribute.name.split(";")[0].lower() in ALWAYS_BASE64
        for value in attribute.values:
            if secret:
                lines.append(_fold(f"{attribute.name}:: {base64.b64encode(value).decode('ascii')}", 78))
            else:
                lines.append(format_line(attribute.name, value, 78))
    body = "\n".join(lines) + "\n"
    return HEADER.format(crc=zlib.crc32(body.encode())) + body


def write_slapd_d(directory: str | Path, entries: list[Entry]) -> None:
    root = Path(directory)
    for entry in entries:
        write_file_atomically(entry_path(root, entry.dn), entry_ldif(entry))


def remove_entry_file(directory: str | Path, dn: str) -> None:
    path = entry_path(Path(directory), dn)
    if path.exists():
        path.unlink()
    folder = path.with_suffix("")
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def read_slapd_d(directory: str | Path) -> list[Entry]:
    """Every entry of a slapd.d directory, parents first; the DN of each is rebuilt from its path."""
    root = Path(directory)
    top = root / "cn=config.ldif"
    if not top.exists():
        raise ValueError(f"{directory}: no cn=config.ldif (not a slapd.d directory)")
    entries: list[Entry] = []

    def load(path: Path, parent_dn: str) -> None:
        text = path.read_text(encoding="utf-8")
        records = [r for r in parse_ldif(text) if isinstance(r, LDIFContent)]
        if len(records) != 1:
            raise ValueError(f"{path}: expected one entry")
        rdn = path.stem
        dn = f"{rdn},{parent_dn}" if parent_dn else rdn
        entries.append(make_entry(dn, [(name, list(vals)) for name, vals in records[0].attributes]))
        folder = path.with_suffix("")
        if folder.is_dir():
            for child in sorted(folder.glob("*.ldif"), key=lambda p: (p.stem.split("=")[0], order_of(
                    p.stem.split("=", 1)[1]) or 0, p.stem)):  # fmt: skip
                load(child, dn)

    load(top, "")
    return entries
