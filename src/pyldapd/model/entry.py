"""A directory entry: a DN and its attributes, user and operational alike.

Attributes are keyed by the lower-cased attribute description with the type's primary name (so `CN`, `cn` and
`commonName` are one key, `cn;lang-en` another); each keeps the name to show and its values in order.
The schema decides the key (`Schema.attribute_key`); this class only stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Attribute:
    name: str
    values: list[bytes]


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

    def copy(self) -> Entry:
        return Entry(self.dn, {k: Attribute(a.name, list(a.values)) for k, a in self.attrs.items()}, self.id)
