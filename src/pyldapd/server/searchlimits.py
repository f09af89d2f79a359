"""slapd.conf(5) `limits <selector> <limit> [<limit> ...]`: size and time limits per identity.

Selectors: `*`, `anonymous`, `users`, `dn[.self|.this][.<style>]=<pattern>` (styles exact/base, onelevel,
subtree, children, regex, anonymous), `group[/oc[/at]]=<dn>`. Limits: `size[.soft|.hard|.unchecked|.pr|.prtotal]=`
and `time[.soft|.hard]=`, with `unlimited` (and `soft` for a hard limit). The first matching `limits` line of the
database wins; unspecified values come from the database's (or the global) `sizelimit`/`timelimit`.

Numbers follow slapd's convention internally: -1 is unlimited, and a hard limit of 0 means "same as soft".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pyldapd.model.dn import DNError, normalize_dn
from pyldapd.server import acl

UNLIMITED = -1
SOFT = 0  # a hard limit that follows the soft one


class LimitsError(ValueError):
    pass


@dataclass
class LimitSet:
    size_soft: int = 500
    size_hard: int = SOFT
    time_soft: int = 3600
    time_hard: int = SOFT
    unchecked: int = UNLIMITED
    paged: int = UNLIMITED
    paged_total: int | None = None


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
            limits.unchecked = number(value, extra=("disabled",))
        elif qualifier == "pr":
            limits.paged = number(value, extra=("noestimate",))
        elif qualifier == "prtotal":
            limits.paged_total = number(value, extra=("hard", "disabled"))
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


def database_defaults(directory: Any, backend: Any) -> LimitSet:
    """The limits without any `limits` line: the database's sizelimit/timelimit, else the global ones."""
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
    # `sizelimit size.hard=... size.unchecked=...` words: the global ones, unless the database sets that limit
    words = list(getattr(config, "limit_settings", []))
    if backend is not None:
        own = backend.config
        words = [
            w for w in words if getattr(own, "sizelimit" if w.startswith("size") else "timelimit") is None
        ]
        words += getattr(own, "limit_settings", [])
    for word in words:
        key, _, value = word.partition("=")
        kind, _, qualifier = key.partition(".")
        apply_setting(limits, kind, qualifier, value)
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


def search_limits(
    directory: Any, session: Any, backend: Any, request: Any, base_ndn: str = ""
) -> tuple[int, int]:
    """(size, seconds) for a search, 0 meaning unlimited, as slapd's limits_check computes them."""
    if backend is not None and directory.is_root(session, backend):
        return max(request.size_limit, 0), max(request.time_limit, 0)  # no limits but the client's own
    limits = database_defaults(directory, backend)
    compiled = compiled_limits(directory, backend)
    if compiled is not None and compiled.rules:
        ctx = directory.access.context()
        rule = compiled.select(session.bind_ndn, base_ndn, ctx.in_group)
        if rule is not None:
            limits = rule.limits(limits)
    size = effective(request.size_limit, limits.size_soft, limits.size_hard)
    seconds = effective(request.time_limit, limits.time_soft, limits.time_hard)
    return max(size, 0), max(seconds, 0)


def unchecked_limit(directory: Any, session: Any, backend: Any, base_ndn: str = "") -> int:
    """`size.unchecked` for a search (slapd's limits_get): -1 unlimited, 0 disabled (no search at all), else the
    most candidates a search may examine. The rootdn has none."""
    if backend is None or directory.is_root(session, backend):
        return UNLIMITED
    limits = database_defaults(directory, backend)  # `sizelimit size.unchecked=`
    compiled = compiled_limits(directory, backend)
    if compiled is not None and compiled.rules:
        rule = compiled.select(session.bind_ndn, base_ndn, directory.access.context().in_group)
        if rule is not None:
            limits = rule.limits(limits)
    return 0 if limits.unchecked == -2 else limits.unchecked  # -2: "disabled"
