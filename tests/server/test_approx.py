"""Approximate matching (`~=`) against Debian's slapd: its phonetic (metaphone) keys, word order, the approx index."""

from __future__ import annotations

import pytest

from tests.servers import ROOTDN, ROOTPW, SUFFIX, ldap_tool, slapd_conf, start_pyldapd, start_slapd

ADMIN = ["-x", "-D", ROOTDN, "-w", ROOTPW]

VALUES = [
    *(f"Test{i}" for i in range(10)),
    "Smith", "Smyth", "John Smith", "Jon Smyth", "Smith John", "Robert", "Rupert", "Müller", "Muller", "Thompson",
    "Knight", "Night", "Xavier", "Box", "Bob", "Abby", "7", "42 Street", "O'Brien", "Mary-Jane", "Mary Jane",
    "Schmidt", "Catherine", "Kathryn", "Philip", "Phillip", "Wheeler", "Chris", "Christian", "Dr. Who", "ghost",
    "tough", "science", "Ziegler", "x", "Quentin", "Té7st", "Ångström", "日本", "Wright", "Aeon", "Gnome", "Pneu",
    "Thatcher", "Judge", "Edge", "Sign", "Signed", "Hugh", "Nation", "Asia", "Mississippi", "Accept", "Lamb", "Agent 7",
]  # fmt: skip

ASSERTIONS = [
    "Test7", "test", "tst", "Te", "Smith", "smyth", "john smith", "smith john", "jon", "john  smyth", "Muller",
    "Müller", "Night", "Nite", "7", "8", "42", "Street", "obrien", "O'Brien", "Mary", "Jane", "mary jane",
    "Mary-Jane", "Katherine", "Fillip", "Wheler", "Crist", "Who", "dr", "Zigler", "Kwentin", "x", "ks", "Test 7",
    "7 Test", "Angstrom", "Rite", "Eon", "Nome", "Nu", "Thacher", "Juj", "Ej", "Sine", "Hue", "Nashun", "Asha",
    "Misisipi", "Aksept", "Lam", "Bob", "Box", "Robert", "agent 7", "7 agent", "agent",
]  # fmt: skip

INDEXES = "index objectClass eq\nindex givenName,mail approx"


def ldif(values: list[str]) -> str:
    blocks = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"]
    for i, v in enumerate(values):
        blocks.append(
            f"dn: uid=v{i},{SUFFIX}\nobjectClass: inetOrgPerson\nuid: v{i}\ncn: v{i}\nsn: v{i}\n"
            f"givenName: {v}\ndescription: {v}\ntelephoneNumber: +1 555 {i:04d}\n"
            + (f"mail: {v.replace(' ', '_')}@example.com\n" if v.isascii() else "")
        )
    return "\n".join(blocks)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("approx")
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            (root / name / "db").mkdir(parents=True, exist_ok=True)
            conf = slapd_conf(root / name / "db", modules=True, indexes=INDEXES)
            server = start(root / name, conf, name=name)
            servers.append(server)
            result = ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=ldif(VALUES))
            assert result.returncode == 0, f"{name}: {result.stderr}\n{server.log()}"
        yield servers
    finally:
        for server in servers:
            server.stop()


def found(server, filter_: str) -> tuple[int, list[str]]:
    result = ldap_tool("ldapsearch", "-LLL", "-H", server.url, *ADMIN, "-b", SUFFIX, filter_, "1.1")
    dns = [line[4:] for line in result.stdout.splitlines() if line.startswith("dn: ")]
    return result.returncode, sorted(
        dns, key=lambda d: int(d[5:].split(",")[0]) if d.startswith("uid=v") else -1
    )


def names(dns: list[str]) -> list[str]:
    return [VALUES[int(d[5:].split(",")[0])] for d in dns if d.startswith("uid=v")]


@pytest.mark.parametrize("attr", ["givenName", "description"])
def test_approx_words_like_slapd(pair, attr):
    """Indexed (givenName) and unindexed (description) `~=` select the same entries as slapd for every assertion."""
    slapd, pyldapd = pair
    differences = []
    for assertion in ASSERTIONS:
        filter_ = f"({attr}~={assertion})"
        want, got = found(slapd, filter_), found(pyldapd, filter_)
        if want != got:
            differences.append((filter_, want[0], names(want[1]), got[0], names(got[1])))
    assert differences == [], "\n".join(map(str, differences))


def test_digits_ignored_like_slapd(pair):
    """The issue's case: (givenName~=Test7) selects Test0..Test9 (slapd's key ignores the digits)."""
    slapd, pyldapd = pair
    want = found(slapd, "(givenName~=Test7)")
    assert names(want[1])[:10] == [f"Test{i}" for i in range(10)]
    assert found(pyldapd, "(givenName~=Test7)") == want


@pytest.mark.parametrize(
    "filter_",
    [
        "(mail~=test3@example.com)",
        "(mail~=smith@example.org)",
        "(telephoneNumber~=+1 555 0007)",
        "(telephoneNumber~=+1 555 7)",
        "(&(givenName~=smith)(description~=john))",
        "(|(givenName~=night)(mail~=kathryn@example.com))",
        "(!(givenName~=test))",
    ],
)
def test_approx_other_syntaxes_and_combinations(pair, filter_):
    """IA5 values (mail), types without an approximate rule (telephoneNumber: equality) and combinations."""
    slapd, pyldapd = pair
    assert found(pyldapd, filter_) == found(slapd, filter_)
