"""The `syncrepl` directive (slapd.conf(5)) / olcSyncrepl value: parsed into one SyncreplSpec per consumer.

Keywords match case-insensitively, values may be quoted; defaults are slapd's (add_syncrepl in OpenLDAP).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyldapd.config.slapdconf import tokenize
from pyldapd.model.filter import parse_filter

REFRESH_ONLY = "refreshOnly"
REFRESH_AND_PERSIST = "refreshAndPersist"
SCOPES = {
    "sub": 2,
    "subtree": 2,
    "one": 1,
    "onelevel": 1,
    "base": 0,
    "subord": 3,
    "subordinate": 3,
    "children": 3,
}
DEFAULT_RETRY = [(3600, -1)]  # slapd without retry=: every hour, forever
KEYWORDS = {
    "rid", "provider", "searchbase", "type", "interval", "retry", "filter", "scope", "attrs", "exattrs",
    "attrsonly", "sizelimit", "timelimit", "schemachecking", "bindmethod", "binddn", "credentials", "saslmech",
    "authcid", "authzid", "realm", "secprops", "keepalive", "tcp-user-timeout", "starttls", "tls_cert", "tls_key",
    "tls_cacert", "tls_cacertdir", "tls_reqcert", "tls_reqsan", "tls_cipher_suite", "tls_ecname",
    "tls_protocol_min", "tls_crlcheck", "network-timeout", "timeout", "version", "suffixmassage", "logbase",
    "logfilter", "syncdata", "strictrefresh", "lazycommit", "managedsait",
}  # fmt: skip
FLAGS = {"attrsonly", "strictrefresh", "lazycommit"}


class SyncreplError(ValueError):
    pass


@dataclass
class SyncreplSpec:
    rid: int
    provider: str
    searchbase: str
    type: str = REFRESH_ONLY
    interval: int = 86400
    retry: list[tuple[int, int]] = field(
        default_factory=lambda: list(DEFAULT_RETRY)
    )  # (seconds, count; -1 = forever)
    filter: str = "(objectclass=*)"
    scope: int = 2
    attrs: list[str] = field(default_factory=lambda: ["*", "+"])
    exattrs: list[str] = field(default_factory=list)
    attrsonly: bool = False
    sizelimit: int = 0
    timelimit: int = 0
    schemachecking: bool = False
    bindmethod: str = "simple"
    binddn: str = ""
    credentials: str = ""
    saslmech: str = ""
    authzid: str = ""
    starttls: str = "no"
    tls: dict[str, str] = field(default_factory=dict)
    keepalive: tuple[int, int, int] = (0, 0, 0)
    timeout: int = 0
    network_timeout: int = 0
    syncdata: str = "default"
    # suffixmassage=: entries of searchbase at the provider are kept under this DN here (slapd's rewrite of the
    # DN and of DN-syntax values, "(.*)<searchbase>$" -> "%1<suffixmassage>")
    suffixmassage: str = ""
    logbase: str = ""  # delta-syncrepl (syncdata=accesslog): the provider's log database and the log entries
    logfilter: str = "(objectclass=*)"  # to replay (slapd's default search filter when logfilter= is absent)
    text: str = ""

    @property
    def delta(self) -> bool:
        return self.syncdata == "accesslog"

    @property
    def persist(self) -> bool:
        return self.type == REFRESH_AND_PERSIST

    @property
    def default_attrs(self) -> bool:
        return sorted(self.attrs) == ["*", "+"]


def parse_interval(value: str) -> int:
    """`dd:hh:mm:ss` or plain seconds."""
    if ":" in value:
        parts = value.split(":")
        if len(parts) != 4:
            raise SyncreplError(f"invalid interval {value!r} (expected dd:hh:mm:ss)")
        days, hours, minutes, seconds = (int(p) for p in parts)
        if hours > 24 or minutes > 60 or seconds > 60:
            raise SyncreplError(f"invalid interval {value!r}")
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return int(value)


def parse_retry(value: str) -> list[tuple[int, int]]:
    words = value.replace(",", " ").split()
    if len(words) % 2:
        raise SyncreplError(f'invalid retry "{value}": expected pairs of <interval> <count>')
    schedule = []
    for i in range(0, len(words), 2):
        seconds = parse_interval(words[i])
        count = -1 if words[i + 1] == "+" else int(words[i + 1])
        if count == 0 or count < -1:
            raise SyncreplError(f'invalid retry "{value}": count must be positive or +')
        schedule.append((seconds, count))
        if count == -1:
            break
    return schedule


def parse_syncrepl(text: str) -> SyncreplSpec:
    """Parse one syncrepl stanza (the words after `syncrepl`, or an olcSyncrepl value with its `{n}` removed)."""
    body = text.strip()
    if body.startswith("{") and "}" in body:
        body = body[body.index("}") + 1 :]
    try:
        words = tokenize(body)
    except ValueError as exc:
        raise SyncreplError(f"syncrepl: {exc}") from None
    values: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        key = key.lower()
        if key not in KEYWORDS:
            raise SyncreplError(f'syncrepl: unable to parse "{word}"')
        if not sep and key not in FLAGS:
            raise SyncreplError(f'syncrepl: "{key}" needs a value')
        values[key] = value if sep else "yes"
    missing = [k for k in ("rid", "provider", "searchbase") if k not in values]
    if missing:
        raise SyncreplError(f'Malformed "syncrepl" line: missing {" ".join(missing)}')
    try:
        rid = int(values["rid"], 10)
    except ValueError:
        raise SyncreplError(f"syncrepl: invalid rid {values['rid']!r}") from None
    if not 0 <= rid <= 999:
        raise SyncreplError("syncrepl: rid must be between 0 and 999")
    spec = SyncreplSpec(rid=rid, provider=values["provider"], searchbase=values["searchbase"], text=body)
    try:
        for key, value in values.items():
            apply_keyword(spec, key, value)
    except ValueError as exc:
        raise SyncreplError(f"syncrepl rid={rid:03d}: {exc}") from None
    if spec.delta and not spec.logbase:
        raise SyncreplError(
            f"syncrepl rid={rid:03d}: syncdata=accesslog needs logbase=<the log database's suffix>"
        )
    if spec.type == REFRESH_AND_PERSIST and "interval" not in values:
        spec.interval = 60
    return spec


def apply_keyword(spec: SyncreplSpec, key: str, value: str) -> None:
    if key == "type":
        lowered = value.lower()
        if lowered == REFRESH_ONLY.lower():
            spec.type = REFRESH_ONLY
        elif lowered == REFRESH_AND_PERSIST.lower():
            spec.type = REFRESH_AND_PERSIST
        else:
            raise ValueError(f"unknown type {value!r}")
    elif key == "interval":
        spec.interval = parse_interval(value)
    elif key == "retry":
        spec.retry = parse_retry(value)
    elif key == "filter":
        spec.filter = value
    elif key == "scope":
        if value.lower() not in SCOPES:
            raise ValueError(f"unknown scope {value!r}")
        spec.scope = SCOPES[value.lower()]
    elif key == "attrs":
        spec.attrs = [a for a in value.replace(",", " ").split() if a]
    elif key == "exattrs":
        spec.exattrs = [a for a in value.replace(",", " ").split() if a]
    elif key == "attrsonly":
        spec.attrsonly = True
    elif key in ("sizelimit", "timelimit"):
        setattr(spec, key, 0 if value.lower() == "unlimited" else int(value))
    elif key == "schemachecking":
        spec.schemachecking = value.lower() in ("on", "yes", "true")
    elif key == "bindmethod":
        if value.lower() not in ("simple", "sasl", "none"):
            raise ValueError(f"unknown bindmethod {value!r}")
        spec.bindmethod = value.lower()
    elif key == "binddn":
        spec.binddn = value
    elif key == "credentials":
        spec.credentials = value
    elif key == "saslmech":
        spec.saslmech = value
    elif key == "authzid":
        spec.authzid = value
    elif key == "starttls":
        if value.lower() not in ("no", "yes", "critical"):
            raise ValueError(f"unknown starttls value {value!r}")
        spec.starttls = value.lower()
    elif key.startswith("tls_"):
        spec.tls[key] = value
    elif key == "keepalive":
        parts = value.split(":")
        if len(parts) != 3:
            raise ValueError(f"invalid keepalive {value!r} (expected idle:probes:interval)")
        spec.keepalive = (int(parts[0]), int(parts[1]), int(parts[2]))
    elif key == "timeout":
        spec.timeout = int(value)
    elif key == "network-timeout":
        spec.network_timeout = int(value)
    elif key == "syncdata":
        if value.lower() not in ("default", "accesslog", "changelog"):
            raise ValueError(f"unknown syncdata {value!r}")
        if value.lower() == "changelog":  # refused rather than replicated as plain syncrepl
            raise ValueError("syncdata=changelog (a DSEE changelog provider) is not supported by pyldapd")
        spec.syncdata = value.lower()
    elif key == "suffixmassage":
        spec.suffixmassage = value
    elif key == "logbase":
        spec.logbase = value
    elif key == "logfilter":
        try:
            parse_filter(value)
        except ValueError as exc:
            raise ValueError(f"invalid logfilter {value!r}: {exc}") from None
        spec.logfilter = value
    elif key == "strictrefresh":
        raise ValueError(f"{key} is not supported by pyldapd")
    elif key == "managedsait" and value.lower() not in ("off", "no", "false", "0"):
        raise ValueError("manageDSAit=on is not supported by pyldapd")
    elif key == "version" and value != "3":
        raise ValueError("only version 3 is supported")


def check_naming_context(spec: SyncreplSpec, suffix_ndns: list[str], normalize: Callable[[str], str]) -> None:
    """slapd's checks once a stanza is read: its searchbase (or, with suffixmassage, the massage DN) lies within
    the database's naming context."""

    def within(ndn: str) -> bool:
        return any(ndn == suffix or ndn.endswith("," + suffix) for suffix in suffix_ndns)

    if spec.suffixmassage:
        if not within(normalize(spec.suffixmassage)):
            raise SyncreplError(
                f'Massage DN "{spec.suffixmassage}" is not within the database naming context'
            )
    elif not within(normalize(spec.searchbase)):
        raise SyncreplError(
            f'Base DN "{normalize(spec.searchbase)}" is not within the database naming context'
        )
