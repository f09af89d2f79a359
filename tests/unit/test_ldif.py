"""LDIF reading and writing (pyldapd.model.ldif)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyldapd.model.ldif import (
    LDIFChange,
    LDIFContent,
    LDIFControl,
    LDIFError,
    format_entry,
    is_safe_string,
    parse_ldif,
)

CONTENT = """version: 1
# a comment
#  continued comment
 still the comment

dn: dc=example,dc=com
objectClass: top
objectClass: dcObject
objectclass: organization
dc: example
o: Example
 Inc.
description:: Y2Fmw6k=
description:   leading spaces dropped

dn:: Y249w6lsYW4sZGM9ZXhhbXBsZSxkYz1jb20=
cn: x
"""


def test_content_records() -> None:
    records = list(parse_ldif(CONTENT))
    assert records == [
        LDIFContent(
            "dc=example,dc=com",
            [
                ("objectClass", [b"top", b"dcObject", b"organization"]),
                ("dc", [b"example"]),
                ("o", [b"ExampleInc."]),
                ("description", ["café".encode(), b"leading spaces dropped"]),
            ],
            line=6,
        ),
        LDIFContent("cn=élan,dc=example,dc=com", [("cn", [b"x"])], line=16),
    ]


def test_bytes_input_and_crlf() -> None:
    records = list(parse_ldif(b"dn: cn=a\r\ncn: a\r\n\r\ndn: cn=b\r\ncn: b\r\n"))
    assert [r.dn for r in records] == ["cn=a", "cn=b"]


def test_file_url(tmp_path: Path) -> None:
    photo = tmp_path / "photo.bin"
    photo.write_bytes(b"\x00\xffbinary")
    (rec,) = parse_ldif(f"dn: cn=a\njpegPhoto:< file://{photo}\n")
    assert rec.attributes == [("jpegPhoto", [b"\x00\xffbinary"])]
    with pytest.raises(LDIFError, match="line 2"):
        list(parse_ldif("dn: cn=a\njpegPhoto:< http://example.com/x\n"))
    with pytest.raises(LDIFError):
        list(parse_ldif(f"dn: cn=a\njpegPhoto:< file://{photo}\n", allow_urls=False))


CHANGES = """version: 1

dn: cn=new,dc=example,dc=com
changetype: add
objectClass: person
cn: new
sn: New

dn: cn=old,dc=example,dc=com
control: 1.2.840.113556.1.4.805 true
changetype: delete

dn: cn=x,dc=example,dc=com
changetype: modify
add: mail
mail: a@example.com
mail: b@example.com
-
delete: description
-
replace: sn
sn: X
-
increment: uidNumber
uidNumber: 1
-

dn: cn=x,dc=example,dc=com
changetype: modrdn
newrdn: cn=y
deleteoldrdn: 1
newsuperior: ou=people,dc=example,dc=com

dn: cn=y,dc=example,dc=com
control: 1.3.6.1.1.13.1 false:: AAE=
control: 2.16.840.1.113730.3.4.2
changetype: moddn
newrdn: cn=z
deleteoldrdn: 0

dn: cn=z,dc=example,dc=com
changetype: modify
replace: description
description: no trailing dash
"""


def test_change_records() -> None:
    add, delete, modify, modrdn, moddn, modify2 = parse_ldif(CHANGES)
    assert add == LDIFChange(
        "cn=new,dc=example,dc=com",
        "add",
        attributes=[("objectClass", [b"person"]), ("cn", [b"new"]), ("sn", [b"New"])],
        line=3,
    )
    assert delete.changetype == "delete"
    assert delete.controls == [LDIFControl("1.2.840.113556.1.4.805", True, None)]
    assert modify.modifications == [
        ("add", "mail", [b"a@example.com", b"b@example.com"]),
        ("delete", "description", []),
        ("replace", "sn", [b"X"]),
        ("increment", "uidNumber", [b"1"]),
    ]
    assert (modrdn.changetype, modrdn.newrdn, modrdn.deleteoldrdn, modrdn.newsuperior) == (
        "modrdn",
        "cn=y",
        True,
        "ou=people,dc=example,dc=com",
    )
    assert (moddn.changetype, moddn.newrdn, moddn.deleteoldrdn, moddn.newsuperior) == (
        "moddn",
        "cn=z",
        False,
        None,
    )
    assert moddn.controls == [
        LDIFControl("1.3.6.1.1.13.1", False, b"\x00\x01"),
        LDIFControl("2.16.840.1.113730.3.4.2", False, None),
    ]
    assert modify2.modifications == [("replace", "description", [b"no trailing dash"])]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("cn: x\n", 1),
        ("dn: cn=a\ncn x\n", 2),
        ("dn: cn=a\ncn:: !!!\n", 2),
        ("dn: cn=a\n\n dangling\n", 3),
        ("version: 2\ndn: cn=a\n", 1),
        ("dn: cn=a\nchangetype: frobnicate\n", 2),
        ("dn: cn=a\nchangetype: modify\nadd: cn\nsn: x\n-\n", 4),
        ("dn: cn=a\nchangetype: modify\nfrob: cn\n", 3),
        ("dn: cn=a\nchangetype: delete\ncn: x\n", 3),
        ("dn: cn=a\nchangetype: modrdn\nnewrdn: cn=b\n", 1),
        ("dn: cn=a\nchangetype: modrdn\nnewrdn: cn=b\ndeleteoldrdn: 2\n", 4),
        ("dn: cn=a\ncontrol: 1.2.3\ncn: x\n", 2),
        ("dn: cn=a\ncn: x\n\ndn: cn=b\nobjectClass: top\ndn: cn=c\n", 6),
        ("dn:: w6\n", 1),
    ],
)
def test_errors_with_line_numbers(text: str, line: int) -> None:
    with pytest.raises(LDIFError) as info:
        list(parse_ldif(text))
    assert info.value.line == line
    assert f"line {line}:" in str(info.value)


def test_format_entry_like_slapcat() -> None:
    # compared byte for byte with Debian's slapcat output of the same entry
    text = format_entry(
        "dc=example,dc=com",
        [("o", [b"x" * 200]), ("description", ["café".encode(), b"ends ", b"\x00\x01\x02"])],
    )
    assert text == (
        "dn: dc=example,dc=com\n"
        "o: " + "x" * 75 + "\n"
        " " + "x" * 77 + "\n"
        " " + "x" * 48 + "\n"
        "description:: Y2Fmw6k=\n"
        "description:: ZW5kcyA=\n"
        "description:: AAEC\n"
        "\n"
    )
    assert all(len(line) <= 78 for line in text.splitlines())
    assert all(len(line) <= 40 for line in format_entry("cn=a", [("o", [b"y" * 100])], wrap=40).splitlines())
    assert format_entry("cn=a", [("o", [b"y" * 100])], wrap=0) == "dn: cn=a\no: " + "y" * 100 + "\n\n"


def test_safe_string() -> None:
    assert is_safe_string(b"hello world")
    assert is_safe_string(b"")
    for unsafe in (b" lead", b":colon", b"<lt", b"trail ", b"a\nb", b"a\rb", b"a\x00b", "é".encode()):
        assert not is_safe_string(unsafe)
    assert format_entry("cn=élan", []) == "dn:: " + base64.b64encode("cn=élan".encode()).decode() + "\n\n"


_names = st.sampled_from(["cn", "objectClass", "description", "jpegPhoto", "cn;lang-en"])


@settings(max_examples=200)
@given(
    st.text(min_size=1, max_size=60).filter(lambda s: "\x00" not in s),
    st.lists(st.tuples(_names, st.lists(st.binary(max_size=120), min_size=1, max_size=3)), max_size=5),
    st.sampled_from([0, 10, 40, 78]),
)
def test_round_trip(dn: str, attributes: list[tuple[str, list[bytes]]], wrap: int) -> None:
    grouped: dict[str, tuple[str, list[bytes]]] = {}
    for name, values in attributes:
        grouped.setdefault(name.lower(), (name, []))[1].extend(values)
    expected = list(grouped.values())
    text = format_entry(dn, expected, wrap=wrap)
    (record,) = parse_ldif(text)
    assert isinstance(record, LDIFContent)
    assert record.dn == dn
    assert record.attributes == expected


PLAIN_SAMPLES = [
    "version: 1\ndn: dc=a\ndc: a\n\ndn: cn=x,dc=a\nobjectClass: person\ncn: x\nCN: y\nsn:: eg==\n",
    "version: 1\n\n\ndn: dc=a\ndc: a\n\n\n\ndn: cn=b,dc=a\ncn:b\nsn:  two spaces\n\n",
    "dn: cn=c,dc=a\nchangetype: modify\nreplace: sn\nsn: z\n-\n\ndn: cn=d,dc=a\nchangetype: delete\n",
    "dn:: Y249w6k=\ncn: \xc3\xa9\n\ndn: cn=e,dc=a\ncontrol: 1.2.3 true\nchangetype: delete\n",
    "dn: cn=f,dc=a\nnocolon\n",
    "dn: cn=g,dc=a\ndn: cn=h\n",
    "cn: first line is not dn\n",
    "version: 2\ndn: cn=a\n",
    "dn: cn=i,dc=a\n: empty name\n",
    "dn: cn=j,dc=a\nchangetype: add\ncn: j\n\ndn: cn=k,dc=a\nchangetype: modrdn\nnewrdn: cn=l\ndeleteoldrdn: 1\n",
    "dn: cn=m,dc=a\ncn: m",
]


def _outcome(records: object) -> object:
    try:
        return [(type(r).__name__, vars(r)) for r in records]  # type: ignore[attr-defined]
    except LDIFError as exc:
        return ("error", str(exc), exc.line)


@pytest.mark.parametrize("text", PLAIN_SAMPLES)
def test_plain_reader_reads_as_the_line_reader(text: str) -> None:
    """LDIF without folding, comments or CRs takes a faster path; it reads exactly as the line reader."""
    from pyldapd.model import ldif

    data = text.encode("latin-1")
    assert not ldif._needs_line_reader(data)
    for first_line, header in ((1, True), (41, False)):
        plain = _outcome(ldif._parse_plain(data, True, first_line, header))
        lines = _outcome(ldif._parse_lines(data, True, first_line, header))
        assert plain == lines


@given(st.lists(st.sampled_from(["dn: cn=a", "cn: b", "sn:: eg==", "", "x", "changetype: add", "version: 1",
                                 "dn: cn=c", "Description:  d", "control: 1.2"]), max_size=12))  # fmt: skip
@settings(max_examples=300, deadline=None)
def test_plain_reader_agrees_on_random_line_soups(lines: list[str]) -> None:
    from pyldapd.model import ldif

    data = ("\n".join(lines) + "\n").encode()
    assert _outcome(ldif._parse_plain(data, True, 1, True)) == _outcome(
        ldif._parse_lines(data, True, 1, True)
    )


def test_include_lines_read_the_named_file(tmp_path):
    """`include: file://...` between records (cn=config LDIF as OpenLDAP's test063 gives slapadd -n 0): the
    named file's records, in place."""
    from pyldapd.model.ldif import parse_ldif as parse

    included = tmp_path / "core.ldif"
    included.write_text("dn: cn=core,cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: core\n")
    text = f"dn: cn=schema,cn=config\ncn: schema\n\ninclude: file://{included}\n\n# folded\ndn: cn=x\ncn: x\n"
    assert [record.dn for record in parse(text)] == [
        "cn=schema,cn=config",
        "cn=core,cn=schema,cn=config",
        "cn=x",
    ]
    assert [r.dn for r in parse(f"include: file://{included}\n")] == ["cn=core,cn=schema,cn=config"]
    # several in a row, and a record right after them (test083's config LDIF), in both readers
    cosine = tmp_path / "cosine.ldif"
    cosine.write_text("dn: cn=cosine,cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: cosine\n")
    for comment in ("", "# a comment sends it to the line reader\n"):
        text = f"{comment}include: file://{included}\ninclude: file://{cosine}\ndn: cn=y\ncn: y\n"
        assert [r.dn for r in parse(text)] == ["cn=core,cn=schema,cn=config", "cn=cosine,cn=schema,cn=config",
                                               "cn=y"]  # fmt: skip


def test_include_refusals(tmp_path):
    """What slapd's LDIF reader refuses in an `include:` line is an LDIF error naming the include: a bare path
    (slapd opens URLs only), a missing file, and a file that includes itself (never a RecursionError)."""
    looping = tmp_path / "loop.ldif"
    looping.write_text(f"dn: cn=a\ncn: a\n\ninclude: file://{looping}\n")
    for text, words in (
        (
            "include: /etc/ldap/schema/core.ldif\n",
            "ldif_read_record: include /etc/ldap/schema/core.ldif failed",
        ),
        (f"include: file://{tmp_path}/missing.ldif\n", "include: cannot read"),
        (f"include: file://{looping}\n", "nested too deeply"),
    ):
        with pytest.raises(LDIFError) as refused:
            list(parse_ldif(text))
        assert words in str(refused.value), str(refused.value)


@pytest.mark.parametrize("folded", [False, True])
def test_implicit_modify_reads_records_without_changetype_as_ldapmodify(folded: bool) -> None:
    """implicit_modify: a record starting with a modify operation is a modify (both readers), other records
    without a changetype stay entries; without the flag nothing changes."""
    text = (
        "dn: cn=a,dc=x\nreplace: title\ntitle: A\n-\nadd: sn\nsn: B\n\n"
        "dn: cn=b,dc=x\nobjectClass: top\ncn: b\n\n"
        "dn: cn=c,dc=x\ndelete: description\n"
    )
    if folded:  # the line reader (a comment) instead of the plain one
        text = "# changes\n" + text
    first, second, third = parse_ldif(text, implicit_modify=True)
    assert isinstance(first, LDIFChange) and first.changetype == "modify"
    assert first.modifications == [("replace", "title", [b"A"]), ("add", "sn", [b"B"])]
    assert isinstance(second, LDIFContent) and second.attributes == [
        ("objectClass", [b"top"]),
        ("cn", [b"b"]),
    ]
    assert isinstance(third, LDIFChange) and third.modifications == [("delete", "description", [])]
    with pytest.raises(LDIFError):  # a content record cannot hold the "-" separator
        list(parse_ldif(text))
