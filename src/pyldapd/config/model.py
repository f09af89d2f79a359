"""One configuration model for the whole server, whichever file it was read from.

slapd.conf (and, later, a slapd.d directory) are parsed into these objects; the server only ever reads these.
Directives pyldapd knows but does not act on yet are kept in `extra` so that nothing an admin wrote is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# OpenLDAP's log levels (slapd.conf(5), "loglevel").
LOG_LEVELS: dict[str, int] = {
    "any": -1,
    "trace": 1,
    "packets": 2,
    "args": 4,
    "conns": 8,
    "ber": 16,
    "filter": 32,
    "config": 64,
    "acl": 128,
    "stats": 256,
    "stats2": 512,
    "shell": 1024,
    "parse": 2048,
    "sync": 16384,
    "none": 32768,
}

DEFAULT_MAX_PDU = 262143  # slapd's sockbuf_max_incoming for anonymous sessions
DEFAULT_MAX_PDU_AUTH = 4194303  # slapd's sockbuf_max_incoming_auth


def parse_log_level(words: list[str]) -> int:
    """Combine loglevel words or numbers (decimal or hex) as slapd does."""
    level = 0
    for word in words:
        for part in word.split(","):
            part = part.strip()
            if not part:
                continue
            name = part.lower()
            if name in LOG_LEVELS:
                value = LOG_LEVELS[name]
                if value == LOG_LEVELS["none"]:
                    continue
                level |= value
                continue
            try:
                level |= int(part, 0)
            except ValueError:
                raise ValueError(f"unknown level {part!r}") from None
    return level


def parse_logfile_rotate(words: list[str], error) -> tuple[int, int, int]:
    """OpenLDAP 2.6's `logfile-rotate <max> <Mbytes> <hours>` with slapd's checks and texts: max 1..99, Mbytes
    and hours not both 0. `error(text)` makes the exception to raise (a file:line one for slapd.conf)."""
    if len(words) != 3:
        raise error("<logfile-rotate> usage is logfile-rotate <max> <Mbyte> <hours>")
    values = []
    for what, word in zip(("max", "Mbyte", "hours"), words, strict=True):
        try:
            value = int(word, 0)  # strtoul base 0, as lutil_atoux: 0x.. and 0.. accepted
        except ValueError:
            value = -1
        if value < 0:
            raise error(f'<logfile-rotate> invalid {what} value "{word}"')
        values.append(value)
    keep, mbytes, hours = values
    if not 1 <= keep <= 99:
        raise error(f'<logfile-rotate> invalid max value "{words[0]}" must be 1-99')
    if mbytes == 0 and hours == 0:
        raise error("<logfile-rotate> Mbyte and hours cannot both be zero")
    return keep, mbytes, hours


SECURITY_FACTORS = (
    "ssf", "transport", "tls", "sasl", "update_ssf", "update_transport", "update_tls", "update_sasl",
    "simple_bind",
)  # fmt: skip
TLS_VERIFY_LEVELS = {"never": "never", "allow": "allow", "try": "try", "demand": "demand", "hard": "demand",
                     "true": "demand"}  # fmt: skip


# slapd.conf(5) keywords of allow, disallow, require and restrict (slapd's config.c tables).
ALLOW_WORDS = ("bind_v2", "bind_anon_cred", "bind_anon_dn", "update_anon", "proxy_authz_anon")
DISALLOW_WORDS = ("bind_anon", "bind_simple", "tls_2_anon", "tls_authc", "proxy_authz_non_critical",
                  "dontusecopy_non_critical")  # fmt: skip
REQUIRE_WORDS = ("bind", "ldapv3", "authc", "sasl", "strong", "none")
RESTRICT_WORDS = ("read", "write", "add", "delete", "rename", "modify", "modrdn", "compare", "search", "bind",
                  "extended", "all")  # fmt: skip
AUTHZ_POLICIES = ("none", "from", "to", "any", "all")
# slapd takes "both" for "any" (saslauthz.c) and shows it as "any"
AUTHZ_POLICY_ALIASES = {"both": "any"}
# `restrict extended=<OID>`: the extended operations slapd can restrict one by one
RESTRICTABLE_EXOPS = ("1.3.6.1.4.1.1466.20037", "1.3.6.1.4.1.4203.1.11.1", "1.3.6.1.4.1.4203.1.11.3",
                      "1.3.6.1.1.8")  # fmt: skip


def parse_keywords(words: list[str], allowed: tuple[str, ...], *, extended_oid: bool = False) -> list[str]:
    """Keywords of allow/disallow/require/restrict, lowercased; ValueError names the unknown one.
    `restrict extended=<OID>` restricts one extended operation."""
    result: list[str] = []
    for word in words:
        lower = word.lower()
        if extended_oid and lower.startswith("extended="):
            oid = word.split("=", 1)[1]
            if oid not in RESTRICTABLE_EXOPS:
                raise ValueError(f"unknown feature {word}")
            result.append("extended=" + oid)
            continue
        if lower not in allowed:
            raise ValueError(f"unknown feature {word}")
        if lower == "none":  # slapd: only first, wiping what was set before (require)
            if result:
                raise ValueError(f'"none" (#{words.index(word)}) must be listed first')
            continue
        result.append(lower)
    return result


@dataclass
class SecurityFactors:
    """slapd's `security` directive (olcSecurity): minimum strength factors, 0 = no requirement."""

    ssf: int = 0
    transport: int = 0
    tls: int = 0
    sasl: int = 0
    update_ssf: int = 0
    update_transport: int = 0
    update_tls: int = 0
    update_sasl: int = 0
    simple_bind: int = 0

    @classmethod
    def parse(cls, words: list[str], into: SecurityFactors | None = None) -> SecurityFactors:
        """`ssf=128 simple_bind=64 ...`; ValueError names the word slapd would reject."""
        factors = into if into is not None else cls()
        for word in words:
            name, sep, value = word.partition("=")
            name = name.lower()
            if not sep or name not in SECURITY_FACTORS:
                raise ValueError(f"unknown factor {word!r}")
            try:
                number = int(value, 0)
            except ValueError:
                raise ValueError(f"unable to parse factor {word!r}") from None
            if number < 0:
                raise ValueError(f"unable to parse factor {word!r}")
            setattr(factors, name, number)
        return factors

    def words(self) -> list[str]:
        return [f"{name}={getattr(self, name)}" for name in SECURITY_FACTORS if getattr(self, name)]


@dataclass
class TLSConfig:
    """slapd's global TLS* directives (olcTLS*). TLS is on when a certificate and its key are configured."""

    certificate_file: str = ""
    certificate_key_file: str = ""
    ca_certificate_file: str = ""
    ca_certificate_path: str = ""
    verify_client: str = "never"  # never | allow | try | demand (hard and true are demand)
    protocol_min: str = ""  # e.g. "3.3" = TLS 1.2
    cipher_suite: str = ""
    dh_param_file: str = ""
    crl_check: str = "none"
    crl_file: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.certificate_file and self.certificate_key_file)


@dataclass
class DatabaseConfig:
    type: str  # "mdb" (also for "hdb"/"bdb"), "config", "monitor", "frontend"
    declared_type: str = ""  # the name the admin used, e.g. "hdb"
    suffixes: list[str] = field(default_factory=list)
    rootdn: str = ""
    rootpw: bytes = b""
    directory: str = ""
    maxsize: int = 0
    indexes: dict[str, set[str]] = field(default_factory=dict)
    sizelimit: int | None = None
    timelimit: int | None = None
    sizelimit_words: list[str] = field(default_factory=list)  # as written: size.hard=, size.pr=, ...
    timelimit_words: list[str] = field(default_factory=list)
    readonly: bool = False
    access: list[str] = field(default_factory=list)
    access_sources: list[str] = field(default_factory=list)  # "file:line" of each access line
    limits: list[str] = field(default_factory=list)
    limits_sources: list[str] = field(default_factory=list)
    syncrepl: list[str] = field(default_factory=list)
    updateref: list[str] = field(default_factory=list)
    updatedn: str = ""
    multiprovider: bool = False
    overlays: list[OverlayConfig] = field(default_factory=list)
    security: SecurityFactors = field(default_factory=SecurityFactors)
    requires: list[str] = field(default_factory=list)  # `require` (olcRequires), server/restrictions.py
    restrict: list[str] = field(default_factory=list)  # `restrict` (olcRestrict)
    lastbind: bool = False  # `lastbind` (olcLastBind): pwdLastSuccess written on each successful bind
    add_content_acl: bool = (
        False  # `add_content_acl` (olcAddContentAcl): adds check write access per attribute
    )
    # `subordinate [advertise]` (olcSubordinate): "" (not glued), "TRUE" or "advertise" (server/glue.py)
    subordinate: str = ""
    extra: list[tuple[str, list[str]]] = field(default_factory=list)
    source: str = ""

    @property
    def suffix(self) -> str:
        return self.suffixes[0] if self.suffixes else ""


@dataclass
class OverlayConfig:
    name: str
    settings: list[tuple[str, list[str]]] = field(default_factory=list)


@dataclass
class ServerConfig:
    schema_files: list[str] = field(default_factory=list)
    module_paths: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    pidfile: str = ""
    argsfile: str = ""
    loglevel: int = LOG_LEVELS["stats"]
    logfile: str = ""  # `logfile` / olcLogFile: debug lines copied to this file
    logfile_only: bool = False  # OpenLDAP 2.6 `logfile-only`: not to stderr as well
    logfile_rotate: tuple[int, int, int] | None = None  # OpenLDAP 2.6 `logfile-rotate max Mbytes hours`
    sizelimit: int = 500  # slapd's default soft size limit
    timelimit: int = 3600  # slapd's default time limit
    sizelimit_words: list[str] = field(default_factory=list)  # as written: size.hard=, size.pr=, ...
    timelimit_words: list[str] = field(default_factory=list)
    idletimeout: int = 0
    writetimeout: int = 0  # seconds a blocked write may wait before the connection is closed (0: never)
    threads: int = 0  # slapd's `threads` / olcThreads: worker processes (server/workers.py); 0: one per CPU
    tool_threads: int = 0  # slapd's tool-threads; 0 (not set): `pyldapd add` uses one process per CPU
    max_pdu: int = DEFAULT_MAX_PDU
    max_pdu_auth: int = DEFAULT_MAX_PDU_AUTH
    max_filter_depth: int = 1000
    # hardening (server/limits.py): open connections (0: as many as the descriptor limit allows), outstanding
    # operations per connection (slapd's conn_max_pending[_auth]), attribute values/descriptions per request
    max_connections: int = 0
    conn_max_pending: int = 100
    conn_max_pending_auth: int = 1000
    password_hash: list[str] = field(default_factory=lambda: ["{SSHA}"])
    password_crypt_salt_format: str = ""  # for {CRYPT}; "" = slapd's default "%s"
    server_ids: list[tuple[int, str]] = field(default_factory=list)
    access: list[str] = field(default_factory=list)  # frontend ACLs (before the first database)
    access_sources: list[str] = field(default_factory=list)  # "file:line" of each access line
    databases: list[DatabaseConfig] = field(default_factory=list)
    # olcDatabase={0}config's replication (syncrepl of cn=config itself, replication/configsync.py): its
    # syncrepl stanzas, multiprovider, updateref and syncprov overlay (None: no olcDatabase={0}config read)
    config_database: DatabaseConfig | None = None
    tls: TLSConfig = field(default_factory=TLSConfig)
    security: SecurityFactors = field(default_factory=SecurityFactors)  # global (frontend) requirements
    local_ssf: int = 71  # slapd's localSSF: the strength of an ldapi:// connection
    # server/restrictions.py: slapd's allow/disallow (global), require/restrict (frontend, inherited)
    allows: list[str] = field(default_factory=list)
    disallows: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    restrict: list[str] = field(default_factory=list)
    authz_regexp: list[tuple[str, str]] = field(default_factory=list)  # (match, replacement), in order
    referral: str = ""  # default referral for DNs outside every naming context
    readonly: bool = False  # global `readonly` (olcReadOnly on the frontend): every database refuses updates
    default_search_base: str = ""  # `defaultsearchbase`: the base of non-base searches with an empty base
    rootdse_files: list[str] = field(
        default_factory=list
    )  # `rootdse`: LDIF files of extra root DSE attributes
    # authz-policy: none, from, to, any or all: who may assume another identity (authzTo/authzFrom)
    authz_policy: str = "none"
    extra: list[tuple[str, list[str]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Inline schema definitions (attributetype/objectclass/objectidentifier lines in slapd.conf), in order.
    schema_definitions: list[tuple[str, str]] = field(default_factory=list)

    def data_databases(self) -> list[DatabaseConfig]:
        return [db for db in self.databases if db.type == "mdb"]
