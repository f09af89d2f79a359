"""Turning client-supplied attributes into entries, and checking entries against the schema.

Result codes and messages follow slapd's (schema_check.c, mods.c) so that clients and scripts that look at them
see the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from pyldapd.model import ordered
from pyldapd.model.dn import DNError, normalize_dn, parse_dn, pretty_dn, rdn_attributes, split_rdn
from pyldapd.model.entry import Attribute, Entry
from pyldapd.model.schema import AttributeType, ContentRule, ObjectClass, Schema, canonical_options
from pyldapd.model.syntaxes import FIRST_COMPONENT_ONLY_SYNTAXES, NO_VALIDATOR_SYNTAXES, is_oid
from pyldapd.protocol.ldap import ResultCode
from pyldapd.server.errors import LDAPError

OBJECT_CLASS = "objectclass"
DN_SYNTAX = "1.3.6.1.4.1.1466.115.121.1.12"


def prettify(schema: Schema, at: AttributeType, values: Sequence[bytes], description: str) -> list[bytes]:
    """Store DN-valued attributes in slapd's pretty form (`UID=X, OU=People` becomes `uid=X,ou=People`),
    objectClass values under the class's primary name (slapd's objectClassPretty: `groupofnames` -> `groupOfNames`),
    and values of a syntax with a pretty form in it (slapd's UUIDPretty lowercases)."""
    if at.oid == OBJECT_CLASS_OID:
        return [_class_name(schema, v) for v in values]
    if at.syntax.oid == NAME_AND_UID_SYNTAX:
        return [_pretty_name_and_uid(schema, v, description, index) for index, v in enumerate(values)]
    if at.syntax.pretty is not None:
        return [_pretty_value(at.syntax.pretty, v, description, index) for index, v in enumerate(values)]
    if at.syntax.oid != DN_SYNTAX:
        return list(values)
    return pretty_dns(schema, values, description)


def _pretty_value(
    pretty: Callable[[bytes], bytes | None], value: bytes, description: str, index: int
) -> bytes:
    prettier = pretty(value)
    if prettier is None:
        raise LDAPError(
            ResultCode.invalidAttributeSyntax, f"{description}: value #{index} invalid per syntax"
        )
    return prettier


PRETTY_KEPT = 1 << 18  # DN values kept in pretty form per schema: a group of 100,000 members fits


def pretty_dns(schema: Schema, values: Sequence[bytes], description: str) -> list[bytes]:
    """DN values in pretty form, each kept by value until the schema changes (the members of a group are the
    DNs of other groups' members). A value that is no DN, or names a type the schema does not know, is invalid
    per syntax, as slapd's dnPretty makes it."""
    kept = schema.derived.get("pretty dn")
    if kept is None:
        kept = schema.derived["pretty dn"] = {}
    out = []
    for index, value in enumerate(values):
        pretty = kept.get(value)
        if pretty is None:
            try:
                pretty = pretty_dn(value.decode("utf-8"), schema).encode()
            except (DNError, UnicodeDecodeError):
                raise LDAPError(
                    ResultCode.invalidAttributeSyntax, f"{description}: value #{index} invalid per syntax"
                ) from None
            if len(kept) >= PRETTY_KEPT:
                kept.clear()
            kept[value] = pretty
        out.append(pretty)
    return out


NAME_AND_UID_SYNTAX = "1.3.6.1.4.1.1466.115.121.1.34"


def _pretty_name_and_uid(schema: Schema, value: bytes, description: str, index: int) -> bytes:
    """slapd's nameUIDPretty: the DN part in pretty form, the optional `#'0101'B` kept as it is; a DN part
    naming a type the schema does not know is invalid per syntax."""
    text = value.decode(errors="replace")
    name, sep, uid = text.rpartition("#'") if text.endswith("'B") and "#'" in text else (text, "", "")
    try:
        return (pretty_dn(name, schema) + sep + uid).encode()
    except (DNError, ValueError):
        raise LDAPError(
            ResultCode.invalidAttributeSyntax, f"{description}: value #{index} invalid per syntax"
        ) from None


OBJECT_CLASS_OID = "2.5.4.0"


def _class_name(schema: Schema, value: bytes) -> bytes:
    oc = schema.object_class(value.decode(errors="replace"))
    return value if oc is None else oc.name.encode()


def stored_description(at: AttributeType, description: str) -> str:
    """The name an attribute is kept under, as slapd's: its type's primary name (`objectclass` and `2.5.4.0` are
    stored and returned as `objectClass`), its options lowercased, once each and sorted (`CN;lang-en-US`
    becomes `cn;lang-en-us`)."""
    if ";" not in description:
        return at.name
    options = canonical_options(option for option in description.split(";")[1:] if option)
    return at.name + "".join(";" + option for option in options)


def equality_key(at: AttributeType | None, value: bytes) -> bytes:
    """What makes two values "the same value" of an attribute; raw bytes when the type has no equality rule."""
    if at is not None and at.equality is not None:
        normalized = at.equality.normalize(value)
        if normalized is not None:
            return normalized
    return value


def equality_keys(at: AttributeType, values: Sequence[bytes]) -> list[bytes]:
    """`equality_key` of each value, in order (the rule's bulk path: a group's 50,000 members at once)."""
    if at.equality is None:
        return list(values)
    forms = at.equality.normalize_each(values)
    if None in forms:
        return [v if f is None else f for f, v in zip(forms, values, strict=True)]
    return forms  # type: ignore[return-value]


_OPTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def resolve_type(schema: Schema, description: str) -> AttributeType:
    """The type of an attribute description of an add, a modify or a compare; its options as slapd's
    ad_str2desc takes them: letters, digits and hyphens; language tags (`lang-`, the only `attributeoptions`
    prefix pyldapd accepts, slapd's default), and `binary` only with a syntax that requires it."""
    at, options = schema.split_description(description)
    if at is None:
        raise LDAPError(ResultCode.undefinedAttributeType, f"{description}: attribute type undefined")
    if options:
        for option in description.split(";")[1:]:
            if not _OPTION_CHARS.issuperset(option):
                raise LDAPError(ResultCode.undefinedAttributeType,
                                f"{description}: AttributeDescription contains inappropriate characters")  # fmt: skip
            if option.lower() == "binary":
                if not at.syntax.binary:
                    raise LDAPError(ResultCode.undefinedAttributeType,
                                    f'{description}: option "binary" not supported with type')  # fmt: skip
            elif not option.lower().startswith("lang-"):  # slapd's tagging options: `attributeoptions lang-`
                raise LDAPError(ResultCode.undefinedAttributeType, f"{description}: unrecognized option")
    return at


def validate_values(at: AttributeType, description: str, values: Sequence[bytes], first: int = 0) -> None:
    oid = at.syntax.oid
    if oid in NO_VALIDATOR_SYNTAXES and values:
        raise LDAPError(ResultCode.invalidAttributeSyntax, f"{description}: no validator for syntax {oid}")
    if oid in FIRST_COMPONENT_ONLY_SYNTAXES and values:
        problem = "normalization failed" if is_oid(values[0]) else "invalid per syntax"
        raise LDAPError(ResultCode.invalidAttributeSyntax, f"{description}: value #{first} {problem}")
    for index, value in enumerate(values, first):
        if not at.syntax.validate(value):
            raise LDAPError(
                ResultCode.invalidAttributeSyntax, f"{description}: value #{index} invalid per syntax"
            )


def check_request_values(
    at: AttributeType, description: str, values: Sequence[bytes], schema: Schema | None = None
) -> None:
    """The values of one attribute of an add or one change of a modify, as slapd's slap_mods_check: syntax,
    one value for a single-valued type, no value twice. With the schema, DN values are checked by making their
    pretty form (kept for `prettify`), so that each is parsed once."""
    if schema is not None:
        check_syntax(schema, at, description, values)
    else:
        validate_values(at, description, values)
    if len(values) > 1:
        if at.single_value:
            raise LDAPError(ResultCode.constraintViolation, f"{description}: multiple values provided")
        if ordered.ordered_kind(at) is not None:  # `{1}x` and `{3}x` differ, `{1}x` and `x` do not
            for index, value in enumerate(values):
                for first in range(index):
                    if ordered.assertion_matches(values[first], value, lambda a, b: equality_key(
                            at, a) == equality_key(at, b)):  # fmt: skip
                        raise LDAPError(
                            ResultCode.attributeOrValueExists,
                            f"{description}: value #{first} provided more than once",
                        )
            return
        first_of: dict[bytes, int] = {}
        for index, value in enumerate(values):
            first = first_of.setdefault(equality_key(at, value), index)
            if first != index:
                raise LDAPError(
                    ResultCode.attributeOrValueExists,
                    f"{description}: value #{first} provided more than once",
                )


def entry_from_attributes(
    schema: Schema, dn: str, attributes: Iterable[tuple[str, Sequence[bytes]]]
) -> Entry:
    """Build an entry from an AddRequest's attribute list, refusing what slapd refuses."""
    entry = Entry(dn)
    checked = []
    for description, values in attributes:  # every attribute's values first, as slapd's slap_mods_check
        at = resolve_type(schema, description)
        if not values:
            raise LDAPError(ResultCode.protocolError, f"{description}: no values for attribute type")
        check_request_values(at, description, values, schema)
        checked.append((at, description, prettify(schema, at, values, description)))
    for at, description, values in checked:  # then one attribute per description (slap_mods2entry)
        key = schema.attribute_key(description)
        name = stored_description(at, description)
        if key in entry.attrs:
            raise LDAPError(ResultCode.attributeOrValueExists, f"attribute '{name}' provided more than once")
        entry.attrs[key] = Attribute(name, values)
    return entry


# NO-USER-MODIFICATION types the Relax Rules control lets a client write (slapd's SLAP_AT_MANAGEABLE), with
# `manage` access to them: what a copied or restored entry carries over from where it was made
MANAGEABLE = frozenset({"createtimestamp", "modifytimestamp", "creatorsname", "modifiersname", "entryuuid"})


def check_no_user_modification(
    schema: Schema, descriptions: Iterable[str], verb: str = "", *, relax: bool = False
) -> None:
    """slapd's slap_mods_no_user_mod_check; with the Relax Rules control the MANAGEABLE types pass."""
    prefix = f"{verb}: " if verb else ""
    for description in descriptions:
        at, _ = schema.split_description(description)
        if at is None or not at.no_user_modification:
            continue
        if relax and at.key in MANAGEABLE:
            continue
        why = "no-user-modification attribute not manageable" if relax else "no user modification allowed"
        raise LDAPError(ResultCode.constraintViolation, f"{prefix}{description}: {why}")


def check_obsolete_attributes(
    schema: Schema, changes: Iterable[tuple[str, int, Sequence[bytes]]], *, relax: bool = False
) -> None:
    """slapd's slap_mods_obsolete_check over (description, operation, values): an OBSOLETE type may only be
    taken away whole (a replace or delete with no values), unless the Relax Rules control is given."""
    if relax:
        return
    for description, operation, values in changes:
        at, _ = schema.split_description(description)
        if at is not None and at.obsolete and (operation not in (MOD_REPLACE, MOD_DELETE) or values):
            raise LDAPError(ResultCode.constraintViolation, f"{description}: attribute is obsolete")


def object_classes(schema: Schema, entry: Entry) -> list[ObjectClass]:
    return known_classes(schema, entry.get(OBJECT_CLASS))


def known_classes(
    schema: Schema, values: Sequence[bytes], description: str = "objectClass"
) -> list[ObjectClass]:
    classes = []
    for index, value in enumerate(values):
        oc = schema.object_class(value.decode("utf-8", "replace"))
        if oc is None:
            raise LDAPError(
                ResultCode.invalidAttributeSyntax, f"{description}: value #{index} invalid per syntax"
            )
        classes.append(oc)
    return classes


def superclasses(oc: ObjectClass) -> set[str]:
    found: set[str] = set()
    stack = [oc]
    while stack:
        current = stack.pop()
        if current.oid in found:
            continue
        found.add(current.oid)
        stack.extend(current.sup)
    return found


def structural_class(classes: list[ObjectClass]) -> ObjectClass | None:
    """The one structural class all other structural classes of the entry derive from, as X.501 requires."""
    structural = [oc for oc in classes if oc.kind == "STRUCTURAL"]
    if not structural:
        return None
    best = structural[0]
    for oc in structural[1:]:
        if best.oid in superclasses(oc):
            best = oc
        elif oc.oid not in superclasses(best):
            raise LDAPError(
                ResultCode.objectClassViolation,
                f"invalid structural object class chain ({best.name}/{oc.name})",
            )
    return best


class _ClassRules:
    """What a set of object classes (and the DIT content rule of their structural class) demands and allows,
    worked out once per schema and set of values."""

    __slots__ = ("structural", "content_rule", "checks", "allowed", "extensible", "verdicts")

    def __init__(
        self, classes: list[ObjectClass], structural: ObjectClass, content_rule: ContentRule | None
    ) -> None:
        self.structural = structural
        self.content_rule = content_rule
        # per class, in the order of the objectClass values (slapd's): an auxiliary class the content rule does
        # not list is refused before the next class's required attributes are looked at
        self.checks: list[tuple[ObjectClass, str | None, tuple[AttributeType, ...]]] = []
        allowed: set[str] = set()
        for oc in classes:
            refused = None
            if oc.kind == "AUXILIARY" and content_rule is not None and oc not in content_rule.aux:
                refused = f"class '{oc.name}' not allowed by content rule '{content_rule.name}'"
            self.checks.append((oc, refused, oc.all_must()))
            allowed.update(at.key for at in oc.all_must())
            allowed.update(at.key for at in oc.all_may())
        if content_rule is not None:
            allowed.update(at.key for at in content_rule.must + content_rule.may)
        self.allowed = allowed
        self.extensible = any(oc.name.lower() == "extensibleobject" for oc in classes)
        self.verdicts: dict[str, bool] = {}  # attribute type key -> allowed by these classes


def _class_rules(schema: Schema, entry: Entry, values: list[bytes]) -> _ClassRules:
    cache = schema.derived.get("class rules")
    if cache is None:
        cache = schema.derived["class rules"] = {}
    key = tuple(values)
    rules = cache.get(key)
    if rules is None:
        classes = object_classes(schema, entry)
        structural = structural_class(classes)
        if structural is None:
            raise LDAPError(ResultCode.objectClassViolation, "no structural object class provided")
        rules = _ClassRules(classes, structural, schema.content_rule(structural))
        if len(cache) > 10_000:
            cache.clear()
        cache[key] = rules
    return rules


def check_entry(
    schema: Schema,
    entry: Entry,
    *,
    check_rdn: bool = True,
    old_structural: bytes | None = None,
    relax: bool = False,
) -> ObjectClass:
    """Schema checks slapd makes on every add, modify and rename, in its order (entry_schema_check); returns the
    structural object class. old_structural: the entry's structural class before a modify (it may not change).
    relax: the Relax Rules control (slapd's `manage`): OBSOLETE classes, content rules and naming types are
    allowed, and the structural class may change (the caller stores the new one)."""
    typed: list[tuple[Attribute, AttributeType]] = []
    for attribute in entry.attrs.values():
        at, _ = schema.split_description(attribute.name)
        if at is None:
            raise LDAPError(ResultCode.undefinedAttributeType, f"{attribute.name}: attribute type undefined")
        typed.append((attribute, at))
        if at.single_value and len(attribute.values) > 1:
            raise LDAPError(
                ResultCode.constraintViolation, f"attribute '{attribute.name}' cannot have multiple values"
            )
    values = entry.get(OBJECT_CLASS)
    if not values:
        raise LDAPError(ResultCode.objectClassViolation, "no objectClass attribute")
    rules = _class_rules(schema, entry, values)
    if not relax:
        # the class the entry was made with (slapd reads its structuralObjectClass), else the one found
        current = schema.object_class(old_structural.decode()) if old_structural is not None else None
        if current is None:
            current = rules.structural
        if current.obsolete:
            name = old_structural.decode() if old_structural is not None else current.name
            raise LDAPError(ResultCode.objectClassViolation, f"structuralObjectClass '{name}' is OBSOLETE")
    if (
        not relax
        and old_structural is not None
        and rules.structural.name.lower() != old_structural.decode().lower()
    ):
        raise LDAPError(
            ResultCode.objectClassModsProhibited,
            f"structural object class modification from '{old_structural.decode()}' to "
            f"'{rules.structural.name}' not allowed",
        )
    if check_rdn:
        check_rdn_values(schema, entry, relax=relax)
    present = {key.partition(";")[0] for key in entry.attrs}
    cr = rules.content_rule
    if cr is not None:
        if cr.obsolete and not relax:
            raise LDAPError(ResultCode.objectClassViolation, f"content rule '{cr.name}' is obsolete")
        for at in cr.must:
            if at.key not in present:
                raise LDAPError(
                    ResultCode.objectClassViolation,
                    f"content rule '{cr.name}' requires attribute '{at.name}'",
                )
        for at in cr.not_:
            if at.key in present:
                raise LDAPError(
                    ResultCode.objectClassViolation,
                    f"content rule '{cr.name}' precluded attribute '{at.name}'",
                )
    for index, (oc, refused, must) in enumerate(rules.checks):
        if oc.obsolete and not relax:  # named as the objectClass value spells it
            raise LDAPError(
                ResultCode.objectClassViolation, f"objectClass '{values[index].decode()}' is OBSOLETE"
            )
        if refused is not None:
            raise LDAPError(ResultCode.objectClassViolation, refused)
        for at in must:
            if at.key not in present:
                raise LDAPError(
                    ResultCode.objectClassViolation,
                    f"object class '{oc.name}' requires attribute '{at.name}'",
                )
    if rules.extensible:
        return rules.structural
    verdicts = rules.verdicts
    for attribute, at in typed:
        if at.operational:
            continue
        allowed = verdicts.get(at.key)
        if allowed is None:
            allowed = verdicts[at.key] = allowed_by(at, rules.allowed)
        if not allowed:
            raise LDAPError(ResultCode.objectClassViolation, f"attribute '{attribute.name}' not allowed")
    return rules.structural


def allowed_by(at: AttributeType, allowed: set[str]) -> bool:
    current: AttributeType | None = at
    while current is not None:
        if current.key in allowed:
            return True
        current = current.sup
    return False


def check_rdn_values(schema: Schema, entry: Entry, *, relax: bool = False) -> None:
    rdn, _ = split_rdn(entry.dn)
    for attr, value in rdn_attributes(rdn):
        at = schema.attribute_type(attr)
        if at is None:
            raise LDAPError(ResultCode.namingViolation, f"naming attribute '{attr}' is not defined")
        if at.obsolete and not relax:
            raise LDAPError(ResultCode.namingViolation, f"naming attribute '{attr}' is obsolete")
        present = entry.get(at.key)
        if not present:
            raise LDAPError(ResultCode.namingViolation, f"naming attribute '{attr}' is not present in entry")
        wanted = equality_key(at, value.encode())
        if not any(equality_key(at, v) == wanted for v in present):
            raise LDAPError(
                ResultCode.namingViolation, f"value of naming attribute '{attr}' is not present in entry"
            )


def add_rdn_values(schema: Schema, entry: Entry, rdn: str) -> None:
    """Put the RDN's values into the entry when they are not there yet (modify DN does this)."""
    for attr, value in rdn_attributes(rdn):
        at = schema.attribute_type(attr)
        if at is None:
            raise LDAPError(ResultCode.invalidDNSyntax, f"invalid new RDN: undefined attribute type {attr}")
        raw = value.encode()
        attribute = entry.attrs.get(at.key)
        if attribute is None:  # under the type's own name, as slapd stores it (`UID=x` gives `uid: x`)
            entry.attrs[at.key] = Attribute(at.name, [raw])
            continue
        wanted = equality_key(at, raw)
        if not any(equality_key(at, v) == wanted for v in attribute.values):
            attribute.values.append(raw)


def remove_rdn_values(schema: Schema, entry: Entry, old_rdn: str, new_rdn: str) -> None:
    """deleteoldrdn: the old RDN's values leave the entry, but for those the new RDN names again as they are
    written (slapd: renaming `uid=CJONES` to `uid=cjones` takes `CJONES` away and puts `cjones` in)."""

    def key(attr: str) -> str:
        at = schema.attribute_type(attr)
        return at.key if at is not None else attr.lower()

    keep = {(key(a), v) for a, v in rdn_attributes(new_rdn)}
    for attr, value in rdn_attributes(old_rdn):
        at = schema.attribute_type(attr)
        if at is None or (at.key, value) in keep:
            continue
        attribute = entry.attrs.get(at.key)
        if attribute is None:
            continue
        wanted = equality_key(at, value.encode())
        attribute.values = [v for v in attribute.values if equality_key(at, v) != wanted]
        if not attribute.values:
            del entry.attrs[at.key]


def normalize_or_fail(schema: Schema, dn: str) -> str:
    try:
        return normalize_dn(dn, schema)
    except DNError as exc:
        raise LDAPError(ResultCode.invalidDNSyntax, "invalid DN") from exc


def rename_target(schema: Schema, dn: str, new_rdn: str, new_superior: str | None) -> tuple[str, str]:
    """(DN, normalized DN) a modify DN gives the entry `dn`; a new RDN or superior that slapd's do_modrdn refuses
    is refused with its words."""
    try:
        parts = parse_dn(new_rdn)
        normalize_dn(new_rdn, schema)
    except DNError:
        raise LDAPError(ResultCode.invalidDNSyntax, "invalid new RDN") from None
    if len(parts) != 1:
        raise LDAPError(ResultCode.invalidDNSyntax, "invalid new RDN")
    if new_superior is not None:
        try:
            normalize_dn(new_superior, schema)
        except DNError:
            raise LDAPError(ResultCode.invalidDNSyntax, "invalid newSuperior") from None
    parent = split_rdn(dn)[1] if new_superior is None else new_superior
    new_dn = f"{new_rdn},{parent}" if parent else new_rdn
    return new_dn, normalize_or_fail(schema, new_dn)


def renamed_entry(schema: Schema, current: Entry, new_rdn: str, new_superior: str | None,
                  delete_old_rdn: bool) -> Entry:  # fmt: skip
    """A copy of `current` under its new name, with the RDN values a modify DN leaves (schema not checked).
    slapd names the entry with the pretty new RDN under the entry's own stored parent (or the pretty new
    superior), not the request's spelling (`ou=Alumni Association, ou=People` loses its spaces)."""
    entry = current.copy()
    parent = split_rdn(current.dn)[1] if new_superior is None else new_superior
    parent = pretty_dn(parent, schema) if parent else ""
    rdn = pretty_dn(new_rdn, schema)
    entry.dn = f"{rdn},{parent}" if parent else rdn
    if delete_old_rdn:  # the RDN as stored, not as the request spells it
        remove_rdn_values(schema, entry, split_rdn(current.dn)[0], new_rdn)
    add_rdn_values(schema, entry, new_rdn)
    return entry


MOD_ADD, MOD_DELETE, MOD_REPLACE, MOD_INCREMENT = 0, 1, 2, 3


INTEGER_SYNTAX = "1.3.6.1.4.1.1466.115.121.1.27"


def check_changes(
    schema: Schema, changes: Sequence, *, relax: bool = False, user_modification: bool = True
) -> None:
    """A ModifyRequest's changes on their own, as slapd's get_modlist (an increment's one value), slap_mods_check
    and then its NO-USER-MODIFICATION check: types defined, added and replacing values valid
    (`check_request_values`), known object classes, increments of integers only. user_modification=False: the
    changes of an offline tool (slapmodify), which may change NO-USER-MODIFICATION types as well."""
    for change in changes:  # slapd's get_modlist, as the request is read
        if change.operation not in (MOD_ADD, MOD_DELETE, MOD_REPLACE, MOD_INCREMENT):
            raise LDAPError(ResultCode.protocolError, "unrecognized modify operation")
        if change.operation == MOD_ADD and not change.values:
            raise LDAPError(ResultCode.protocolError, "modify/add operation requires values")
        if change.operation == MOD_INCREMENT and len(change.values) != 1:
            raise LDAPError(ResultCode.protocolError, "modify/increment operation requires value"
                            if not change.values else "modify/increment operation requires single value")  # fmt: skip
    for change in changes:
        at = resolve_type(schema, change.attr)
        if change.operation == MOD_INCREMENT:
            if at.syntax.oid != INTEGER_SYNTAX:
                raise LDAPError(
                    ResultCode.constraintViolation,
                    f"{change.attr}: attribute syntax inappropriate for increment",
                )
            validate_values(at, change.attr, change.values)
        elif change.operation in (MOD_ADD, MOD_REPLACE):
            check_request_values(at, change.attr, change.values, schema)
            if at.key == OBJECT_CLASS:
                known_classes(schema, change.values, change.attr)
        elif change.operation == MOD_DELETE and change.values and ordered.ordered_kind(at) is None:
            # slapd's slap_mods_check checks the values to take away as those to add: one not of the syntax
            # is invalid per syntax, not "no such value" (an ordered type's `{n}` alone names a value by index)
            check_syntax(schema, at, change.attr, change.values)
    check_obsolete_attributes(schema, ((c.attr, c.operation, c.values) for c in changes), relax=relax)
    if user_modification:
        check_no_user_modification(schema, (c.attr for c in changes), relax=relax)


def check_syntax(schema: Schema, at: AttributeType, description: str, values: Sequence[bytes]) -> None:
    """Each value valid per the attribute's syntax; DN values (and nameAndUID's DN part) by making their pretty
    form, as slapd's dnPretty does: it must name types the schema knows. The DN values' pretty forms are kept
    for `prettify`, so that each is parsed once."""
    if at.syntax.oid == DN_SYNTAX:
        pretty_dns(schema, values, description)
    elif at.syntax.oid == NAME_AND_UID_SYNTAX:
        for index, value in enumerate(values):
            validate_values(at, description, [value], index)
            _pretty_name_and_uid(schema, value, description, index)
    else:
        validate_values(at, description, values)


def apply_modifications(schema: Schema, entry: Entry, changes: Sequence) -> None:
    """Apply a ModifyRequest's changes, checked by `check_changes`, in order to `entry` (a private copy), as
    RFC 4511 section 4.6 says."""
    for change in changes:
        description = change.attr
        at = resolve_type(schema, description)
        key = schema.attribute_key(description)
        attribute = entry.attrs.get(key)
        op = change.operation
        if op in (MOD_ADD, MOD_DELETE, MOD_REPLACE) and ordered.ordered_kind(at) == "VALUES":
            apply_ordered_change(entry, at, key, description, op, change.values)
            continue
        if op == MOD_ADD:
            if not change.values:
                raise LDAPError(ResultCode.protocolError, f"modify/add: {description}: no values given")
            change_values = prettify(schema, at, change.values, description)
            if attribute is None:
                attribute = entry.attrs[key] = Attribute(stored_description(at, description), [])
            present = set(equality_keys(at, attribute.values))
            for index, value in enumerate(change_values):
                normalized = equality_key(at, value)
                if normalized in present:
                    raise LDAPError(
                        ResultCode.attributeOrValueExists,
                        f"modify/add: {description}: value #{index} already exists",
                    )
                present.add(normalized)
                attribute.values.append(value)
        elif op == MOD_DELETE:
            if attribute is None:
                raise LDAPError(
                    ResultCode.noSuchAttribute, f"modify/delete: {description}: no such attribute"
                )
            if not change.values:
                del entry.attrs[key]
                continue
            remaining = list(attribute.values)
            keys = equality_keys(at, remaining)
            for value in change.values:
                wanted = equality_key(at, value)
                if wanted not in keys:
                    raise LDAPError(
                        ResultCode.noSuchAttribute, f"modify/delete: {description}: no such value"
                    )
                remaining = [v for v, k in zip(remaining, keys, strict=True) if k != wanted]
                keys = [k for k in keys if k != wanted]
            if remaining:
                attribute.values = remaining
            else:
                del entry.attrs[key]
        elif op == MOD_REPLACE:
            change_values = prettify(schema, at, change.values, description)
            entry.replace(key, stored_description(at, description), change_values)
        elif op == MOD_INCREMENT:
            if attribute is None:
                raise LDAPError(
                    ResultCode.noSuchAttribute, f"modify/increment: {description}: no such attribute"
                )
            if len(change.values) != 1:
                raise LDAPError(
                    ResultCode.protocolError, f"modify/increment: {description}: one value required"
                )
            try:
                delta = int(change.values[0])
                attribute.values = [str(int(v) + delta).encode() for v in attribute.values]
            except ValueError:
                raise LDAPError(
                    ResultCode.constraintViolation,
                    f"modify/increment: {description}: value is not an integer",
                ) from None
        else:
            raise LDAPError(ResultCode.protocolError, f"unrecognized modify operation {op}")


def apply_ordered_change(entry: Entry, at: AttributeType, key: str, description: str, op: int,
                         values: Sequence[bytes]) -> None:  # fmt: skip
    """A modify of an X-ORDERED 'VALUES' attribute, as slapd's mods.c does it in any database: added values
    inserted at their `{n}` and everything renumbered, values to delete matched with their number (or by it
    alone), the rest renumbered after a delete."""

    def same(a: bytes, b: bytes) -> bool:
        return equality_key(at, a) == equality_key(at, b)

    attribute = entry.attrs.get(key)
    if op == MOD_DELETE:
        if attribute is None:
            raise LDAPError(ResultCode.noSuchAttribute, f"modify/delete: {description}: no such attribute")
        if not values:
            del entry.attrs[key]
            return
        remaining = list(attribute.values)
        for value in values:
            found = next(
                (i for i, v in enumerate(remaining) if ordered.assertion_matches(v, value, same)), None
            )
            if found is None:
                raise LDAPError(ResultCode.noSuchAttribute, f"modify/delete: {description}: no such value")
            del remaining[found]
        if not remaining:
            del entry.attrs[key]
            return
        try:
            attribute.values = ordered.sort_values(remaining, renumbered=True)
        except ordered.OrderError:
            attribute.values = remaining  # slapd leaves values it cannot order as they are
        return
    verb = "add" if op == MOD_ADD else "replace"
    if op == MOD_ADD and not values:
        raise LDAPError(ResultCode.protocolError, f"modify/add: {description}: no values given")
    if op == MOD_REPLACE:
        entry.attrs.pop(key, None)  # slapd's replace deletes the attribute and adds it anew, at the end
        attribute = None
        if not values:
            return
    change_values = list(values)  # X-ORDERED types are strings here (no DN or class names to prettify)
    existing = list(attribute.values) if attribute is not None else []
    for index, value in enumerate(change_values):
        if any(ordered.assertion_matches(v, value, same) for v in existing):
            raise LDAPError(
                ResultCode.attributeOrValueExists,
                f"modify/{verb}: {description}: value #{index} already exists",
            )
    try:
        merged = ordered.add_values(existing, change_values)
    except ordered.OrderError:
        raise LDAPError(ResultCode.other, f"modify/{verb}: {description}: merge error (-1)") from None
    if attribute is None:
        entry.attrs[key] = Attribute(stored_description(at, description), merged)
    else:
        attribute.values = merged
