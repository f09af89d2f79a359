"""slapd.d directories: load one into a ServerConfig, convert a slapd.conf into one, or write a fresh install."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from pyldapd.config.cnconfig import (
    CONFIG_DN,
    SCHEMA_DN,
    canonical_name,
    config_from_entries,
    config_schema,
    entries_from_config,
    is_ordered,
    make_entry,
    number_values,
    order_of,
    read_slapd_d,
    split_dn,
    strip_order,
    write_slapd_d,
)
from pyldapd.config.model import DatabaseConfig, ServerConfig
from pyldapd.config.slapdconf import load_slapd_conf
from pyldapd.model.entry import Attribute, Entry
from pyldapd.model.ldif import LDIFContent, parse_ldif


def load_slapd_d(directory: str) -> ServerConfig:
    return config_from_entries(read_slapd_d(directory))


def convert_slapd_conf(config_file: str, directory: str) -> None:
    """slaptest -f slapd.conf -F DIR: the same configuration as cn=config entries in DIR."""
    target = Path(directory)
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{directory}: not empty (slaptest converts into an empty directory)")
    write_slapd_d(target, entries_from_config(load_slapd_conf(config_file)))


def init_config(suffix: str, rootdn: str, rootpw: bytes, db_type: str, data_directory: str) -> ServerConfig:
    """The configuration of a fresh install, as Debian's slapd package makes it (database {2} holds the data)."""
    database = DatabaseConfig(type="mdb", declared_type=db_type, suffixes=[suffix], rootdn=rootdn, rootpw=rootpw,
                              directory=os.path.abspath(data_directory), maxsize=1 << 30)  # fmt: skip
    database.indexes = {
        "objectClass": {"eq"},
        "entryUUID": {"eq"},
        "entryCSN": {"eq"},
        "uid": {"eq", "pres", "sub"},
        "cn": {"eq", "pres", "sub"},
        "uidNumber": {"eq"},
        "gidNumber": {"eq"},
        "member": {"eq"},
        "memberUid": {"eq"},
    }
    return ServerConfig(loglevel=256, databases=[database])


# -- slapadd -n0: cn=config entries from LDIF ---------------------------------------------------------------

# The naming attributes whose values slapd numbers among siblings ({n}value), and where the number goes.
SIBLING_ORDERED = {"olcdatabase", "olcoverlay", "olcbackend"}
SCHEMA_PARENT = "cn=schema,cn=config"


class ConfigImportError(ValueError):
    """An entry slapadd -n0 refuses; the text says which entry (and LDIF line) and why."""


def dn_key(dn: str) -> str:
    return ",".join(part.strip().lower() for part in split_dn(dn))


def _rdn_parts(dn: str) -> tuple[str, str, str]:
    """(rdn attribute, rdn value, parent dn) of a config DN."""
    parts = split_dn(dn)
    attr, _, value = parts[0].partition("=")
    return attr.strip(), value.strip(), ",".join(parts[1:])


def _sibling_orders(entries: dict[str, Entry], parent_key: str, attr: str) -> list[int]:
    found = []
    for key in entries:
        if key.partition(",")[2] != parent_key or not key.startswith(attr.lower() + "="):
            continue
        value = key.partition("=")[2].split(",")[0]
        if attr.lower() == "cn" and parent_key == "cn=config":  # cn=module{n}: the number is a suffix
            match = re.search(r"\{(-?\d+)\}$", value)
            found.append(int(match.group(1)) if match else 0)
        else:
            number = order_of(value)
            found.append(number if number is not None else 0)
    return found


def _numbered_rdn(entries: dict[str, Entry], dn: str) -> tuple[str, str | None, str]:
    """slapd's numbering of a new entry's RDN among its siblings: olcDatabase=mdb -> olcDatabase={1}mdb,
    cn=core,cn=schema,cn=config -> cn={0}core, cn=module -> cn=module{0}. Returns (dn, naming attribute, the
    naming value to store) where the value changes, else (dn, None, "")."""
    attr, value, parent = _rdn_parts(dn)
    parent_key = dn_key(parent)
    lower = attr.lower()
    if lower in SIBLING_ORDERED and order_of(value) is None:
        if lower == "olcdatabase" and value.lower() == "frontend":
            number = -1
        elif lower == "olcdatabase" and value.lower() == "config":
            number = 0
        else:
            number = max(_sibling_orders(entries, parent_key, attr) + [-1]) + 1
            if lower == "olcdatabase":
                number = max(number, 1)  # {0} is the config database
        new = f"{{{number}}}{value}"
    elif lower == "cn" and parent_key == SCHEMA_PARENT and order_of(value) is None:
        new = f"{{{len(_sibling_orders(entries, parent_key, attr))}}}{value}"
    elif lower == "cn" and parent_key == "cn=config" and value.lower() == "module":
        modules = [k for k in entries if k.partition(",")[2] == parent_key and k.startswith("cn=module")]
        new = f"module{{{len(modules)}}}"
    else:
        return dn, None, ""
    return f"{attr}={new},{parent}", attr, new


def _order_values(schema, entry: Entry) -> None:
    """X-ORDERED 'VALUES' attributes carry {n} prefixes in slapd.d: given ones keep their order, others are
    numbered in the order written."""
    for attribute in entry.attrs.values():
        if not is_ordered(schema, attribute.name):
            continue
        texts = [v.decode("utf-8", "surrogateescape") for v in attribute.values]
        if all(order_of(t) is not None for t in texts):
            texts.sort(key=lambda t: order_of(t))
        attribute.values = number_values([t.encode("utf-8", "surrogateescape") for t in texts])


def _stamp(entry: Entry, csn_gen, structural: str) -> None:
    csn = csn_gen.next()
    now = (csn[:14] + "Z").encode()
    for name, value in (("structuralObjectClass", structural.encode()), ("entryUUID", str(uuid.uuid1()).encode()),
                        ("creatorsName", b"cn=config"), ("createTimestamp", now), ("entryCSN", csn.encode()),
                        ("modifiersName", b"cn=config"), ("modifyTimestamp", now)):  # fmt: skip
        key = name.lower()
        if key not in entry.attrs:
            entry.attrs[key] = Attribute(name, [value])


def _structural_class(schema, entry: Entry, where: str) -> str:
    """The entry's structural class: the most derived STRUCTURAL one (olcMdbConfig over olcDatabaseConfig)."""
    names = [v.decode() for v in entry.get("objectclass")]
    if not names:
        raise ConfigImportError(f"{where}: no objectClass")
    classes = []
    for name in names:
        oc = schema.object_class(name)
        if oc is None:
            raise ConfigImportError(f'{where}: objectClass "{name}" is not known')
        classes.append(oc)
    structural = [oc for oc in classes if oc.kind == "STRUCTURAL"]
    for oc in structural:
        if not any(oc.name in _superiors(other) for other in structural if other is not oc):
            return oc.name
    return classes[0].name


def _superiors(oc) -> set[str]:
    seen: set[str] = set()
    todo = list(oc.sup)
    while todo:
        sup = todo.pop()
        if sup.name not in seen:
            seen.add(sup.name)
            todo.extend(sup.sup)
    return seen


DEFINITION_OID = re.compile(r"^\s*\(\s*([\w.:;-]+)")
SCHEMA_KINDS = (("olcattributetypes", "olcAttributeTypes", "attributeType"),
                ("olcobjectclasses", "olcObjectClasses", "objectClass"))  # fmt: skip


def _check_schema_duplicates(entries: dict[str, Entry], entry: Entry, key: str, where: str) -> None:
    """A schema entry may not define again an OID that another cn=schema child defines (slapd: "Duplicate
    attributeType"), so loading core.ldif twice fails as it does in slapd."""
    for attr_key, name, kind in SCHEMA_KINDS:
        known = set()
        for other_key, other in entries.items():
            if other_key != key and other_key.partition(",")[2] == SCHEMA_PARENT:
                for value in other.get(attr_key):
                    match = DEFINITION_OID.match(strip_order(value.decode("utf-8", "replace")))
                    if match:
                        known.add(match.group(1).lower())
        for value in entry.get(attr_key):
            match = DEFINITION_OID.match(strip_order(value.decode("utf-8", "replace")))
            if match and match.group(1).lower() in known:
                raise ConfigImportError(f'{where}: {name}: Duplicate {kind}: "{match.group(1)}"')


def import_config_ldif(directory: str, text: str, *, dry_run: bool = False) -> list[str]:
    """slapadd -n0 -F DIR: add the LDIF's cn=config entries to the slapd.d in DIR (an empty or missing DIR gets a
    new one, which must start with cn=config), numbered as slapd numbers them; the whole resulting configuration
    is checked before anything is written. Returns the DNs written."""
    from pyldapd.model.csn import CSNGenerator
    from pyldapd.server.app import StartupError, build_schema

    schema = config_schema()
    root = Path(directory)
    entries: dict[str, Entry] = {}
    if (root / "cn=config.ldif").exists():
        for entry in read_slapd_d(root):
            entries[dn_key(entry.dn)] = entry
    elif root.exists() and any(root.iterdir()):
        raise ConfigImportError(f"{directory}: not empty and holds no cn=config.ldif")
    generated: set[str] = set()  # entries made here that an LDIF entry of the same DN replaces (slapd's too)
    written: list[str] = []
    csn_gen = CSNGenerator(0)
    try:
        records = list(parse_ldif(text))
    except ValueError as exc:
        raise ConfigImportError(f"bad LDIF: {exc}") from None
    for record in records:
        if not isinstance(record, LDIFContent):
            raise ConfigImportError(f"line {getattr(record, 'line', 0)}: change records are not accepted")
        where = f'dn="{record.dn}" (line={record.line})'
        try:
            dn, naming_attr, naming_value = _numbered_rdn(entries, record.dn)
        except IndexError:
            raise ConfigImportError(f"{where}: invalid DN") from None
        key = dn_key(dn)
        if not entries and key != "cn=config":
            raise ConfigImportError(f"{where}: the first entry of a new configuration must be cn=config")
        parent = key.partition(",")[2]
        if key != "cn=config" and parent not in entries:
            raise ConfigImportError(f"{where}: parent entry does not exist")
        if key in entries and key not in generated:
            raise ConfigImportError(f"{where}: already exists")
        entry = make_entry(dn, [(name, list(vals)) for name, vals in record.attributes])
        for attribute in entry.attrs.values():
            if schema.attribute_type(attribute.name) is None:
                raise ConfigImportError(f'{where}: attribute type "{attribute.name}" undefined')
        if naming_attr is not None:
            entry.attrs[schema.attribute_key(naming_attr)] = Attribute(
                canonical_name(schema, naming_attr), [naming_value.encode()]
            )
        _order_values(schema, entry)
        if parent == SCHEMA_PARENT:
            _check_schema_duplicates(entries, entry, key, where)
        _stamp(entry, csn_gen, _structural_class(schema, entry, where))
        generated.discard(key)
        entries[key] = entry
        written.append(key)
        if key == "cn=config":  # slapd makes its built-in children with the first entry
            for extra_dn, attributes in (
                (SCHEMA_DN, [("objectClass", ["olcSchemaConfig"]), ("cn", ["schema"])]),
                (f"olcDatabase={{-1}}frontend,{CONFIG_DN}", [("objectClass", ["olcDatabaseConfig", "olcFrontendConfig"]),
                                                               ("olcDatabase", ["{-1}frontend"])]),
                (f"olcDatabase={{0}}config,{CONFIG_DN}", [("objectClass", ["olcDatabaseConfig"]),
                                                            ("olcDatabase", ["{0}config"]),
                                                            ("olcRootDN", ["cn=config"])]),
            ):  # fmt: skip
                extra_key = dn_key(extra_dn)
                if extra_key not in entries:
                    extra = make_entry(extra_dn, attributes)
                    _stamp(
                        extra,
                        csn_gen,
                        "olcSchemaConfig" if extra_key == SCHEMA_PARENT else "olcDatabaseConfig",
                    )
                    entries[extra_key] = extra
                    generated.add(extra_key)
                    written.append(extra_key)
    ordered = sorted(entries.values(), key=lambda e: len(split_dn(e.dn)))  # parents first
    try:
        config = config_from_entries(ordered)
        build_schema(config)
    except (ValueError, StartupError) as exc:
        raise ConfigImportError(f"the resulting configuration is refused: {exc}") from None
    if not dry_run:
        root.mkdir(parents=True, exist_ok=True)
        write_slapd_d(root, [entries[k] for k in dict.fromkeys(written)])
    return [entries[k].dn for k in dict.fromkeys(written)]
