"""A directory entry: a DN and its attributes, user and operational alike.

Attributes are keyed by the lower-cased attribute description with the type's primary name (so `CN`, `cn` and
`commonName` are one key, `cn;lang-en` another); each keeps the name to show and its values in order.
The schema decides the key (`Schema.attribute_key`); this class only stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MANY_VALUES = 32  # an attribute with more values is tested through `Attribute.normalized`, not one by one


def added_at_end(before: list[bytes], after: list[bytes]) -> int | None:
    """How many values `after` adds at the end of `before` (0: the same values), or None when it changed them
    otherwise. The same value objects compare by identity, so a modify's copy of a large list compares fast."""
    n = len(before)
    if after is before or (len(after) == n and after == before):
        return 0
    if len(after) > n and after[:n] == before:
        return len(after) - n
    return None


@dataclass(slots=True)
class Attribute:
    name: str
    values: list[bytes]
    # the values normalized by a rule, kept for the next test of the same values: (the rule, values, their
    # count, the normalized set, whether a value had no normalized form); see `normalized`
    _normalized: tuple[Any, list[bytes], int, frozenset[bytes], bool] | None = field(
        default=None, init=False, compare=False, repr=False
    )

    def normalized(self, rule: Any) -> tuple[frozenset[bytes], bool]:
        """The set of the values' normalized forms under a matching rule (`MatchingRule.normalize_each`) and
        whether some value has none (is invalid for the rule).

        Kept until the values change (another list, or more or fewer values; nothing changes a value in place),
        so that a group of 100,000 members is normalized once, not at each (member=...) search or compare: the
        entry cache keeps a stored entry's attributes across requests, as slapd keeps a_nvals.
        """
        values = self.values
        memo = self._normalized
        if memo is not None and memo[0] is rule and memo[1] is values and memo[2] == len(values):
            return memo[3], memo[4]
        forms = rule.normalize_each(values)
        invalid = None in forms
        found = frozenset(forms if not invalid else [n for n in forms if n is not None])
        self._normalized = (rule, values, len(values), found, invalid)
        return found, invalid

    def extended(self, added: list[bytes]) -> Attribute:
        """A new Attribute: these values, then `added`. What `normalized` knew of these values carries over, so
        the first (member=...) test after a member is added normalizes that member, not the whole group."""
        values = self.values
        grown = Attribute(self.name, values + added)
        memo = self._normalized
        if memo is not None and memo[1] is values and memo[2] == len(values):
            rule, _, _, found, invalid = memo
            forms = rule.normalize_each(added)
            more = None in forms
            found = found.union(forms if not more else [n for n in forms if n is not None])
            grown._normalized = (rule, grown.values, len(grown.values), found, invalid or more)
        return grown


@dataclass(slots=True)
class Entry:
    dn: str
    attrs: dict[str, Attribute] = field(default_factory=dict)
    # Filled by the storage layer: the entry's id in its database, and the BER encoding of the user and
    # operational attribute lists (PartialAttributeList contents) so that a search can send them as stored.
    id: int = 0
    encoded_user: bytes | None = None
    encoded_operational: bytes | None = None

    def get(self, key: str) -> list[bytes]:
        attribute = self.attrs.get(key)
        return attribute.values if attribute is not None else []

    def first(self, key: str) -> bytes | None:
        attribute = self.attrs.get(key)
        return attribute.values[0] if attribute is not None and attribute.values else None

    def put(self, key: str, name: str, values: list[bytes]) -> None:
        if values:
            self.attrs[key] = Attribute(name, list(values))
        else:
            self.attrs.pop(key, None)

    def replace(self, key: str, name: str, values: list[bytes]) -> None:
        """`put` as slapd's replace does it: the attribute is deleted and added anew, so it moves to the end."""
        self.attrs.pop(key, None)
        self.put(key, name, values)

    def copy(self) -> Entry:
        return Entry(self.dn, {k: Attribute(a.name, list(a.values)) for k, a in self.attrs.items()}, self.id)
