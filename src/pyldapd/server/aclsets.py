"""`by set="..."` of slapd.access(5): a set expression is true when its value is not empty.

The expression language of OpenLDAP's sets.c, as far as pyldapd implements it:

    expr    := operand (("&" | "|" | "+") operand)*     evaluated left to right, as slapd's parser does
    operand := ("[" literal "]" | "this" | "user" | "(" expr ")") ("/" attribute ["*"])*

`this` is the DN of the entry being accessed, `user` the DN of the requester (empty for anonymous); `/attr` replaces
each DN of the set with the values of `attr` in that entry, `/attr*` with every value reachable through `attr`
recursively (a group's members and its nested groups' members); `&` is the intersection, `|` the union and `+` the
concatenation of each pair of strings. Strings compare as DNs (normalized) when they are DNs, otherwise without
regard to case. Anything else in the expression (set.regex, set.expand, slapd's `/-` and `/entryDN` forms) is
refused when the configuration is read, never accepted and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pyldapd.model.dn import DNError, normalize_dn
from pyldapd.model.entry import Entry

# bounds on work per evaluation, so a cyclic or huge membership graph cannot hang an operation
MAX_SET_SIZE = 10_000
MAX_CHASED = 10_000

_TOKEN = re.compile(r"\s*(?:(\[[^\]]*\])|(\()|(\))|([&|+])|(/[A-Za-z0-9;._-]+\*?)|([A-Za-z]+))")


class SetError(ValueError):
    pass


@dataclass
class _Operand:
    kind: str  # "literal", "this", "user", "expr"
    value: object  # the literal text, or a parsed expression
    steps: list[tuple[str, bool]]  # (attribute, closure)


def parse_set(text: str) -> list[object]:
    """[operand, op, operand, ...]; SetError on anything slapd's grammar (as implemented here) does not take."""
    tokens: list[tuple[int, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SetError(f"set: cannot parse at {text[pos:]!r}")
        index = m.lastindex or 0
        tokens.append((index, m.group(index)))
        pos = m.end()
    expr, rest = _parse_expr(tokens, 0)
    if rest != len(tokens):
        raise SetError(f"set: unexpected {tokens[rest][1]!r}")
    return expr


def _parse_expr(tokens: list[tuple[int, str]], i: int) -> tuple[list[object], int]:
    operand, i = _parse_operand(tokens, i)
    expr: list[object] = [operand]
    while i < len(tokens) and tokens[i][0] == 4:
        op = tokens[i][1]
        operand, i = _parse_operand(tokens, i + 1)
        expr += [op, operand]
    return expr, i


def _parse_operand(tokens: list[tuple[int, str]], i: int) -> tuple[_Operand, int]:
    if i >= len(tokens):
        raise SetError("set: an operand is missing")
    kind, value = tokens[i]
    if kind == 1:
        operand = _Operand("literal", value[1:-1], [])
        i += 1
    elif kind == 2:
        inner, i = _parse_expr(tokens, i + 1)
        if i >= len(tokens) or tokens[i][0] != 3:
            raise SetError("set: missing )")
        operand = _Operand("expr", inner, [])
        i += 1
    elif kind == 6 and value.lower() in ("this", "user"):
        operand = _Operand(value.lower(), None, [])
        i += 1
    else:
        raise SetError(f"set: unexpected {value!r}")
    while i < len(tokens) and tokens[i][0] == 5:
        step = tokens[i][1][1:]
        closure = step.endswith("*")
        operand.steps.append((step.rstrip("*"), closure))
        i += 1
    return operand, i


class SetEvaluator:
    """Evaluates parsed sets against the directory (`lookup` of a normalized DN gives the entry or None)."""

    def __init__(self, schema: object, lookup: Callable[[str], Entry | None]) -> None:
        self.schema = schema
        self.lookup = lookup

    def key(self, value: str) -> str:
        try:
            return "dn:" + normalize_dn(value, self.schema)
        except (DNError, ValueError):
            return "v:" + value.lower()

    def true(self, expr: list[object], this: str, user: str) -> bool:
        return bool(self.evaluate(expr, this, user))

    def evaluate(self, expr: list[object], this: str, user: str) -> dict[str, str]:
        result = self._operand(expr[0], this, user)  # type: ignore[arg-type]
        for i in range(1, len(expr), 2):
            op, right = expr[i], self._operand(expr[i + 1], this, user)  # type: ignore[arg-type]
            if op == "&":
                result = {k: v for k, v in result.items() if k in right}
            elif op == "|":
                result = {**result, **{k: v for k, v in right.items() if k not in result}}
            else:
                joined = [a + b for a in result.values() for b in right.values()][:MAX_SET_SIZE]
                result = {self.key(s): s for s in joined}
        return result

    def _operand(self, operand: _Operand, this: str, user: str) -> dict[str, str]:
        if operand.kind == "literal":
            values = [str(operand.value)]
        elif operand.kind == "this":
            values = [this] if this else []
        elif operand.kind == "user":
            values = [user] if user else []
        else:
            values = list(self.evaluate(operand.value, this, user).values())  # type: ignore[arg-type]
        current = {self.key(v): v for v in values}
        for attribute, closure in operand.steps:
            current = self._chase(current, attribute, closure)
        return current

    def _values(self, dn_key: str, attribute: str) -> list[str]:
        if not dn_key.startswith("dn:"):
            return []
        entry = self.lookup(dn_key[3:])
        if entry is None:
            return []
        at = self.schema.attribute_type(attribute)  # type: ignore[attr-defined]
        key = at.key if at is not None else attribute.lower()
        return [v.decode("utf-8", "replace") for v in entry.get(key)]

    def _chase(self, start: dict[str, str], attribute: str, closure: bool) -> dict[str, str]:
        result: dict[str, str] = {}
        pending = list(start)
        seen: set[str] = set()
        chased = 0
        while pending and chased < MAX_CHASED and len(result) < MAX_SET_SIZE:
            dn_key = pending.pop(0)
            if dn_key in seen:
                continue
            seen.add(dn_key)
            chased += 1
            for value in self._values(dn_key, attribute):
                key = self.key(value)
                if key not in result:
                    result[key] = value
                    if closure:
                        pending.append(key)
        return result
