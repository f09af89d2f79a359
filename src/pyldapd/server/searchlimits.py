"""slapd.conf(5) `limits <selector> <limit> [<limit> ...]`: size and time limits per identity.

Selectors: `*`, `anonymous`, `users`, `dn[.self|.this][.<style>]=<pattern>` (styles exact/base, onelevel,
subtree, children, regex, anonymous), `group[/oc[/at]]=<dn>`. Limits: `size[.soft|.hard|.unchecked|.pr|.prtotal]=`
and `time[.soft|.hard]=`, with `unlimited` (and `soft` for a hard limit). The first matching `limits` line of the
database wins; unspecified values come from the database's (or the global) `sizelimit`/`timelimit`.

Numbers follow slapd's convention internally: -1 is unlimited, and a hard limit of 0 means "same as soft".
`size.unchecked` 0 (`disabled`) refuses every search; `size.pr` is the largest page size allowed (0 or -1: any),
`size.pr=noEstimate` only hides an estimate pyldapd never sends; `size.prtotal` caps the entries of a whole paged
search (0/`hard`: the hard size limit, -1 unlimited, -2 `disabled`: no paged searches), as limits_check does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pyldapd.model.dn import DNError, normalize_dn
from pyldapd.protocol.ldap import ResultCode
from pyldapd.server import acl
from pyldapd.server.errors import LDAPError

UNLIMITED = -1
SOFT = 0  # a hard limit that follows the soft one
DISABLED = -2  # size.prtotal=disabled
MAX_LIMIT = 2147483647  # a client's "as many as allowed" (slapd's SLAP_MAX_LIMIT)


class LimitsError(ValueError):
    pass


@dataclass
class LimitSet:
    size_soft: int = 500
    size_hard: int = SOFT
    time_soft: int = 3600
    time_hard: int = SOFT
    unchecked: int = UNLIMITED
    paged: int = 0  # size.pr: 0 or -1 is no page size limit
    paged_total: int = 0  # size.prtotal: 0 follows the hard limit
    paged_hide: bool = False  # size.pr=noEstimate


@dataclass
class LimitsRule:
    kind: str  # any, anonymous, users, dn, group
    dn_type: str = "self"  # self (the bound DN) or this (the operation's base)
    style: str = "exact"  # exact, one, sub, children, regex, anonymous
    pattern: str = ""
    group_oc: str = "groupOfNames"
    group_at: str = "member"
    settings: list[tuple[str, str, str]] | None = None  # (size|time, qualifier, value)
    regex: re.Pattern[str] | None = None
    ndn: str = ""
    source: str = ""

    def limits(self, base: LimitSet) -> LimitSet:
        result = replace(base)
        for kind, qualifier, value in self.settings or []:
            apply_setting(result, kind, qualifier, value)
        return result


STYLES = {"exact": "exact", "base": "exact", "onelevel": "one", "one": "one", "subtree": "sub", "sub": "sub",
          "children": "children", "regex": "regex", "anonymous": "anonymous"}  # fmt: skip


def number(value: str, *, allow_soft: bool = False, extra: tuple[str, ...] = ()) -> int:
    lower = value.lower()
    if lower in ("unlimited", "none", "-1"):
        return UNLIMITED
    if allow_soft and lower == "soft":
        return SOFT
    if lower in extra:
        return -2
    try:
        n = int(value)
    except ValueError:
        raise LimitsError(f'unable to parse value "{value}"') from None
    if n < 0:
        raise LimitsError(f'invalid value "{value}"')
    return n


def apply_setting(limits: LimitSet, kind: str, qualifier: str, value: str) -> None:
    if kind == "size":
        if qualifier == "":
            limits.size_soft = number(value)
            limits.size_hard = SOFT
        elif qualifier == "soft":
            limits.size_soft = number(value)
        elif qualifier == "hard":
            limits.size_hard = number(value, allow_soft=True)
        elif qualifier == "unchecked":
            limits.unchecked = 0 if value.lower() == "disabled" else number(value)
        elif qualifier == "pr":
            if value.lower() == "noestimate":
                limits.paged_hide = True
            else:
                limits.paged = number(value)
        elif qualifier == "prtotal":
            lower = value.lower()
            limits.paged_total = DISABLED if lower == "disabled" else 0 if lower == "hard" else number(value)
        else:
            raise LimitsError(f'unknown size limit qualifier "{qualifier}"')
    elif kind == "time":
        if qualifier == "":
            limits.time_soft = number(value)
            limits.time_hard = SOFT
        elif qualifier == "soft":
            limits.time_soft = number(value)
        elif qualifier == "hard":
            limits.time_hard = number(value, allow_soft=True)
        else:
            raise LimitsError(f'unknown time limit qualifier "{qualifier}"')
    else:
        raise LimitsError(f'unknown limit "{kind}"')


def apply_directive_word(limits: LimitSet, kind: str, word: str) -> None:
    """One word of a `sizelimit`/`timelimit` directive: a bare number (or `unlimited`) is the soft limit with the
    hard one following it, else a `size.<qualifier>=`/`time.<qualifier>=` specifier as in `limits`."""
    left, eq, value = word.partition("=")
    if not eq:
        apply_setting(limits, kind, "", word)
        return
    name, _, qualifier = left.lower().partition(".")
    if name != kind:
        raise LimitsError(f'unknown limit "{word}"')
    apply_setting(limits, kind, qualifier, value)


def parse_limits(words: list[str], source: str = "") -> LimitsRule:
    if len(words) < 2:
        raise LimitsError("a selector and at least one limit are required")
    selector = words[0]
    lower = selector.lower()
    if lower == "*":
        rule = LimitsRule("any")
    elif lower == "anonymous":
        rule = LimitsRule("anonymous")
    elif lower == "users":
        rule = LimitsRule("users")
    elif lower.startswith("group"):
        left, eq, right = selector.partition("=")
        if not eq or not right:
            raise LimitsError(f'missing "=" in "{selector}"')
        parts = left.split("/")
        rule = LimitsRule("group", pattern=right)
        if len(parts) > 1 and parts[1]:
            rule.group_oc = parts[1]
        if len(parts) > 2 and parts[2]:
            rule.group_at = parts[2]
    else:
        left, eq, right = selector.partition("=")
        if not eq:
            left, right = "dn", selector
        names = left.split(".")
        if names[0].lower() != "dn":
            raise LimitsError(f'unknown selector "{selector}"')
        rule = LimitsRule("dn", pattern=right)
        for name in names[1:]:
            name = name.lower()
            if name in ("self", "this"):
                rule.dn_type = name
            elif name in STYLES:
                rule.style = STYLES[name]
            else:
                raise LimitsError(f'unknown dn style "{name}" in "{selector}"')
        if rule.style == "anonymous":
            rule.kind = "anonymous"
        elif right == "*" or (rule.style == "regex" and right == ".*"):
            rule.kind = "any"
        elif rule.style == "regex":
            try:
                rule.regex = re.compile(right, re.IGNORECASE)
            except re.error as exc:
                raise LimitsError(f'bad regular expression "{right}": {exc}') from None
    settings = []
    for word in words[1:]:
        left, eq, value = word.partition("=")
        if not eq:
            raise LimitsError(f'unknown limit "{word}"')
        kind, _, qualifier = left.lower().partition(".")
        apply_setting(LimitSet(), kind, qualifier, value)  # validates
        settings.append((kind, qualifier, value))
    rule.settings = settings
    rule.source = source
    return rule


def dn_style_matches(style: str, pattern: str, ndn: str) -> bool:
    """The DN styles `limits` shares with `access` (exact is access's base)."""
    if style not in ("exact", "sub", "children", "one"):
        return False
    return acl.dn_matches("base" if style == "exact" else style, pattern, ndn)


class Limits:
    """The `limits` lines of one database, compiled."""

    def __init__(self, texts: list[str], sources: list[str], normalize: Callable[[str], str],
                 tokenize: Callable[[str], list[str]]) -> None:  # fmt: skip
        self.rules: list[LimitsRule] = []
        for index, text in enumerate(texts):
            source = sources[index] if index < len(sources) else ""
            rule = parse_limits(tokenize(text), source)
            if rule.kind in ("dn", "group") and rule.regex is None:
                try:
                    rule.ndn = normalize(rule.pattern)
                except (DNError, ValueError):
                    raise LimitsError(f'bad DN "{rule.pattern}"') from None
            self.rules.append(rule)

    def select(self, bind_ndn: str, base_ndn: str, in_group: Callable[[str, str, str, str], bool]
               ) -> LimitsRule | None:  # fmt: skip
        for rule in self.rules:
            if rule.kind == "any":
                return rule
            if rule.kind == "anonymous":
                if not bind_ndn:
                    return rule
                continue
            if rule.kind == "users":
                if bind_ndn:
                    return rule
                continue
            if rule.kind == "group":
                if bind_ndn and in_group(bind_ndn, rule.ndn, rule.group_oc, rule.group_at):
                    return rule
                continue
            subject = bind_ndn if rule.dn_type == "self" else base_ndn
            if rule.dn_type == "self" and not subject:
                continue
            if rule.regex is not None:
                if rule.regex.search(subject):
                    return rule
            elif dn_style_matches(rule.style, rule.ndn, subject):
                return rule
        return None


def effective(requested: int, soft: int, hard: int) -> int:
    """The limit a search runs with (slapd's limits_check); -1 is unlimited."""
    if requested == 0:
        return soft
    if hard == SOFT:
        if soft > UNLIMITED and requested > soft:
            return soft
        return requested
    if hard > 0 and requested > hard:
        return hard
    return requested


_DEFAULTS: dict[tuple, LimitSet] = {}  # the directives' values -> their LimitSet (every search asks)


def database_defaults(directory: Any, backend: Any) -> LimitSet:
    """The limits without any `limits` line: the database's sizelimit/timelimit, else the global ones.
    Shared between searches: read it, or copy it (LimitsRule.limits does) before changing it."""
    config = directory.config
    db = backend.config if backend is not None else None
    key = (
        config.sizelimit, config.timelimit, tuple(getattr(config, "sizelimit_words", ())),
        tuple(getattr(config, "timelimit_words", ())),
        None if db is None else (db.sizelimit, db.timelimit, tuple(getattr(db, "sizelimit_words", ())),
                                 tuple(getattr(db, "timelimit_words", ()))),
    )  # fmt: skip
    found = _DEFAULTS.get(key)
    if found is None:
        found = _defaults_afresh(directory, backend)
        if len(_DEFAULTS) > 256:
            _DEFAULTS.clear()
        _DEFAULTS[key] = found
    return found


def _defaults_afresh(directory: Any, backend: Any) -> LimitSet:
    config = directory.config
    size = config.sizelimit
    seconds = config.timelimit
    if backend is not None:
        if backend.config.sizelimit is not None:
            size = backend.config.sizelimit
        if backend.config.timelimit is not None:
            seconds = backend.config.timelimit
    limits = LimitSet(
        size_soft=size or UNLIMITED, size_hard=SOFT, time_soft=seconds or UNLIMITED, time_hard=SOFT
    )
    # the directives' other specifiers (hard, unchecked, pr, prtotal), global ones first: a database starts from
    # the frontend's limits (slapd copies them); soft values come from the numbers above
    sources = [config] + ([backend.config] if backend is not None else [])
    for kind in ("size", "time"):
        for source in sources:
            for word in getattr(source, f"{kind}limit_words", []):
                left, eq, _value = word.partition("=")
                if not eq or left.lower() == kind:
                    setattr(limits, f"{kind}_hard", SOFT)  # a plain soft limit resets the hard one
                elif left.lower() != f"{kind}.soft":
                    apply_directive_word(limits, kind, word)
    return limits


def compiled_limits(directory: Any, backend: Any) -> Limits | None:
    if backend is None:
        return None
    cache = directory.__dict__.setdefault("_compiled_limits", {})
    key = (id(backend), tuple(backend.config.limits))
    if key not in cache:
        from pyldapd.config.slapdconf import tokenize

        texts = backend.config.limits
        sources = getattr(backend.config, "limits_sources", [])
        cache[key] = Limits(texts, sources, lambda dn: normalize_dn(dn, directory.schema), tokenize)
    return cache[key]


def limit_set(directory: Any, session: Any, backend: Any, base_ndn: str = "") -> LimitSet | None:
    """The limits of this session's searches in `backend`: the first matching `limits` line over the
    database's defaults; None for its rootdn (no limits)."""
    if backend is not None and directory.is_root(session, backend):
        return None
    limits = database_defaults(directory, backend)
    # no `limits` line (the common case): no rule to compile or select
    compiled = compiled_limits(directory, backend) if backend is not None and backend.config.limits else None
    if compiled is not None and compiled.rules:
        ctx = directory.access.context()
        rule = compiled.select(session.bind_ndn, base_ndn, ctx.in_group)
        if rule is not None:
            limits = rule.limits(limits)
    return limits


def limits_read_entries(directory: Any, backend: Any) -> bool:
    """Whether choosing `backend`'s limits reads the directory (a `limits group/...` line: membership)."""
    compiled = compiled_limits(directory, backend) if backend is not None and backend.config.limits else None
    return compiled is not None and any(rule.kind == "group" for rule in compiled.rules)


def search_limits(
    directory: Any, session: Any, backend: Any, request: Any, base_ndn: str = ""
) -> tuple[int, int]:
    """(size, seconds) for a search, 0 meaning unlimited, as slapd's limits_check computes them."""
    return request_limits(limit_set(directory, session, backend, base_ndn), request)


def request_limits(limits: LimitSet | None, request: Any) -> tuple[int, int]:
    """(size, seconds) of a search under `limits` (None: the rootdn), 0 meaning unlimited."""
    if limits is None:  # the rootdn gets what it asks for, and no limit when it asks for none
        return max(request.size_limit, 0), max(request.time_limit, 0)
    size = effective(request.size_limit, limits.size_soft, limits.size_hard)
    seconds = effective(request.time_limit, limits.time_soft, limits.time_hard)
    return max(size, 0), max(seconds, 0)


def check_search_allowed(limits: LimitSet | None) -> None:
    """`size.unchecked=disabled`: the search does not even reach the database (adminLimitExceeded)."""
    if limits is not None and limits.unchecked == 0:
        raise LDAPError(ResultCode.adminLimitExceeded, "")


def paged_size_limit(limits: LimitSet | None, requested: int, count: int, page_size: int) -> int:
    """How many entries one request of a paged search may return before sizeLimitExceeded (-1: no limit).

    slapd's limits_check for a pagedResults request: `count` entries went out in the earlier pages; the size
    limit, `size.prtotal` or the hard limit bounds the whole search, `size.pr` the page size."""
    if limits is None:  # the rootdn: only what the client asked for
        return UNLIMITED if requested == 0 else max(requested - count, 0)
    if limits.unchecked == 0:
        raise LDAPError(ResultCode.adminLimitExceeded, "")
    if limits.paged_total == DISABLED:
        raise LDAPError(ResultCode.adminLimitExceeded, "pagedResults control not allowed")
    if limits.paged > 0 and page_size > limits.paged:
        raise LDAPError(ResultCode.adminLimitExceeded, "illegal pagedResults page size")
    if limits.paged_total == 0:
        total = limits.size_soft if limits.size_hard == SOFT else limits.size_hard
    else:
        total = limits.paged_total
    if total == UNLIMITED:
        slimit = UNLIMITED if requested in (0, MAX_LIMIT) else requested - count
    else:
        if requested == MAX_LIMIT or requested > total:
            requested = bound = total
        elif requested == 0:
            bound = total
        else:
            bound = requested
        left = bound - count
        if left >= 0:
            slimit = left if limits.paged <= 0 or left < limits.paged else limits.paged + 1
        elif limits.paged > 0:
            slimit = limits.paged + 1
        else:
            slimit = limits.size_hard
    if requested == 0:
        return slimit
    if slimit > 0:
        if requested - count > slimit:
            raise LDAPError(ResultCode.adminLimitExceeded, "")
        return slimit
    if slimit == 0:
        return 0
    return requested
