"""A group of thousands of members, as slapd answers it: (member=...) searches, compares, and modifies that add,
take away or leave its members (pyldapd keys and encodes only what a modify changed, and tests a large
attribute through its normalized set: backends/mdb.py EntryCodec.modify_keys and encode, model/entry.py
Attribute.normalized)."""

from __future__ import annotations

import ldap as pyldap

from tests.certs import make_pki, tls_conf
from tests.servers import ROOTDN, ROOTPW, SUFFIX, connection_on_worker, slapd_conf, start_pyldapd, start_slapd

GROUP = f"cn=big,{SUFFIX}"
MEMBERS = 3000


def member(i: int | str) -> bytes:
    return f"uid=user{i},ou=People,{SUFFIX}".encode()


def outcome(call) -> str:
    """The result of one request as a comparable word: a compare's answer, "done", or the error's result code."""
    try:
        answer = call()
        return repr(answer) if isinstance(answer, bool) else "done"
    except pyldap.LDAPError as exc:
        return f"error {exc.args[0].get('result')}"


def group_story(conns: list) -> list[str]:
    """The same requests against one server (alternating connections: with pyldapd each is served by another
    worker); what each answered."""
    seen: list[str] = []
    turn = iter(range(10**6))

    def conn():
        return conns[next(turn) % len(conns)]

    def members_found(*which: int | str) -> str:
        found = []
        for i in which:
            hits = conn().search_s(SUFFIX, pyldap.SCOPE_SUBTREE, f"(member={member(i).decode()})", ["1.1"])
            found.append(f"{i}:{[dn for dn, _ in hits]}")
        return " ".join(found)

    def compare(value: bytes) -> str:
        return outcome(lambda: conn().compare_s(GROUP, "member", value))

    def modify(mods: list) -> str:
        return outcome(lambda: conn().modify_s(GROUP, mods))

    seen.append(members_found(0, 1500, 2999, "absent"))
    seen.append(compare(member(7)) + compare(member("absent")))
    seen.append(compare(f"UID=User7, ou=people,{SUFFIX}".encode()))  # the same DN, another spelling
    seen.append(modify([(pyldap.MOD_ADD, "member", [member("new")])]))
    seen.append(members_found("new", 1500))
    seen.append(modify([(pyldap.MOD_ADD, "member", [f"UID=USERNEW,ou=People,{SUFFIX}".encode()])]))  # exists
    seen.append(modify([(pyldap.MOD_DELETE, "member", [member(1500)])]))
    seen.append(members_found(1500, 1499, 1501, "new"))
    seen.append(modify([(pyldap.MOD_DELETE, "member", [member(1500)])]))  # no such value any more
    seen.append(modify([(pyldap.MOD_REPLACE, "description", [b"only this changes"])]))
    seen.append(members_found(0, 2999, "new"))
    seen.append(compare(member(1500)) + compare(member("new")))
    seen.append(modify([(pyldap.MOD_DELETE, "member", [member(0)]), (pyldap.MOD_ADD, "member", [member(0)])]))
    seen.append(members_found(0))
    stored = conn().search_s(GROUP, pyldap.SCOPE_BASE, attrlist=["member"])[0][1]["member"]
    seen.append(f"{len(stored)} members, {len(set(stored))} distinct")
    return seen


def test_a_big_group_answers_as_with_slapd(tmp_path):
    pki = make_pki(tmp_path / "pki")
    stories: dict[str, list[str]] = {}
    for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
        # pyldapd's StartTLS writers write where they are (a plain one moves to worker 0, server/handoff.py)
        conf = slapd_conf(tmp_path / name / "db", indexes="index objectClass eq\nindex member eq", modules=True,
                          extra_global="threads 2\n" + tls_conf(pki))  # fmt: skip
        server = start(tmp_path / name, conf, name=name)
        conns = []
        try:
            if name == "pyldapd":
                conns = [connection_on_worker(server, i, 2, tls_ca=pki.ca_cert)[0] for i in (0, 1)]
            else:
                conns = [pyldap.initialize(server.url)]
                conns[0].simple_bind_s(ROOTDN, ROOTPW)
            conns[0].add_s(SUFFIX, [("objectClass", [b"dcObject", b"organization"]), ("o", [b"E"]),
                                    ("dc", [b"example"])])  # fmt: skip
            conns[0].add_s(GROUP, [("objectClass", [b"groupOfNames"]), ("cn", [b"big"]),
                                   ("member", [member(i) for i in range(MEMBERS)])])  # fmt: skip
            stories[name] = group_story(conns)
            if name == "pyldapd":  # what was stored and indexed is still there after a kill -9
                for conn in conns:
                    conn.unbind_s()
                conns = []
                server.kill()
                server = start(tmp_path / name, conf, name=name)
                conn = pyldap.initialize(server.url)
                conn.simple_bind_s(ROOTDN, ROOTPW)
                conns = [conn]
                after = [
                    len(
                        conn.search_s(SUFFIX, pyldap.SCOPE_SUBTREE, f"(member={member(i).decode()})", ["1.1"])
                    )
                    for i in (0, 1500, "new", 2999)
                ]
                assert after == [1, 0, 1, 1]
        finally:
            for conn in conns:
                conn.unbind_s()
            server.stop()
    assert stories["pyldapd"] == stories["slapd"]
    assert stories["pyldapd"][-1] == f"{MEMBERS} members, {MEMBERS} distinct"
