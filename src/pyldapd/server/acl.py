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
from urllib.parse import unquote

from pyldapd.model.dn import DNError, is_descendant, normalize_dn, split_rdn
from pyldapd.model.entry import Entry
from pyldapd.model.filter import FilterError, parse_filter

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


class Submatches(list):
    """A rule's DN regex submatches ($n, ${n}) and, when its `val.regex` matched, the value's (${vn})."""

    def __init__(self, dn_groups: list[str], value_groups: list[str]) -> None:
        super().__init__(dn_groups)
        self.value_groups = value_groups


def expand(template: str, groups: list[str]) -> str:
    """Substitute `$n` / `${n}` with the DN's regex submatches, `${vn}` with the value's (slapd's
    acl_string_expand); `$$` is a dollar."""
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
                source = groups
                if body.startswith("d"):
                    body = body[1:]
                elif body.startswith("v"):
                    body = body[1:]
                    source = getattr(groups, "value_groups", [])
                if body.isdigit():
                    n = int(body)
                    out.append(source[n] if n < len(source) and source[n] is not None else "")
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
        self.has_set = False  # slapd allows one `set` per `by` clause

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
        add_set_who(who, modifiers, right, text)
    elif name in ("dynacl", "aci"):
        raise ACLError(f'<who> "{name}" is not supported by pyldapd in "access {text}"')
    else:
        raise ACLError(f'unknown <who> clause "{word}" in "access {text}"')


SET_STYLES = {"": False, "exact": False, "base": False, "baseobject": False, "expand": True, "regex": True}
OTHER_STYLES = ("one", "onelevel", "sub", "subtree", "children", "ip", "ipv6", "path")


def add_set_who(who: Who, modifiers: list[str], pattern: str, text: str) -> None:
    """`set[.exact|.expand]="<expression>"`, read as slapd's aclparse.c reads it; the expression itself is only
    checked when evaluated (a malformed one never matches), as in slapd."""
    style = modifiers[0].lower() if modifiers else ""
    if style.startswith("level") or style in OTHER_STYLES:
        raise ACLError(f'inappropriate style "{style}" in by clause in "access {text}"')
    if style not in SET_STYLES:
        raise ACLError(f'unknown style "{style}" in by clause in "access {text}"')
    if who.has_set:
        raise ACLError(f'set attribute already specified in "access {text}"')
    if not pattern:
        raise ACLError(f'no set is defined in "access {text}"')
    who.has_set = True
    if not SET_STYLES[style]:
        who.conditions.append(lambda w, t, g, c, p=pattern: evaluate_set(p, w.ndn, t.ndn, c, t.entry))
        return

    def expanded(w: Accessor, t: Target, g: list[str], c: Any, p: str = pattern) -> bool:
        # slapd's acl_string_expand: a $n naming no submatch makes the clause not match
        for m in _SET_REFS.finditer(p):
            if m.group(0) == "$$":
                continue
            n = m.group(1) or m.group(2)
            if n is None or int(n) >= len(g) or g[int(n)] is None:
                return False
        return evaluate_set(expand(p, g), w.ndn, t.ndn, c, t.entry)

    who.conditions.append(expanded)


# $$ (a dollar), $n, ${n}, ${dn}; ${vn} (a val.regex submatch) is not available here and matches nothing
_SET_REFS = re.compile(r"\$\$|\$(?:(\d)|\{d?(\d+)\}|\{[^}]*\}?)")


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
                if target.value is None:
                    continue
                found = ctx.value_matches(rule, target)
                if not found:
                    continue
                if isinstance(found, re.Match):  # val.regex: its submatches expand as ${vn}
                    groups = Submatches(groups, [found.group(0), *found.groups()])
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


URL_SCOPES = {"": 0, "base": 0, "one": 1, "onelevel": 1, "sub": 2, "subtree": 2, "children": 3, "subord": 3,
              "subordinate": 3}  # fmt: skip


class AccessContext:
    """What evaluating `who` clauses needs from the directory: group and DN lookups, value normalization."""

    def __init__(self, schema: Any, lookup: Callable[[str], Entry | None],
                 search: Callable[[str, int, Any], list[Entry]] | None = None) -> None:  # fmt: skip
        self.schema = schema
        self.lookup = lookup
        # (base ndn, scope, filter) -> entries, internally and without access control (sets' ldap:/// URLs)
        self.search = search
        self.groups: dict[tuple[str, str, str, str], bool] = {}
        # what set elements gave, for this one operation (the database does not change under it)
        self.set_cache: dict[tuple[bytes, str, tuple[str, ...]], list[bytes]] = {}

    def set_values(self, entry: Entry, at: Any, options: tuple[str, ...]) -> list[bytes]:
        """The normalized values of one attribute description (slapd's a_nvals; no subtypes, as attr_find)."""
        key = at.key + (";" + ";".join(sorted(options)) if options else "")
        values = entry.get(key)
        if at.equality is None:
            return list(values)
        out = []
        for value in values:
            normalized = at.equality.normalize(value)
            out.append(value if normalized is None else normalized)
        return out

    def set_gather(self, name: bytes, at: Any, options: tuple[str, ...], this: str, entry: Entry | None
                   ) -> list[bytes]:  # fmt: skip
        """The values of `at` in the entry a set element names: a DN (read as the backend reads it, no access
        control), or an ldap:///base?attrs?scope?filter URL (an internal search as the rootdn)."""
        text = name.decode("utf-8", "replace")
        cache_key = (name, at.key, options)
        cached = self.set_cache.get(cache_key)
        if cached is not None:
            return cached
        if text[:8].lower() == "ldap:///":
            values = self.set_search(text, at, options)
        else:
            try:
                ndn = self.normalize(text)
            except (DNError, ValueError):
                return []
            if at.key == "entrydn":
                return [ndn.encode("utf-8")]
            if entry is not None and ndn == this:
                return self.set_values(entry, at, options)  # the entry being checked, maybe not stored yet
            source = self.lookup(ndn)
            values = self.set_values(source, at, options) if source is not None else []
        self.set_cache[cache_key] = values
        return values

    def set_search(self, url: str, at: Any, options: tuple[str, ...]) -> list[bytes]:
        parts = url[8:].split("?")
        if len(parts) > 5 or self.search is None:
            return []
        parts += [""] * (5 - len(parts))
        dn, attrs, scope_text, filter_text, exts = (unquote(p) for p in parts)
        if exts:
            return []  # slapd: extensions must be absent
        scope = URL_SCOPES.get(scope_text.lower())
        if scope is None:
            return []
        try:
            base = self.normalize(dn)
            parsed = parse_filter(filter_text or "(objectClass=*)")
        except (DNError, ValueError, FilterError):
            return []
        wanted = []
        for description in (a for a in attrs.split(",") if a):
            known, opts = self.schema.split_description(description)
            if known is not None:
                wanted.append((known, opts))
        wanted.append((at, options))
        out: list[bytes] = []
        for found in self.search(base, scope, parsed):
            for known, opts in wanted:
                if known.key == "entrydn":
                    values = [self.normalize(found.dn).encode("utf-8")]
                else:
                    values = self.set_values(found, known, opts)
                out = set_join(out, "|", values)
        return out

    def normalize(self, dn: str) -> str:
        return normalize_dn(dn, self.schema)

    def normalize_value(self, value: bytes) -> str:
        try:
            return normalize_dn(value.decode("utf-8"), self.schema)
        except (DNError, UnicodeDecodeError, ValueError):
            return ""

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

    def value_matches(self, rule: Rule, target: Target) -> bool | re.Match[str] | None:
        """Does the value match the rule's `val` (for `val.regex`, the match, whose submatches expand)?"""
        assert rule.val is not None and target.value is not None
        style, pattern = rule.val
        if style == "regex":
            return pattern.search(target.value.decode("utf-8", "replace"))
        at = rule.val_key
        if style == "base" and not is_dn_syntax(at):
            if at is not None and at.equality is not None:
                return at.equality.normalize(target.value) == pattern
            return target.value == pattern
        value = self.normalize_value(target.value)
        if not value and target.value:
            return False
        return dn_matches(style, pattern, value)


# -- sets (slapd.access(5) "SETS", OpenLDAP's sets.c) ------------------------------------------------------
#
# A set expression is evaluated the way slapd's slap_set_filter does: left to right with one stack, no operator
# precedence, and any syntax error found on the way making the clause not match (slapd does not check the
# expression when it reads the configuration). Sets are lists of byte strings compared exactly: `this` and
# `user` are normalized DNs, attribute steps give normalized values, `[literals]` stay as written.


class SetSyntaxError(Exception):
    """The expression cannot be evaluated: the `by set` clause does not match."""


_SET_OPS = "|&+"


def _is_set(item: object) -> bool:
    return isinstance(item, list)


def _attr_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch in "-.;")


def set_join(left: list[bytes], op: str, right: list[bytes]) -> list[bytes]:
    if op == "|":
        out = list(left)
        out.extend(v for v in dict.fromkeys(right) if v not in left)
        return out
    if op == "&":
        if not left or not right:
            return []
        short, other = (left, right) if len(left) < len(right) else (right, left)
        return [v for v in short if v in other]
    if op == "+":
        out = []
        for lv in left:
            for rv in right:
                joined = rv if not lv else lv if not rv else lv + rv
                if joined not in out:
                    out.append(joined)
        return out
    raise SetSyntaxError(op)  # slapd's join of an unknown operator ("(" or "/") fails


def set_parents(values: list[bytes], level: int | None) -> list[bytes]:
    """`/-N` (each DN's Nth parent) or `/-*` (each DN and all its ancestors, up to the empty DN)."""
    out: list[bytes] = []
    for value in values:
        chain = [value]
        current = value.decode("utf-8", "replace")
        while current:
            current = split_rdn(current)[1]
            chain.append(current.encode("utf-8"))
        picked = chain if level is None else [chain[min(level, len(chain) - 1)]]
        out.extend(v for v in picked if v not in out)
    return out


def evaluate_set(expression: str, user: str, this: str, ctx: Any, entry: Entry | None) -> bool:
    """True when `expression` gives a non-empty set; a syntax error gives False, as in slapd."""
    try:
        return bool(_evaluate_set(expression, user, this, ctx, entry))
    except SetSyntaxError:
        return False


class _SetStack(list):
    """slapd's evaluation stack holds 64 items: a deeper expression is an error, not unbounded work."""

    def append(self, item: Any) -> None:
        if len(self) >= 63:
            raise SetSyntaxError("overflow")
        super().append(item)


def _evaluate_set(text: str, user: str, this: str, ctx: Any, entry: Entry | None) -> list[bytes]:
    stack = _SetStack()

    def top() -> Any:
        return stack[-1] if stack else None

    def pop() -> Any:
        return stack.pop() if stack else None

    def is_op(item: Any) -> bool:
        return not _is_set(item)  # an empty stack counts as an operator, as slapd's NULL does

    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        i += 1
        if c in " \t\n\r":
            continue
        if c == "(":
            if _is_set(top()):
                raise SetSyntaxError(c)
            stack.append("(")
        elif c == ")":
            value = pop()
            if is_op(value):
                raise SetSyntaxError(c)
            if top() == "(":
                pop()
                stack.append(value)
            elif is_op(top()):
                op, left = pop(), pop()
                pop()
                if left is None:
                    raise SetSyntaxError(c)
                stack.append(set_join(left, op, value))
            else:
                raise SetSyntaxError(c)
        elif c in _SET_OPS:
            value = pop()
            if is_op(value):
                raise SetSyntaxError(c)
            if top() is None or top() == "(":
                stack.append(value)
            elif is_op(top()):
                op, left = pop(), pop()
                stack.append(set_join(left, op, value))
            else:
                raise SetSyntaxError(c)
            stack.append(c)
        elif c == "[":
            if top() == "/" or _is_set(top()):
                raise SetSyntaxError(c)
            end = text.find("]", i)
            if end < 0:
                raise SetSyntaxError(c)
            stack.append([text[i:end].encode("utf-8")])
            i = end + 1
        elif c == "-" and top() == "/" and i < n and (text[i] == "*" or text[i].isdigit()):
            pop()
            if text[i] == "*":
                stack.append(set_parents(pop() or [], None))
                i += 1
            else:
                j = i
                while j < n and text[j].isdigit():
                    j += 1
                level = int(text[i:j])
                value = pop() or []
                stack.append(set_parents(value, level) if level else value)
                i = j
        elif c in "-/":
            if c == "-":  # `->` is another spelling of `/`
                if i >= n or text[i] != ">":
                    raise SetSyntaxError(c)
                i += 1
            if is_op(top()):
                raise SetSyntaxError(c)
            stack.append("/")
        else:
            if not (c.isascii() and c.isalnum()):
                raise SetSyntaxError(c)
            start = i - 1
            j = i
            while j < n and _attr_char(text[j]):
                if text[j] == "-" and not (j + 1 < n and _attr_char(text[j + 1])):
                    break
                j += 1
            name = text[start:j]
            stop = text[j] if j < n else ""
            i = j
            if name in ("this", "user"):
                if top() == "/" or _is_set(top()):
                    raise SetSyntaxError(name)
                if name == "user" and not user:
                    raise SetSyntaxError(name)  # slapd: the anonymous identity is a null DN, not a value
                stack.append([(this if name == "this" else user).encode("utf-8")])
                continue
            if top() != "/":
                raise SetSyntaxError(name)
            pop()
            base = pop() or []
            closure = stop == "*"
            if closure:
                i += 1
            stack.append(set_chase(base, name, closure, ctx, this, entry))
    value = pop()
    if is_op(value):
        raise SetSyntaxError("end")
    if top() is not None:
        if not is_op(top()):
            raise SetSyntaxError("end")
        op, left = pop(), pop()
        if left is None:
            raise SetSyntaxError("end")
        value = set_join(left, op, value)
    return value


def set_chase(values: list[bytes], attr: str, closure: bool, ctx: Any, this: str, entry: Entry | None
              ) -> list[bytes]:  # fmt: skip
    """`set/attr`: the values of attr of every DN in the set; `set/attr*` adds those of the values found, until
    nothing new comes (the transitive closure, e.g. nested groups)."""
    at, options = ctx.schema.split_description(attr)
    if at is None:
        raise SetSyntaxError(attr)  # slap_bv2ad fails: a syntax error
    out: list[bytes] = []
    for value in values:
        out = set_join(out, "|", ctx.set_gather(value, at, options, this, entry))
    if closure:
        k = 0
        while k < len(out) and k < 10_000:  # bounded: each pass appends only values not seen yet
            out = set_join(out, "|", ctx.set_gather(out[k], at, options, this, entry))
            k += 1
    return out
