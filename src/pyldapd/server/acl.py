"""Access control: OpenLDAP's `access to <what> by <who> <access> [<control>]` language (slapd.access(5)).

A rule list is the database's `access` lines followed by the frontend (global) ones; each list ends with an
implicit `access to * by * none`, and each rule's `by` list with an implicit `by * none stop`. A configuration
without any access line at all gets slapd's default policy, `access to * by * read`. The rootdn bypasses
everything; that check is the caller's.

Evaluation follows slapd: the privilege mask starts empty; the first rule whose <what> matches is examined, its
first matching <who> sets (level or `=`), adds (`+`) or removes (`-`) privileges; `stop` (the default) ends the
evaluation, `continue` goes on with the next <who> of the same rule, `break` goes on with the next matching rule.
A rule in which no <who> matches (any more) ends with no privileges at all, and so does a `break` with no later
matching rule.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyldapd.model.dn import DNError, is_descendant, normalize_dn, split_rdn
from pyldapd.model.entry import Entry
from pyldapd.model.filter import FilterError, parse_filter
from pyldapd.server.aclsets import SetError, SetEvaluator, parse_set

# Privileges, as slapd's letters: d x c s r a z m (w = a + z).
DISCLOSE, AUTH, COMPARE, SEARCH, READ, ADD, DELETE, MANAGE = (1 << i for i in range(8))
WRITE = ADD | DELETE
_LADDER = [("none", 0), ("disclose", DISCLOSE), ("auth", AUTH), ("compare", COMPARE), ("search", SEARCH),
           ("read", READ)]  # fmt: skip
LEVELS: dict[str, int] = {}
_acc = 0
for _name, _bit in _LADDER:
    _acc |= _bit
    LEVELS[_name] = _acc
LEVELS["add"] = LEVELS["read"] | ADD
LEVELS["delete"] = LEVELS["read"] | DELETE
LEVELS["write"] = LEVELS["read"] | WRITE
LEVELS["manage"] = LEVELS["write"] | MANAGE
PRIVILEGES = {"0": 0, "d": DISCLOSE, "x": AUTH, "c": COMPARE, "s": SEARCH, "r": READ, "a": ADD, "z": DELETE,
              "w": WRITE, "m": MANAGE}  # fmt: skip
DEFAULT_POLICY = LEVELS["read"]  # no access line anywhere: `access to * by * read`

ENTRY = "entry"
CHILDREN = "children"

STOP, CONTINUE, BREAK = "stop", "continue", "break"

DN_STYLES = {"base": "base", "baseobject": "base", "exact": "base", "one": "one", "onelevel": "one",
             "sub": "sub", "subtree": "sub", "children": "children", "regex": "regex"}  # fmt: skip


class ACLError(ValueError):
    """A malformed access directive; the config reader turns it into an error naming file and line."""


@dataclass
class Target:
    """What is being accessed: an entry (by normalized DN), one of its attributes (or `entry`/`children`), a
    value."""

    ndn: str
    entry: Entry | None
    attr: str  # attribute key, or ENTRY / CHILDREN
    value: bytes | None = None


@dataclass
class Accessor:
    """Who is asking, as access control sees it."""

    ndn: str  # "" when anonymous
    peer: str = ""
    sockurl: str = ""
    ssf: int = 0
    transport_ssf: int = 0
    tls_ssf: int = 0
    sasl_ssf: int = 0


def expand(template: str, groups: list[str]) -> str:
    """Substitute `$n` / `${n}` with regex submatches; `$$` is a dollar."""
    out = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "$" and i + 1 < len(template):
            nxt = template[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt.isdigit():
                n = int(nxt)
                out.append(groups[n] if n < len(groups) and groups[n] is not None else "")
                i += 2
                continue
            if nxt == "{":
                end = template.find("}", i)
                body = template[i + 2 : end] if end > 0 else ""
                if body.startswith("d"):
                    body = body[1:]
                if body.isdigit():
                    n = int(body)
                    out.append(groups[n] if n < len(groups) and groups[n] is not None else "")
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def compile_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ACLError(f'regular expression "{pattern}" bad because of {exc}') from None


def dn_matches(style: str, pattern: str, ndn: str) -> bool:
    if style == "base":
        return ndn == pattern
    if style == "sub":
        return ndn == pattern or is_descendant(ndn, pattern)
    if style == "children":
        return ndn != pattern and is_descendant(ndn, pattern)
    if style == "one":
        return ndn != pattern and split_rdn(ndn)[1] == pattern
    if style.startswith("level"):
        level = int(style[6:-1])
        current = ndn
        for _ in range(level):
            if not current:
                return False
            current = split_rdn(current)[1]
        return current == pattern
    return False


class Who:
    """One `by` clause: conditions that must all hold, an access specification and a control."""

    def __init__(self) -> None:
        self.conditions: list[Callable[[Accessor, Target, list[str], Any], bool]] = []
        self.mode = "="  # "=" (level or =privs), "+", "-"
        self.privileges = 0
        self.self_only = False
        self.control = STOP
        self.text = ""

    def matches(self, who: Accessor, target: Target, groups: list[str], ctx: Any) -> bool:
        if self.self_only:
            if target.value is None or not who.ndn or ctx.normalize_value(target.value) != who.ndn:
                return False
        return all(condition(who, target, groups, ctx) for condition in self.conditions)

    def apply(self, mask: int) -> int:
        if self.mode == "+":
            return mask | self.privileges
        if self.mode == "-":
            return mask & ~self.privileges
        return self.privileges


@dataclass
class Rule:
    source: str
    text: str
    dn_style: str | None = None  # None: any entry
    dn_pattern: str = ""
    dn_regex: re.Pattern[str] | None = None
    filter: Any = None  # a parsed filter
    attrs: list[str] | None = None  # None: every attribute and the pseudo-attributes
    val: tuple[str, Any] | None = None  # (style, pattern) for attrs=<one attribute> val[.style]=
    clauses: list[Who] = field(default_factory=list)
    # compiled against a schema
    attr_keys: set[str] = field(default_factory=set)
    class_in: list[Any] = field(default_factory=list)
    class_out: list[Any] = field(default_factory=list)
    matcher: Callable[[Entry], bool] | None = None
    val_key: Any = None

    def match_dn(self, ndn: str) -> list[str] | None:
        if self.dn_style is None:
            return [ndn]
        if self.dn_style == "regex":
            assert self.dn_regex is not None
            m = self.dn_regex.search(ndn)
            return [m.group(0), *m.groups()] if m else None
        return [ndn, self.dn_pattern] if dn_matches(self.dn_style, self.dn_pattern, ndn) else None

    def match_attr(self, target: Target, schema: Any) -> bool:
        if self.attrs is None:
            return True
        attr = target.attr
        if attr in (ENTRY, CHILDREN):
            return attr in self.attr_keys
        base = attr.split(";", 1)[0]
        at = schema.attribute_type(base) if schema is not None else None
        current = at
        while current is not None:
            if current.key in self.attr_keys:
                return True
            current = current.sup
        if at is None and base in self.attr_keys:
            return True
        for oc in self.class_in:
            if allowed_by_class(oc, at):
                return True
        for oc in self.class_out:
            if at is not None and not allowed_by_class(oc, at):
                return True
        return False


def allowed_by_class(oc: Any, at: Any) -> bool:
    if at is None:
        return False
    if oc.name.lower() == "extensibleobject":
        return True
    keys = {a.key for a in oc.all_must()} | {a.key for a in oc.all_may()}
    current = at
    while current is not None:
        if current.key in keys:
            return True
        current = current.sup
    return False


# -- parsing ------------------------------------------------------------------------------------------------


def split_style(left: str) -> tuple[str, list[str]]:
    """`dn.exact,expand` -> ("dn", ["exact", "expand"])."""
    name, _, style = left.partition(".")
    modifiers = style.split(",") if style else []
    return name.lower(), modifiers


def parse_access(words: list[str], source: str = "") -> Rule:
    """Parse the words after `access` (or an olcAccess value without its {n} prefix)."""
    text = " ".join(words)
    if not words or words[0].lower() != "to":
        raise ACLError(f'expecting "to" clause in "access {text}"')
    rule = Rule(source=source, text=text)
    i = 1
    saw_what = False
    while i < len(words) and words[i].lower() != "by":
        word = words[i]
        i += 1
        saw_what = True
        if word == "*":
            continue
        left, eq, right = word.partition("=")
        name, modifiers = split_style(left)
        if not eq:
            raise ACLError(f'unknown <what> clause "{word}" in "access {text}"')
        if name == "dn":
            style = modifiers[0].lower() if modifiers else "base"
            if style.startswith("level{"):
                rule.dn_style = style
            elif style in DN_STYLES:
                rule.dn_style = DN_STYLES[style]
            else:
                raise ACLError(f'unknown dn style "{style}" in "access {text}"')
            if rule.dn_style == "regex":
                if right in ("*", ".*", "^.*$", ""):
                    rule.dn_style = None
                else:
                    rule.dn_regex = compile_regex(right)
            rule.dn_pattern = right
        elif name == "filter":
            try:
                rule.filter = parse_filter(right)
            except FilterError as exc:
                raise ACLError(f'bad filter "{right}" in "access {text}": {exc}') from None
        elif name in ("attrs", "attr", "attributes"):
            rule.attrs = [a.strip() for a in right.split(",") if a.strip()]
            if not rule.attrs:
                raise ACLError(f'empty attribute list in "access {text}"')
        elif name == "val":
            style = "exact"
            for modifier in modifiers:
                if "/" in modifier:
                    modifier = modifier.split("/", 1)[0]
                if modifier:
                    style = modifier.lower()
            if rule.attrs is None or len(rule.attrs) != 1:
                raise ACLError(f'attr value requires exactly one attribute in "access {text}"')
            style = DN_STYLES.get(style, style)
            if style not in ("base", "regex", "one", "sub", "children"):
                raise ACLError(f'unknown val style "{style}" in "access {text}"')
            rule.val = (style, compile_regex(right) if style == "regex" else right)
        else:
            raise ACLError(f'unknown <what> clause "{word}" in "access {text}"')
    if not saw_what:
        raise ACLError(f'no <what> in "access {text}"')
    if i >= len(words):
        raise ACLError(f'no "by" clause in "access {text}"')
    while i < len(words):
        if words[i].lower() != "by":
            raise ACLError(f'expecting "by" clause, found "{words[i]}" in "access {text}"')
        i += 1
        who = Who()
        start = i
        while (
            i < len(words)
            and not is_access(words[i])
            and words[i].lower() not in (STOP, CONTINUE, BREAK, "by")
        ):
            parse_who(who, words[i], rule, text)
            i += 1
        if i == start:
            raise ACLError(f'missing <who> in "access {text}"')
        if i < len(words) and is_access(words[i]):
            set_access(who, words[i])
            i += 1
        else:
            who.mode, who.privileges = "+", 0
        if i < len(words) and words[i].lower() in (STOP, CONTINUE, BREAK):
            who.control = words[i].lower()
            i += 1
        who.text = " ".join(words[start:i])
        rule.clauses.append(who)
    return rule


def is_access(word: str) -> bool:
    w = word.lower()
    for prefix in ("realself", "self"):
        if w.startswith(prefix) and w != prefix and not w.startswith(prefix + "."):
            w = w[len(prefix) :]
            break
    if w in LEVELS:
        return True
    return len(w) > 1 and w[0] in "=+-" and all(ch in PRIVILEGES for ch in w[1:])


def set_access(who: Who, word: str) -> None:
    w = word.lower()
    for prefix in ("realself", "self"):
        if w.startswith(prefix) and w != prefix:
            who.self_only = True
            w = w[len(prefix) :]
            break
    if w in LEVELS:
        who.mode, who.privileges = "=", LEVELS[w]
        return
    privileges = 0
    for ch in w[1:]:
        privileges |= PRIVILEGES[ch]
    who.mode, who.privileges = ("=" if w[0] == "=" else w[0]), privileges


def parse_who(who: Who, word: str, rule: Rule, text: str) -> None:
    lower = word.lower()
    if lower == "*":
        return
    if lower in ("anonymous", "realanonymous"):
        who.conditions.append(lambda w, t, g, c: not w.ndn)
        return
    if lower in ("users", "realusers"):
        who.conditions.append(lambda w, t, g, c: bool(w.ndn))
        return
    if lower in ("self", "realself") or lower.startswith(("self.", "realself.")):
        level = 0
        if "." in lower:
            style = lower.split(".", 1)[1]
            m = re.fullmatch(r"level\{(-?\d+)\}", style)
            if not m:
                raise ACLError(f'unknown self style "{style}" in "access {text}"')
            level = int(m.group(1))
        who.conditions.append(lambda w, t, g, c, level=level: self_matches(w.ndn, t.ndn, level))
        return
    left, eq, right = word.partition("=")
    if not eq:
        raise ACLError(f'unknown <who> clause "{word}" in "access {text}"')
    name, modifiers = split_style(left)
    styles = [m.lower() for m in modifiers]
    do_expand = "expand" in styles
    styles = [s for s in styles if s != "expand"]
    style = styles[0] if styles else ""
    if name in ("dn", "realdn"):
        add_dn_who(who, style or "regex", right, do_expand, text)
    elif name in ("dnattr", "realdnattr"):
        attr = right.lower()
        who.conditions.append(lambda w, t, g, c, attr=attr: c.dnattr(w.ndn, t, attr))
    elif name.startswith("group"):
        parts = left.split(".", 1)[0].split("/")
        oc = parts[1] if len(parts) > 1 and parts[1] else "groupOfNames"
        member = parts[2] if len(parts) > 2 and parts[2] else "member"
        if style not in ("", "exact", "expand", "base"):
            raise ACLError(f'unknown group style "{style}" in "access {text}"')
        expand_it = do_expand or style == "expand"
        who.conditions.append(
            lambda w, t, g, c, dn=right, oc=oc, member=member, ex=expand_it: c.in_group(
                w.ndn, expand(dn, g) if ex else dn, oc, member
            )
        )
    elif name in ("peername", "sockurl", "sockname", "domain"):
        add_peer_who(who, name, style or "exact", right, do_expand, text)
    elif name in ("ssf", "transport_ssf", "tls_ssf", "sasl_ssf"):
        try:
            need = int(right)
        except ValueError:
            raise ACLError(f'{name}: "{right}" is not a number in "access {text}"') from None
        who.conditions.append(lambda w, t, g, c, name=name, need=need: getattr(w, name) >= need)
    elif name == "set":
        if style not in ("", "exact", "expand"):
            raise ACLError(f'set style "{style}" is not supported by pyldapd in "access {text}"')
        try:
            parsed = parse_set(right)
        except SetError as exc:
            raise ACLError(f'{exc} in "access {text}"') from None
        if do_expand or style == "expand":
            who.conditions.append(lambda w, t, g, c, text=right: c.set_true(parse_set(expand(text, g)), w, t))
        else:
            who.conditions.append(lambda w, t, g, c, parsed=parsed: c.set_true(parsed, w, t))
    elif name in ("dynacl", "aci"):
        raise ACLError(f'<who> "{name}" is not supported by pyldapd in "access {text}"')
    else:
        raise ACLError(f'unknown <who> clause "{word}" in "access {text}"')


def self_matches(user: str, target: str, level: int) -> bool:
    if not user:
        return False
    if level > 0:
        for _ in range(level):
            user = split_rdn(user)[1] if user else ""
    elif level < 0:
        for _ in range(-level):
            target = split_rdn(target)[1] if target else ""
    return user == target


def add_dn_who(who: Who, style: str, pattern: str, do_expand: bool, text: str) -> None:
    if style.startswith("level{"):
        if not re.fullmatch(r"level\{\d+\}", style):
            raise ACLError(f'bad dn style "{style}" in "access {text}"')
        kind = style
    elif style in DN_STYLES:
        kind = DN_STYLES[style]
    elif style == "anonymous":
        who.conditions.append(lambda w, t, g, c: not w.ndn)
        return
    elif style == "users":
        who.conditions.append(lambda w, t, g, c: bool(w.ndn))
        return
    else:
        raise ACLError(f'unknown dn style "{style}" in "access {text}"')
    if kind == "regex":
        if pattern in ("*", ".*", "^.*$"):
            return  # anybody, as slapd reads it
        if "$" in pattern.replace("$$", "") and re.search(r"\$(\d|\{)", pattern):
            who.conditions.append(
                lambda w, t, g, c, p=pattern: bool(compile_regex(expand(p, g)).search(w.ndn))
            )
            return
        regex = compile_regex(pattern.replace("$$", "$"))
        who.conditions.append(lambda w, t, g, c, r=regex: bool(r.search(w.ndn)))
        return
    if do_expand:
        who.conditions.append(
            lambda w, t, g, c, p=pattern, k=kind: dn_matches(k, c.normalize(expand(p, g)), w.ndn)
        )
        return
    normalized: dict[str, str] = {}

    def cond(w: Accessor, t: Target, g: list[str], c: Any, p: str = pattern, k: str = kind) -> bool:
        if not w.ndn:
            return False
        if p not in normalized:
            normalized[p] = c.normalize(p)
        return dn_matches(k, normalized[p], w.ndn)

    who.conditions.append(cond)


def add_peer_who(who: Who, name: str, style: str, pattern: str, do_expand: bool, text: str) -> None:
    field_name = "peer" if name in ("peername", "domain") else "sockurl"
    if style == "regex":
        regex = compile_regex(pattern)
        who.conditions.append(lambda w, t, g, c, f=field_name, r=regex: bool(r.search(getattr(w, f))))
    elif style == "ip" and name == "peername":
        addr, _, rest = pattern.partition("%")
        port = None
        if "{" in (rest or addr):
            holder = rest if rest else addr
            holder, _, port_text = holder.partition("{")
            port = int(port_text.rstrip("}"))
            if rest:
                rest = holder
            else:
                addr = holder
        mask = rest or "255.255.255.255"
        try:
            network = ipaddress.ip_network(f"{addr}/{mask}", strict=False)
        except ValueError:
            raise ACLError(f'bad peername.ip "{pattern}" in "access {text}"') from None
        who.conditions.append(lambda w, t, g, c, n=network, p=port: peer_in(w.peer, n, p))
    elif style == "path":
        who.conditions.append(lambda w, t, g, c, p=pattern: w.peer == "PATH=" + p)
    elif style in ("exact", "expand", "base", "ipv6"):
        if style == "ipv6":
            raise ACLError(f'peername.ipv6 is not supported by pyldapd in "access {text}"')
        ex = do_expand or style == "expand"
        who.conditions.append(
            lambda w, t, g, c, f=field_name, p=pattern, ex=ex: getattr(w, f) == (expand(p, g) if ex else p)
        )
    else:
        raise ACLError(f'unknown {name} style "{style}" in "access {text}"')


def peer_in(peer: str, network: Any, port: int | None) -> bool:
    if not peer.startswith("IP="):
        return False
    host, _, port_text = peer[3:].rpartition(":")
    try:
        if ipaddress.ip_address(host.strip("[]")) not in network:
            return False
    except ValueError:
        return False
    return port is None or port_text == str(port)


# -- evaluation ---------------------------------------------------------------------------------------------


class Policy:
    """The access rules that apply to one database (its own, then the frontend's)."""

    def __init__(self, rules: list[Rule], schema: Any, normalize: Callable[[str], str]) -> None:
        self.rules = rules
        self.schema = schema
        self.default = not rules
        for rule in rules:
            compile_rule(rule, schema, normalize)

    def mask(self, who: Accessor, target: Target, ctx: Any) -> int:
        """The privileges `who` has on `target`."""
        if self.default:
            return DEFAULT_POLICY
        mask = 0
        for rule in self.rules:
            groups = rule.match_dn(target.ndn)
            if groups is None:
                continue
            if not rule.match_attr(target, self.schema):
                continue
            if rule.val is not None:
                if target.value is None or not ctx.value_matches(rule, target):
                    continue
            if rule.matcher is not None:
                if target.entry is None or not rule.matcher(target.entry):
                    continue
            control = None
            for clause in rule.clauses:
                if not clause.matches(who, target, groups, ctx):
                    continue
                mask = clause.apply(mask)
                control = clause.control
                if control != CONTINUE:
                    break
            if control == BREAK:
                continue
            if control in (None, CONTINUE):
                return 0  # the implicit `by * none stop`
            return mask
        return 0  # the implicit `access to * by * none`

    def allowed(self, who: Accessor, target: Target, need: int, ctx: Any) -> bool:
        if self.default:
            return (DEFAULT_POLICY & need) == need
        return (self.mask(who, target, ctx) & need) == need


def compile_rule(rule: Rule, schema: Any, normalize: Callable[[str], str]) -> None:
    if rule.dn_style not in (None, "regex"):
        try:
            rule.dn_pattern = normalize(rule.dn_pattern)
        except (DNError, ValueError):
            raise ACLError(f'bad DN "{rule.dn_pattern}" in "access {rule.text}"') from None
    if rule.filter is not None and schema is not None:
        from pyldapd.model.filter import FilterEvaluator

        rule.matcher = FilterEvaluator(schema).compile(rule.filter)
    if rule.attrs is not None:
        for name in rule.attrs:
            lower = name.lower()
            if lower in (ENTRY, CHILDREN):
                rule.attr_keys.add(lower)
                continue
            if lower.startswith(("@", "!")):
                oc = schema.object_class(name[1:]) if schema is not None else None
                if oc is None:
                    raise ACLError(f'unknown objectClass "{name[1:]}" in "access {rule.text}"')
                (rule.class_in if lower[0] == "@" else rule.class_out).append(oc)
                continue
            at = schema.attribute_type(name.split(";", 1)[0]) if schema is not None else None
            if at is not None:
                rule.attr_keys.add(at.key)
                continue
            oc = schema.object_class(name) if schema is not None else None
            if oc is not None:
                rule.class_in.append(oc)
                continue
            raise ACLError(f'unknown attribute "{name}" in "access {rule.text}"')
    if rule.val is not None:
        style, pattern = rule.val
        key = next(iter(rule.attr_keys), None)
        at = schema.attribute_type(key) if schema is not None and key else None
        rule.val_key = at
        if style != "regex":
            if style == "base" and at is not None and at.equality is not None and not is_dn_syntax(at):
                normalized = at.equality.normalize(pattern.encode())
                rule.val = (style, normalized if normalized is not None else pattern.encode())
            else:
                try:
                    rule.val = (style, normalize(pattern))
                except (DNError, ValueError):
                    raise ACLError(f'bad DN value "{pattern}" in "access {rule.text}"') from None


def is_dn_syntax(at: Any) -> bool:
    return at is not None and at.syntax.oid in (
        "1.3.6.1.4.1.1466.115.121.1.12",
        "1.3.6.1.4.1.1466.115.121.1.34",
    )


class AccessContext:
    """What evaluating `who` clauses needs from the directory: group and DN lookups, value normalization."""

    def __init__(self, schema: Any, lookup: Callable[[str], Entry | None]) -> None:
        self.schema = schema
        self.lookup = lookup
        self.groups: dict[tuple[str, str, str, str], bool] = {}

    def normalize(self, dn: str) -> str:
        return normalize_dn(dn, self.schema)

    def normalize_value(self, value: bytes) -> str:
        try:
            return normalize_dn(value.decode("utf-8"), self.schema)
        except (DNError, UnicodeDecodeError, ValueError):
            return ""

    def set_true(self, parsed: list[Any], who: Accessor, target: Target) -> bool:
        try:
            return SetEvaluator(self.schema, self.lookup).true(parsed, target.ndn, who.ndn)
        except SetError:  # an expanded set that does not parse grants nothing
            return False

    def dnattr(self, user: str, target: Target, attr: str) -> bool:
        if not user or target.entry is None:
            return False
        at = self.schema.attribute_type(attr)
        key = at.key if at is not None else attr
        return any(self.normalize_value(v) == user for v in target.entry.get(key))

    def in_group(self, user: str, group_dn: str, oc_name: str, member: str) -> bool:
        if not user:
            return False
        try:
            group_ndn = self.normalize(group_dn)
        except (DNError, ValueError):
            return False
        cache_key = (user, group_ndn, oc_name.lower(), member.lower())
        if cache_key in self.groups:
            return self.groups[cache_key]
        result = False
        group = self.lookup(group_ndn)
        if group is not None:
            oc = self.schema.object_class(oc_name)
            wanted = {oc_name.lower()} | ({oc.name.lower(), oc.oid} if oc is not None else set())
            has_class = any(v.decode("utf-8", "replace").lower() in wanted for v in group.get("objectclass"))
            at = self.schema.attribute_type(member)
            key = at.key if at is not None else member.lower()
            if has_class:
                for value in group.get(key):
                    text = value.decode("utf-8", "replace")
                    if "#'" in text:  # nameAndOptionalUID
                        text = text.rsplit("#'", 1)[0]
                    try:
                        if self.normalize(text) == user:
                            result = True
                            break
                    except (DNError, ValueError):
                        continue
        self.groups[cache_key] = result
        return result

    def value_matches(self, rule: Rule, target: Target) -> bool:
        assert rule.val is not None and target.value is not None
        style, pattern = rule.val
        if style == "regex":
            return bool(pattern.search(target.value.decode("utf-8", "replace")))
        at = rule.val_key
        if style == "base" and not is_dn_syntax(at):
            if at is not None and at.equality is not None:
                return at.equality.normalize(target.value) == pattern
            return target.value == pattern
        value = self.normalize_value(target.value)
        if not value and target.value:
            return False
        return dn_matches(style, pattern, value)
