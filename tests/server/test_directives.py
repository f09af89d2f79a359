"""No directive is silently ignored (issue 10): allow, disallow, require, restrict, authz-regexp, referral, rootdn
limits and Password Modify side by side with Debian's slapd (same slapd.conf, same requests, same result code and
text), and a table over every directive pyldapd knows: each has its effect, is tuning only, or is refused with
file and line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ldap
import pytest

from tests.data import BASE_LDIF
from tests.servers import ROOTDN, ROOTPW, SLAPD, ldap_tool, slapd_conf, start_pyldapd, start_slapd

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"
JDOE = f"uid=jdoe,{PEOPLE}"


def offline_load(name: str, conf_path: Path, ldif: str, workdir: Path) -> None:
    """Load the data before the server starts: the configs under test may refuse writes."""
    path = workdir / "load.ldif"
    path.write_text(ldif)
    if name == "slapd":
        argv = [SLAPD.replace("slapd", "slapadd"), "-f", str(conf_path), "-l", str(path)]
        if not os.path.exists(argv[0]):
            argv = [SLAPD, "-T", "add", "-f", str(conf_path), "-l", str(path)]
    else:
        argv = [sys.executable, "-m", "pyldapd.cli.main", "add", "-f", str(conf_path), "-l", str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (name, result.stdout, result.stderr)


def start_pair(root: Path, extra_global: str, extra_db: str, ldif: str = BASE_LDIF) -> list:
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            workdir = root / name
            (workdir / "db").mkdir(parents=True, exist_ok=True)
            conf = slapd_conf(workdir / "db", modules=True, extra_global=extra_global, extra_db=extra_db)
            conf_path = workdir / "load.conf"
            conf_path.write_text(conf)
            offline_load(name, conf_path, ldif, workdir)
            servers.append(start(workdir, conf, name=name))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def outcome(url: str, action, version: int = 3):
    """(result code, diagnostic text, value) of `action(conn)` on a fresh python-ldap connection."""
    conn = ldap.initialize(url)
    conn.protocol_version = version
    conn.set_option(ldap.OPT_REFERRALS, 0)
    try:
        value = action(conn)
        return 0, "", value
    except ldap.LDAPError as exc:
        info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        value = sorted(info.get("ref", [])) if info.get("ref") else None
        return info.get("result", -1), info.get("info", ""), value
    finally:
        conn.unbind_s()


def assert_same(pair, action, *, ldapi: bool = False, version: int = 3, expect: int | None = None):
    results = [outcome(s.ldapi_url if ldapi else s.url, action, version) for s in pair]
    assert results[1] == results[0], f"slapd {results[0]} / pyldapd {results[1]}"
    if expect is not None:
        assert results[0][0] == expect, results[0]
    return results[0]


def search_dns(conn, base=SUFFIX, filterstr="(objectClass=*)", sizelimit=0):
    msgid = conn.search_ext(base, ldap.SCOPE_SUBTREE, filterstr, ["1.1"], sizelimit=sizelimit)
    dns = []
    try:
        while True:
            kind, data = conn.result(msgid, all=0)
            if kind == ldap.RES_SEARCH_RESULT:
                break
            dns += [dn.lower() for dn, _ in data]
    except ldap.SIZELIMIT_EXCEEDED:
        return ("sizelimit", len(dns))
    return sorted(dns)


def bound(dn: str, password: str, then):
    def action(conn):
        conn.simple_bind_s(dn, password)
        return then(conn) if then is not None else "bound"

    return action


def modify_description(dn: str = JDOE, value: str = "changed"):
    return lambda conn: conn.modify_s(dn, [(ldap.MOD_REPLACE, "description", [value.encode()])]) and None


# -- disallow bind_anon, require authc, restrict write, allow bind_v2, rootdn limits and Password Modify ------

RESTRICTED_GLOBAL = "disallow bind_anon\nrequire authc\nallow bind_v2"
RESTRICTED_DB = "restrict write"


@pytest.fixture(scope="module")
def restricted(tmp_path_factory):
    pair = start_pair(tmp_path_factory.mktemp("restricted"), RESTRICTED_GLOBAL, RESTRICTED_DB)
    yield pair
    for server in pair:
        server.stop()


def test_anonymous_bind_disallowed(restricted):
    code, text, _ = assert_same(restricted, bound("", "", None), expect=ldap.INAPPROPRIATE_AUTH.errnum)
    assert text == "anonymous bind disallowed"


def test_anonymous_search_requires_authentication(restricted):
    code, text, _ = assert_same(restricted, search_dns, expect=ldap.UNWILLING_TO_PERFORM.errnum)
    assert text == "authentication required"


def test_authenticated_search_allowed(restricted):
    assert_same(restricted, bound(JDOE, "secret1", search_dns), expect=0)


def test_unauthenticated_and_anonymous_credential_binds(restricted):
    assert_same(restricted, bound(JDOE, "", None), expect=ldap.UNWILLING_TO_PERFORM.errnum)
    assert_same(restricted, bound("", "secret", None), expect=ldap.INVALID_CREDENTIALS.errnum)


def test_restrict_write_refuses_rootdn_modify(restricted):
    code, text, _ = assert_same(restricted, bound(ROOTDN, ROOTPW, modify_description()),
                                expect=ldap.UNWILLING_TO_PERFORM.errnum)  # fmt: skip
    assert text == "operation restricted"


def test_restrict_write_leaves_compare(restricted):
    def compare(conn):
        return conn.compare_s(JDOE, "uid", b"jdoe")

    assert_same(restricted, bound(ROOTDN, ROOTPW, compare), expect=0)


def test_ldapv2_bind_allowed(restricted):
    assert_same(restricted, bound(JDOE, "secret1", search_dns), version=2, expect=0)


def test_rootdn_gets_its_own_size_limit(restricted):
    result = assert_same(restricted, bound(ROOTDN, ROOTPW, lambda c: search_dns(c, sizelimit=2)), expect=0)
    assert result[2] == ("sizelimit", 2)


def test_rootdn_password_modify_checks_old_password(restricted):
    def wrong_old(conn):
        return conn.passwd_s(JDOE, "not-the-password", "new-secret")

    code, text, _ = assert_same(restricted, bound(ROOTDN, ROOTPW, wrong_old),
                                expect=ldap.UNWILLING_TO_PERFORM.errnum)  # fmt: skip
    assert text == "unwilling to verify old password"
    assert_same(restricted, bound(JDOE, "secret1", lambda c: c.whoami_s()), expect=0)  # unchanged


# -- authz-regexp with SASL EXTERNAL over ldapi, require sasl, default referral ------------------------------


def authz_global() -> str:
    uid = os.getuid()
    return (
        f'authz-regexp "^gidnumber=[0-9]+[+]uidnumber={uid},cn=peercred,cn=external,cn=auth$" "{ROOTDN}"\n'
        "referral ldap://referral.example.org/"
    )


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    pair = start_pair(tmp_path_factory.mktemp("authz"), authz_global(), "require sasl")
    yield pair
    for server in pair:
        server.stop()


def external(then):
    def action(conn):
        conn.sasl_non_interactive_bind_s("EXTERNAL")
        return then(conn)

    return action


def test_external_identity_mapped_to_rootdn(mapped):
    code, _, value = assert_same(mapped, external(lambda c: c.whoami_s()), ldapi=True, expect=0)
    assert value.lower() == f"dn:{ROOTDN}".lower()


def test_mapped_rootdn_has_rootdn_powers(mapped):
    assert_same(mapped, external(modify_description(value="by root over ldapi")), ldapi=True, expect=0)


@pytest.mark.parametrize("authzid", [f"dn:{JDOE}", "dn:uid=nobody,dc=elsewhere,dc=org", "u:jdoe"])
def test_external_bind_with_authzid(mapped, authzid):
    """SASL EXTERNAL asking for another identity: root over ldapi is the rootdn here, which may be anyone in
    its own database (slapd_sasl_authorized); u:jdoe is uid=jdoe,cn=auth, which no rule maps."""
    results = []
    for server in mapped:
        result = ldap_tool("ldapwhoami", "-Y", "EXTERNAL", "-Q", "-X", authzid, "-H", server.ldapi_url)
        results.append((result.returncode, result.stdout.strip().lower(), result.stderr.strip()))
    assert results[1] == results[0]


def test_require_sasl_refuses_simple_binds(mapped):
    code, text, _ = assert_same(
        mapped, bound(JDOE, "secret1", search_dns), expect=ldap.STRONG_AUTH_REQUIRED.errnum
    )
    assert text == "SASL authentication required"
    assert_same(mapped, external(search_dns), ldapi=True, expect=0)


def test_default_referral_outside_naming_contexts(mapped):
    def search_elsewhere(conn):
        return search_dns(conn, base="dc=elsewhere,dc=org")

    code, text, _ = assert_same(mapped, search_elsewhere, expect=ldap.REFERRAL.errnum)
    assert "ldap://referral.example.org/dc=elsewhere,dc=org??sub" in text

    def add_elsewhere(conn):
        conn.sasl_non_interactive_bind_s("EXTERNAL")
        return conn.add_s("cn=x,dc=elsewhere,dc=org", [("objectClass", [b"device"]), ("cn", [b"x"])])

    assert_same(mapped, add_elsewhere, ldapi=True, expect=ldap.REFERRAL.errnum)


# -- authz-policy and the Proxied Authorization control (RFC 4370) ----------------------------------------------

ASMITH = f"uid=asmith,{PEOPLE}"
PROXY_LDIF = BASE_LDIF.replace(
    "userPassword: secret1\n",
    "userPassword: secret1\nauthzTo: dn.regex:^uid=[^,]+,ou=[Pp]eople,dc=example,dc=com$\n",
)
PROXY_GLOBAL = """authz-policy to
authz-regexp "^uid=mail-([^,]+),cn=auth$" "ldap:///ou=People,dc=example,dc=com??one?(mail=$1@example.com)"
authz-regexp "^uid=everyone,cn=auth$" "ldap:///ou=People,dc=example,dc=com??one?(objectClass=person)"
authz-regexp "^uid=([^,]+),cn=auth$" "uid=$1,ou=People,dc=example,dc=com"
"""


@pytest.fixture(scope="module")
def proxying(tmp_path_factory):
    pair = start_pair(tmp_path_factory.mktemp("proxy"), PROXY_GLOBAL, "", ldif=PROXY_LDIF)
    yield pair
    for server in pair:
        server.stop()


def as_proxy(authzid: str, then=None, critical: bool = True):
    from ldap.controls import LDAPControl
    from ldap.extop import ExtendedRequest

    control = LDAPControl("2.16.840.1.113730.3.4.18", critical, encodedControlValue=authzid.encode())

    def action(conn):
        if then == "whoami":
            return conn.extop_s(ExtendedRequest("1.3.6.1.4.1.4203.1.11.3", None), serverctrls=[control])[1]
        if then == "modify":
            return conn.modify_ext_s(ASMITH, [(ldap.MOD_REPLACE, "description", [b"by proxy"])],
                                     serverctrls=[control]) and None  # fmt: skip
        msgid = conn.search_ext(ASMITH, ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"], serverctrls=[control])
        return [dn.lower() for dn, _ in conn.result(msgid)[1]]

    return action


@pytest.mark.parametrize("who, password, authzid, expect", [
    (JDOE, "secret1", f"dn:{ASMITH}", 0),  # authzTo of jdoe names every person
    (JDOE, "secret1", "u:asmith", 0),  # u: through authz-regexp
    (ASMITH, "secret2", "u:mail-john.smith", 123),  # an LDAP URL search finds jdoe: asmith may not be him
    (JDOE, "secret1", "u:mail-john.smith", 0),  # ... and jdoe may be himself
    (JDOE, "secret1", "u:everyone", 123),  # a search finding several entries maps nothing
    (ASMITH, "secret2", f"dn:{JDOE}", 123),  # asmith has no authzTo
    (ROOTDN, ROOTPW, f"dn:{JDOE}", 0),  # a rootdn may be anyone in its database
    ("", "", f"dn:{JDOE}", 123),  # anonymous proxying is not allowed
    (JDOE, "secret1", "nonsense", 123),  # not an authzId
    (JDOE, "secret1", f"dn:{JDOE}", 0),  # itself
    (JDOE, "secret1", "dn:cn=nobody,dc=example,dc=com", 123),
])  # fmt: skip
def test_proxied_authorization_alike(proxying, who, password, authzid, expect):
    for then in ("whoami", None):
        assert_same(proxying, bound(who, password, as_proxy(authzid, then)), expect=expect)


def test_authz_policy_both_is_any(tmp_path):
    """slapd takes `authz-policy both` for `any` (OpenLDAP's test014-whoami uses it): authzTo rules apply."""
    pair = start_pair(
        tmp_path, PROXY_GLOBAL.replace("authz-policy to", "authz-policy both"), "", ldif=PROXY_LDIF
    )
    try:
        assert_same(pair, bound(JDOE, "secret1", as_proxy(f"dn:{ASMITH}", "whoami")), expect=0)
        assert_same(pair, bound(ASMITH, "secret2", as_proxy(f"dn:{JDOE}", "whoami")), expect=123)
    finally:
        for server in pair:
            server.stop()


def test_proxied_identity_writes(proxying):
    """The proxied identity is who writes: with no access rules only a rootdn may, so jdoe acting as asmith
    gets 50 like jdoe would, and the rootdn acting as jdoe is refused as jdoe."""
    assert_same(proxying, bound(JDOE, "secret1", as_proxy(f"dn:{ASMITH}", "modify")), expect=50)
    assert_same(proxying, bound(ROOTDN, ROOTPW, as_proxy(f"dn:{JDOE}", "modify")), expect=50)


def test_proxied_authorization_non_critical_accepted(proxying):
    assert_same(
        proxying, bound(JDOE, "secret1", as_proxy(f"dn:{ASMITH}", "whoami", critical=False)), expect=0
    )


# -- lastbind --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lastbind(tmp_path_factory):
    pair = start_pair(tmp_path_factory.mktemp("lastbind"), f"password-hash {{SSHA}} {{SHA}}\ndefaultsearchbase {PEOPLE}",
                      "lastbind on")  # fmt: skip
    yield pair
    for server in pair:
        server.stop()


def read_entry(conn, dn, attrs):
    conn.simple_bind_s(ROOTDN, ROOTPW)
    return conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", attrs)[0][1]


def test_lastbind_records_pwdlastsuccess(lastbind):
    """A successful bind writes pwdLastSuccess (operational, shown with +) as the rootdn; a failed one does not."""
    assert_same(lastbind, bound(ASMITH, "wrong", None), expect=ldap.INVALID_CREDENTIALS.errnum)
    before = assert_same(lastbind, lambda c: sorted(read_entry(c, ASMITH, ["+"])), expect=0)
    assert "pwdLastSuccess" not in before[2]
    assert_same(lastbind, bound(ASMITH, "secret2", None), expect=0)
    for server in lastbind:
        code, _, attrs = outcome(
            server.url, lambda c: read_entry(c, ASMITH, ["pwdLastSuccess", "modifiersName"])
        )
        assert code == 0 and len(attrs["pwdLastSuccess"]) == 1, server.name
        assert len(attrs["pwdLastSuccess"][0]) == 15 and attrs["pwdLastSuccess"][0].endswith(b"Z")
        assert attrs["modifiersName"] == [ROOTDN.encode()], server.name
    assert_same(lastbind, lambda c: sorted(read_entry(c, ASMITH, ["+"])), expect=0)  # same operational names


def test_default_search_base(lastbind):
    def search(scope):
        def action(conn):
            conn.simple_bind_s(ROOTDN, ROOTPW)
            return sorted(dn.lower() for dn, _ in conn.search_s("", scope, "(objectClass=*)", ["1.1"]))

        return action

    result = assert_same(lastbind, search(ldap.SCOPE_SUBTREE), expect=0)
    assert result[2] and all(dn.endswith(PEOPLE.lower()) for dn in result[2])
    assert_same(lastbind, search(ldap.SCOPE_ONELEVEL), expect=0)
    assert_same(lastbind, search(ldap.SCOPE_BASE), expect=0)  # the root DSE, as always


def test_password_hash_schemes_on_password_modify(lastbind):
    """password-hash with two schemes: Password Modify stores one value per scheme; {SHA} is deterministic."""
    import base64
    import hashlib

    def change_and_read(conn):
        conn.simple_bind_s(ROOTDN, ROOTPW)
        conn.passwd_s(f"uid=bwong,{PEOPLE}", None, "hashed-pw")
        values = conn.search_s(f"uid=bwong,{PEOPLE}", ldap.SCOPE_BASE, "(objectClass=*)", ["userPassword"])
        return sorted(v.split(b"}")[0] + b"}" for v in values[0][1]["userPassword"]), values[0][1][
            "userPassword"
        ]

    results = [outcome(server.url, change_and_read) for server in lastbind]
    assert results[0][0] == results[1][0] == 0
    assert results[0][2][0] == results[1][2][0] == [b"{SHA}", b"{SSHA}"]
    sha = b"{SHA}" + base64.b64encode(hashlib.sha1(b"hashed-pw").digest())
    assert sha in results[0][2][1] and sha in results[1][2][1]
    assert_same(lastbind, bound(f"uid=bwong,{PEOPLE}", "hashed-pw", None), expect=0)

    def modify_and_read(conn):  # a modify stores the value as given: slapd hashes only in Password Modify
        conn.simple_bind_s(ROOTDN, ROOTPW)
        conn.modify_s(f"uid=bwong,{PEOPLE}", [(ldap.MOD_REPLACE, "userPassword", [b"clear-pw"])])
        return conn.search_s(f"uid=bwong,{PEOPLE}", ldap.SCOPE_BASE, "(objectClass=*)", ["userPassword"])[0][
            1
        ]

    assert assert_same(lastbind, modify_and_read, expect=0)[2] == {"userPassword": [b"clear-pw"]}


# -- allow, require and restrict variants -------------------------------------------------------------------------

VARIANT_GLOBAL = ("allow bind_anon_cred bind_anon_dn update_anon bind_v2\nrequire bind LDAPv3\n"
                  "restrict read extended=1.3.6.1.4.1.4203.1.11.3")  # fmt: skip


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    pair = start_pair(tmp_path_factory.mktemp("variants"), VARIANT_GLOBAL, "")
    yield pair
    for server in pair:
        server.stop()


def test_require_bind_before_anything(variants):
    code, text, _ = assert_same(variants, search_dns, expect=ldap.OPERATIONS_ERROR.errnum)
    assert text == "BIND required"

    def root_dse(conn):
        return conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])

    assert_same(variants, root_dse, expect=ldap.OPERATIONS_ERROR.errnum)


def test_require_ldapv3_after_ldapv2_bind(variants):
    code, text, _ = assert_same(variants, bound(JDOE, "secret1", search_dns), version=2,
                                expect=ldap.OPERATIONS_ERROR.errnum)  # fmt: skip
    assert text == "operation restricted to LDAPv3 clients"


def test_restrict_read_and_one_extended_operation(variants):
    code, text, _ = assert_same(
        variants, bound(JDOE, "secret1", search_dns), expect=ldap.UNWILLING_TO_PERFORM.errnum
    )
    assert text == "read operations restricted"
    code, text, _ = assert_same(variants, bound(JDOE, "secret1", lambda c: c.whoami_s()),
                                expect=ldap.UNWILLING_TO_PERFORM.errnum)  # fmt: skip
    assert text == "read operations restricted"  # slapd names the read restriction first
    # Password Modify is neither: it reaches access control, which gives jdoe no write access
    assert_same(variants, bound(JDOE, "secret1", lambda c: c.passwd_s(JDOE, "secret1", "secret1")),
                expect=ldap.INSUFFICIENT_ACCESS.errnum)  # fmt: skip


def test_allowed_anonymous_binds_and_updates(variants):
    assert_same(variants, bound("", "secret", None), expect=0)  # bind_anon_cred
    assert_same(variants, bound(JDOE, "", None), expect=0)  # bind_anon_dn: anonymous
    # update_anon: an anonymous modify reaches access control, which lets anonymous read only
    assert_same(variants, bound("", "", modify_description()), expect=ldap.INSUFFICIENT_ACCESS.errnum)


STRONG_DB = "require strong\nrestrict compare"


@pytest.fixture(scope="module")
def strong(tmp_path_factory):
    pair = start_pair(tmp_path_factory.mktemp("strong"), "disallow bind_simple\nreadonly on", STRONG_DB)
    yield pair
    for server in pair:
        server.stop()


def test_disallow_simple_binds(strong):
    code, text, _ = assert_same(strong, bound(JDOE, "secret1", None), expect=ldap.UNWILLING_TO_PERFORM.errnum)
    assert text == "unwilling to perform simple authentication"
    assert_same(strong, bound("", "", None), expect=0)  # anonymous is not a simple authentication


def test_require_strong_and_restrict_compare(strong):
    code, text, _ = assert_same(strong, search_dns, expect=ldap.STRONG_AUTH_REQUIRED.errnum)
    assert text == "strong(er) authentication required"
    assert_same(strong, external(search_dns), ldapi=True, expect=0)

    def compare(conn):
        conn.sasl_non_interactive_bind_s("EXTERNAL")
        return conn.compare_s(JDOE, "uid", b"jdoe")

    code, text, _ = assert_same(strong, compare, ldapi=True, expect=ldap.UNWILLING_TO_PERFORM.errnum)
    assert text == "operation restricted"


def test_global_readonly(strong):
    code, text, _ = assert_same(strong, external(modify_description()), ldapi=True,
                                expect=ldap.UNWILLING_TO_PERFORM.errnum)  # fmt: skip
    assert text == "operation restricted"


SHADOW_DB = f"""updatedn "{JDOE}"
access to * by dn.exact="{JDOE}" write by * read"""


@pytest.fixture(scope="module")
def shadow(tmp_path_factory):
    pair = start_pair(tmp_path_factory.mktemp("shadow"), "", SHADOW_DB)
    yield pair
    for server in pair:
        server.stop()


def test_updatedn_writes_to_a_consumer(shadow):
    """On a read-only consumer only the updatedn may write; others (the rootdn too) are told it is a shadow."""
    assert_same(shadow, bound(JDOE, "secret1", modify_description(ASMITH)), expect=0)
    code, text, _ = assert_same(shadow, bound(ROOTDN, ROOTPW, modify_description(ASMITH)),
                                expect=ldap.UNWILLING_TO_PERFORM.errnum)  # fmt: skip
    assert text == "shadow context; no update referral"


def test_updatedn_and_syncrepl_exclude_each_other(tmp_path):
    """As in slapd 2.5: each makes the database a shadow, so the second is refused (file and line)."""
    from pyldapd.config.slapdconf import ConfigError

    syncrepl = (f'syncrepl rid=001 provider=ldap://127.0.0.1:9/ bindmethod=simple binddn="{ROOTDN}" '
                f'credentials=x searchbase="{SUFFIX}"')  # fmt: skip
    updatedn = f'updatedn "{JDOE}"'
    with pytest.raises(ConfigError, match="<updatedn> database already shadowed"):
        parse_with(tmp_path, f"{syncrepl}\n{updatedn}", in_database=True)
    with pytest.raises(ConfigError, match="syncrepl: database already shadowed"):
        parse_with(tmp_path, f"{updatedn}\n{syncrepl}", in_database=True)


# -- StartTLS after a bind: tls_2_anon, tls_authc -------------------------------------------------------------


@pytest.mark.parametrize("disallow", ["", "disallow tls_2_anon", "disallow tls_2_anon tls_authc"])
def test_starttls_after_bind(tmp_path, disallow):
    """slapd makes a bound session anonymous on StartTLS unless tls_2_anon is disallowed; tls_authc refuses it."""
    from tests.certs import make_pki
    from tests.server.test_tls import start

    pki = make_pki(tmp_path / "pki")
    servers = [start(kind, tmp_path / kind, pki, extra_global=disallow) for kind in ("slapd", "pyldapd")]
    try:
        results = []
        for server in servers:

            def action(conn):
                conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(pki.ca_cert))
                conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
                conn.simple_bind_s(ROOTDN, ROOTPW)
                conn.start_tls_s()
                return conn.whoami_s()

            results.append(outcome(server.url, action))
        assert results[1] == results[0]
        expected = {"": (0, "", ""), "disallow tls_2_anon": (0, "", f"dn:{ROOTDN}")}
        assert results[0] == expected.get(
            disallow, (ldap.OPERATIONS_ERROR.errnum, "cannot start TLS after authentication", None)
        )
    finally:
        for server in servers:
            server.stop()


# -- every directive pyldapd knows -------------------------------------------------------------------------------

# What each directive does in pyldapd: "refused" (file and line), "tuning" (kept, changes no answer, README
# table), "delegated" (implemented by another part: logfile, writetimeout, TLS), or the test showing its effect.
REFUSED_SAMPLES = {
    "attributeoptions": "x-hidden lang-",
    "pluginlog": "/tmp/plugin.log", "reverse-lookup": "on",
    "sasl-auxprops": "slapd", "sasl-host": "localhost", "sasl-realm": "EXAMPLE", "sasl-secprops": "none",
    "sasl-cbinding": "tls-unique", "schemadn": "cn=schema", "sortvals": "member",
    "limits": "users size=3", "hidden": "on", "lastmod": "off",
    "monitoring": "off", "sync_use_subentry": "on", "extra_attrs": "memberOf",
    "maxderefdepth": "5", "maxentrysize": "1000", "mode": "0644",
    "authid-rewriteengine": "on",
}  # fmt: skip
TUNING = {
    "concurrency", "index_hash64", "index_intlen", "index_substr_if_maxlen", "index_substr_if_minlen",
    "index_substr_any_len", "index_substr_any_step", "listener-threads", "tcp-buffer", "threadqueues",
    "checkpoint", "dbnosync", "envflags", "idlexp", "maxreaders", "multival", "rtxnsize", "searchstack",
    "cachesize", "idlcachesize", "dncachesize", "dbconfig", "dbpagesize", "shm_key", "linearindex", "lockdetect",
    "cachefree", "checksum", "dbnolocking",
}  # fmt: skip
DELEGATED = {"logfile", "logfile-rotate", "writetimeout", "tlsrandfile", "tlsecname", "gentlehup"}
BEHAVIOUR = {
    "allow": "test_ldapv2_bind_allowed", "disallow": "test_anonymous_bind_disallowed",
    "require": "test_anonymous_search_requires_authentication", "restrict": "test_restrict_write_refuses_rootdn_modify",
    "authz-regexp": "test_external_identity_mapped_to_rootdn", "referral": "test_default_referral_outside_naming_contexts",
    "ldapsyntax": "test_ldapsyntax_directive_defines_a_syntax", "authz-policy": "test_proxied_authorization_alike",
    "lastbind": "test_lastbind_records_pwdlastsuccess", "defaultsearchbase": "test_default_search_base",
    "readonly": "test_global_readonly", "rootdse": "test_rootdse_file_adds_attributes",
    "add_content_acl": "test_add_content_acl_checks_each_attribute",
    "subordinate": "test_subordinate_glues_under_its_superior",
    "ditcontentrule": "test_ditcontentrule_directive_is_a_schema_definition",
}  # fmt: skip
DATABASE_ONLY = {"hidden", "lastmod", "monitoring", "sync_use_subentry", "extra_attrs",
                 "maxderefdepth", "maxentrysize", "mode"}  # fmt: skip


def test_subordinate_glues_under_its_superior(tmp_path):
    """`subordinate`: the glued database's entries come in a subtree search of its superior (the differential
    tests are tests/server/test_glue.py); a subordinate with no superior after it, one after its superior, or a
    bad value, is refused at its line as slapd refuses it."""
    from pyldapd.config.slapdconf import ConfigError, load_slapd_conf

    people = f"ou=People,{SUFFIX}"
    (tmp_path / "sub").mkdir()
    (tmp_path / "top").mkdir()
    sub = f'database mdb\nsuffix "{people}"\nsubordinate\nrootdn "{ROOTDN}"\ndirectory {tmp_path / "sub"}\n'
    top = (
        f'database mdb\nsuffix "{SUFFIX}"\nrootdn "{ROOTDN}"\nrootpw {ROOTPW}\ndirectory {tmp_path / "top"}\n'
    )
    includes = "".join(f"include /etc/ldap/schema/{n}.schema\n" for n in ("core", "cosine"))
    for text, error in ((includes + sub, "glue: no superior found for sub"),
                        (includes + top + sub, "already served by a preceding mdb database"),
                        (includes + sub.replace("subordinate", "subordinate maybe") + top, "subordinate must be")):  # fmt: skip
        (tmp_path / "bad.conf").write_text(text)
        with pytest.raises(ConfigError, match=error) as info:
            load_slapd_conf(str(tmp_path / "bad.conf"))
        assert ":" in str(info.value).split(error)[0]  # file and line
    (tmp_path / "log").mkdir()
    logdb = f"database mdb\nsuffix cn=accesslog\ndirectory {tmp_path / 'log'}\n"
    (tmp_path / "bad.conf").write_text(
        includes + logdb + top + "overlay glue\noverlay accesslog\nlogdb cn=accesslog\n"
    )
    with pytest.raises(ConfigError, match="overlay accesslog above overlay glue: not supported by pyldapd"):
        load_slapd_conf(str(tmp_path / "bad.conf"))  # it would miss the subordinates' writes: refused
    server = start_pyldapd(tmp_path / "run", includes + sub + top)
    try:
        ldif = (f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: E\n\n"
                f"dn: {people}\nobjectClass: organizationalUnit\nou: People\n")  # fmt: skip
        added = ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=ldif)
        assert added.returncode == 0, added.stderr
        found = ldap_tool("ldapsearch", "-x", "-H", server.url, "-LLL", "-b", SUFFIX, "1.1")
        assert found.returncode == 0
        assert [line for line in found.stdout.splitlines() if line] == [f"dn: {SUFFIX}", f"dn: {people}"]
    finally:
        server.stop()


def test_every_directive_has_a_verdict():
    """A directive added to pyldapd's accepted sets without a verdict here fails this test."""
    from pyldapd.config import slapdconf

    known = (slapdconf.ACCEPTED_GLOBAL | slapdconf.ACCEPTED_DATABASE | set(slapdconf.DEFAULT_ONLY)
             | slapdconf.IMPLEMENTED)  # fmt: skip
    verdicts = set(REFUSED_SAMPLES) | TUNING | DELEGATED | set(BEHAVIOUR)
    assert known - verdicts == set()
    for name in BEHAVIOUR.values():
        assert name in globals(), name


def parse_with(tmp_path: Path, directive: str, *, in_database: bool):
    from pyldapd.config.slapdconf import load_slapd_conf

    lines = ["# a comment", f"database mdb\nsuffix {SUFFIX}\ndirectory {tmp_path}" if in_database else ""]
    text = "\n".join(lines) + "\n" + directive + "\n"
    path = tmp_path / "slapd.conf"
    path.write_text(text)
    return load_slapd_conf(str(path)), text.splitlines().index(directive) + 1, str(path)


@pytest.mark.parametrize("name", sorted(REFUSED_SAMPLES))
def test_unsupported_directive_refused_with_file_and_line(tmp_path, name):
    from pyldapd.config.slapdconf import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_with(tmp_path, f"{name} {REFUSED_SAMPLES[name]}", in_database=name in DATABASE_ONLY)
    path = str(tmp_path / "slapd.conf")
    assert str(info.value).startswith(f"{path}: line ")
    assert "not supported by pyldapd" in str(info.value)


@pytest.mark.parametrize("name", sorted(TUNING))
def test_tuning_directive_kept(tmp_path, name):
    global_section = name in {"concurrency", "listener-threads", "tcp-buffer", "threadqueues"} or \
        name.startswith("index_")  # fmt: skip
    config, _, _ = parse_with(tmp_path, f"{name} 4", in_database=not global_section)
    kept = config.extra if global_section else config.databases[0].extra
    assert (name, ["4"]) in kept


def test_threads_is_the_number_of_worker_processes(tmp_path):
    """`threads N` sets the worker processes (server/workers.py); 0 is refused with file and line (slapd refuses
    fewer than 2 threads; one process is meaningful here)."""
    from pyldapd.config.slapdconf import ConfigError

    config, _, _ = parse_with(tmp_path, "threads 3", in_database=False)
    assert config.threads == 3
    config, _, _ = parse_with(tmp_path, "threads 1", in_database=False)
    assert config.threads == 1
    with pytest.raises(ConfigError) as info:
        parse_with(tmp_path, "threads 0", in_database=False)
    assert "threads=0 smaller than minimum value 1" in str(info.value) and ": line " in str(info.value)


@pytest.mark.parametrize("directive", ["lastmod on", "hidden off", "mode 0600", "maxderefdepth 15",
                                       "sasl-secprops noplain,noanonymous", "attributeoptions lang-"])  # fmt: skip
def test_unsupported_directive_with_slapd_default_is_accepted(tmp_path, directive):
    config, _, _ = parse_with(tmp_path, directive, in_database=True)
    assert config.databases[0].suffixes == [SUFFIX]


def test_keyword_errors_name_file_and_line(tmp_path):
    from pyldapd.config.slapdconf import ConfigError

    for directive in (
        "allow bind_v3",
        "disallow everything",
        "require authc none",
        "restrict extended=1.2.3",
    ):
        with pytest.raises(ConfigError) as info:
            parse_with(tmp_path, directive, in_database=False)
        assert "line 3" in str(info.value), directive


def test_unknown_password_hash_refused(tmp_path):
    from pyldapd.config.slapdconf import ConfigError

    with pytest.raises(ConfigError, match="line 3: <password-hash> scheme not available"):
        parse_with(tmp_path, "password-hash {NOSUCH}", in_database=False)


@pytest.mark.parametrize("section, directive", [("config", "access to * by * manage"),
                                                ("config", "index cn eq"), ("monitor", "suffix cn=Monitor"),
                                                ("monitor", "index cn eq")])  # fmt: skip
def test_config_and_monitor_sections_refuse_what_they_would_ignore(tmp_path, section, directive):
    from pyldapd.config.slapdconf import ConfigError, load_slapd_conf

    path = tmp_path / "slapd.conf"
    path.write_text(f"database {section}\nrootdn cn=admin,cn={section}\n{directive}\n".replace(
        "rootdn cn=admin,cn=config\n", ""))  # fmt: skip
    with pytest.raises(ConfigError, match=f"not supported by pyldapd in database {section}"):
        load_slapd_conf(str(path))
    path.write_text("database monitor\nrootdn cn=admin,cn=monitor\n")  # the monitor's rootdn may read it
    assert load_slapd_conf(str(path)).databases[0].rootdn == "cn=admin,cn=monitor"


def test_unknown_overlay_refused(tmp_path):
    from pyldapd.config.slapdconf import ConfigError

    with pytest.raises(ConfigError, match=r"line 5: overlay \"memberof\" is not implemented by pyldapd"):
        parse_with(tmp_path, "overlay memberof", in_database=True)


def test_ldapsyntax_directive_defines_a_syntax(tmp_path):
    config, _, _ = parse_with(
        tmp_path, "ldapsyntax ( 1.3.6.1.4.1.99999.9 DESC 'my syntax' )", in_database=False
    )
    assert any("1.3.6.1.4.1.99999.9" in text for _, text in config.schema_definitions)


def test_ditcontentrule_directive_is_a_schema_definition(tmp_path):
    """Read as slapd reads it (its effect, side by side with slapd: tests/server/test_content_rules.py)."""
    from pyldapd.config.slapdconf import load_slapd_conf
    from pyldapd.server.app import build_schema

    path = tmp_path / "slapd.conf"
    path.write_text(
        "include /etc/ldap/schema/core.schema\nditcontentrule ( 2.5.6.6 NAME 'person' MAY mail )\n"
    )
    config = load_slapd_conf(str(path))
    schema = build_schema(config)
    rule = schema.content_rule(schema.object_class("person"))
    assert rule is not None and [at.name for at in rule.may] == ["mail"]


def test_refused_directive_stops_the_server(tmp_path):
    conf = tmp_path / "slapd.conf"
    conf.write_text(slapd_conf(tmp_path / "db", extra_db="hidden on"))
    result = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-f", str(conf)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert "hidden: not supported by pyldapd" in result.stderr + result.stdout


# -- cn=config: the same attributes over LDAP ------------------------------------------------------------------


def test_slaptest_conversion_keeps_access_directives(tmp_path):
    """A slapd.d written by Debian's slaptest (with every default it adds) reads back with the same effect."""
    from pyldapd.config import cnconfig

    (tmp_path / "db").mkdir(exist_ok=True)
    extra_global = (RESTRICTED_GLOBAL + '\nrestrict extended=1.3.6.1.4.1.4203.1.11.3\nauthz-regexp "^x$" "cn=y"\n'
                    "referral ldap://referral.example.org/\nsecurity simple_bind=64")  # fmt: skip
    conf = tmp_path / "slapd.conf"
    conf.write_text(slapd_conf(tmp_path / "db", modules=True, extra_global=extra_global,
                               extra_db="restrict read\nrequire sasl"))  # fmt: skip
    (tmp_path / "slapd.d").mkdir()
    subprocess.run(
        ["/usr/sbin/slaptest", "-f", str(conf), "-F", str(tmp_path / "slapd.d")],
        capture_output=True,
        timeout=60,
    )  # fmt: skip  (it then fails to open the empty database read-only: expected)
    config = cnconfig.config_from_entries(cnconfig.read_slapd_d(tmp_path / "slapd.d"))
    assert config.allows == ["bind_v2"] and config.disallows == ["bind_anon"]
    assert config.requires == ["authc"]
    assert config.authz_regexp == [("^x$", "cn=y")]
    assert config.referral == "ldap://referral.example.org/"
    assert config.security.simple_bind == 64
    from pyldapd.server.restrictions import restricted_ops

    assert "exop:1.3.6.1.4.1.4203.1.11.3" in restricted_ops(config.restrict)
    db = config.data_databases()[0]
    assert {"search", "compare"} <= restricted_ops(db.restrict) and "sasl" in db.requires


def test_every_olc_attribute_has_a_verdict():
    """Each attribute type of olc.schema is read, tuning only, delegated, default-only or refused (80)."""
    from pyldapd.config import cnconfig
    from pyldapd.model.entry import Entry

    read = (cnconfig.GLOBAL_READ | cnconfig.FRONTEND_READ | cnconfig.DATABASE_READ | cnconfig.OVERLAY_READ
            | cnconfig.MODULE_READ | {"olcattributetypes", "olcobjectclasses", "olcobjectidentifier",
                                      "olcldapsyntaxes"})  # fmt: skip
    kept = cnconfig.TUNING_OLC | cnconfig.DELEGATED_OLC | cnconfig.INFORMATIONAL_OLC
    refused = []
    for at in cnconfig.config_schema().all_attribute_types():
        key = at.key
        if not key.startswith("olc") or key in read or key in kept:
            continue
        entry = Entry("olcDatabase={1}mdb,cn=config")
        entry.put(key, at.name, [b"pyldapd-test-value"])
        with pytest.raises(cnconfig.ConfigValueError, match=f"<{at.name}> not supported by pyldapd"):
            cnconfig.check_supported(entry, cnconfig.DATABASE_READ, database=True)
        if key in cnconfig.DEFAULT_OLC:
            entry.put(key, at.name, [sorted(cnconfig.DEFAULT_OLC[key])[-1].upper().encode()])
            cnconfig.check_supported(entry, cnconfig.DATABASE_READ, database=True)
        refused.append(key)
    assert {"olchidden", "olcsaslhost", "olcplugin"} <= set(refused)


def test_cn_config_access_changes_alike_with_slapd(tmp_path):
    """olcDisallows, olcRequires and bad keywords over cn=config, on Debian's slapd and on pyldapd at run time;
    an attribute pyldapd does not implement is refused with 80 where slapd takes it."""
    from tests.server.test_cnconfig import Node, start_slapd_with_cn_config

    node = Node(tmp_path, "py", "mdb")
    node.start()
    slapd, slapd_ldapi, slapd_url = start_slapd_with_cn_config(tmp_path)
    try:
        urls = {"slapd": (slapd_ldapi, slapd_url), "pyldapd": (node.ldapi, node.url)}

        def both(tool: str, *args: str, ldif: str | None = None, admin: bool = False):
            out = []
            for name, (ldapi, url) in urls.items():
                if admin:
                    db = "olcDatabase={1}mdb" if name == "slapd" else "olcDatabase={2}mdb"
                    result = ldap_tool(tool, "-Y", "EXTERNAL", "-Q", "-H", ldapi,
                                       input=(ldif or "").replace("{db}", db))  # fmt: skip
                else:
                    result = ldap_tool(tool, "-H", url, *args)
                out.append((result.returncode, result.stderr.strip()))
            return out

        def change(attr_ldif: str, dn: str = "cn=config"):
            return both("ldapmodify", ldif=f"dn: {dn}\nchangetype: modify\n{attr_ldif}", admin=True)

        assert both("ldapwhoami", "-x") == [(0, ""), (0, "")]
        assert change("add: olcDisallows\nolcDisallows: bind_anon\n") == [(0, ""), (0, "")]
        theirs, ours = both("ldapwhoami", "-x")
        assert theirs[0] == 48 and ours == theirs
        theirs, ours = change("add: olcAllows\nolcAllows: bind_v4\n")
        assert theirs[0] != 0 and ours == theirs
        assert change("delete: olcDisallows\n") == [(0, ""), (0, "")]
        assert change("add: olcRequires\nolcRequires: authc\n", "olcDatabase={-1}frontend,cn=config") == \
            [(0, ""), (0, "")]  # fmt: skip
        theirs, ours = both("ldapsearch", "-x", "-b", "", "-s", "base", "1.1")
        assert theirs[0] == 53 and ours == theirs
        theirs, ours = change("replace: olcHidden\nolcHidden: TRUE\n", "{db},cn=config")
        assert theirs == (0, "")
        assert ours[0] == 80 and "<olcHidden> not supported by pyldapd" in ours[1]
        assert "olcHidden" not in (node.dir / "slapd.d/cn=config/olcDatabase={2}mdb.ldif").read_text()
        # the config and monitor databases' rules are fixed in pyldapd: a change to them is refused, not dropped
        theirs, ours = both("ldapmodify", ldif="dn: olcDatabase={0}config,cn=config\nchangetype: modify\n"
                            "add: olcAccess\nolcAccess: to * by * read\n", admin=True)  # fmt: skip
        assert theirs == (0, "") and ours[0] == 53 and "<olcAccess> not supported by pyldapd" in ours[1]
        # last: once root over ldapi is mapped to the rootdn it may no longer manage cn=config (on both)
        mapping = (
            'add: olcAuthzRegexp\nolcAuthzRegexp: "^gidnumber=0[+]uidnumber=0,cn=peercred,.*$" "{ROOTDN}"\n'
        )
        assert change(mapping.replace("{ROOTDN}", "cn=admin,dc=example,dc=com")) == [(0, ""), (0, "")]
        whoami = [ldap_tool("ldapwhoami", "-Y", "EXTERNAL", "-Q", "-H", ldapi).stdout.strip()
                  for ldapi, _ in urls.values()]  # fmt: skip
        assert whoami == ["dn:cn=admin,dc=example,dc=com"] * 2
    finally:
        slapd.stop()
        node.stop()


def test_conversion_round_trip(tmp_path):
    """The cn=config form of these directives (as `pyldapd init`/conversion write it) reads back the same."""
    from pyldapd.config import cnconfig

    extra_global = (RESTRICTED_GLOBAL + "\nrestrict extended=1.3.6.1.4.1.4203.1.11.3 bind\n" + PROXY_GLOBAL
                    + f"referral ldap://referral.example.org/\ndefaultsearchbase {PEOPLE}\nreadonly on")  # fmt: skip
    conf = tmp_path / "slapd.conf"
    (tmp_path / "db").mkdir(exist_ok=True)
    conf.write_text(slapd_conf(tmp_path / "db", extra_global=extra_global,
                               extra_db="require sasl\nrestrict compare\nlastbind on\nsecurity ssf=1"))  # fmt: skip
    from pyldapd.config.slapdconf import load_slapd_conf

    original = load_slapd_conf(str(conf))
    cnconfig.write_slapd_d(tmp_path / "slapd.d", cnconfig.entries_from_config(original))
    converted = cnconfig.config_from_entries(cnconfig.read_slapd_d(tmp_path / "slapd.d"))
    for name in ("allows", "disallows", "requires", "authz_regexp", "authz_policy", "referral", "default_search_base",
                 "readonly"):  # fmt: skip
        assert getattr(converted, name) == getattr(original, name), name
    assert sorted(converted.restrict) == sorted(original.restrict)
    db, before = converted.data_databases()[0], original.data_databases()[0]
    assert (db.requires, db.restrict, db.lastbind, db.security) == (before.requires, before.restrict, True,
                                                                     before.security)  # fmt: skip


def test_authz_regexp_maps_a_client_certificate(tmp_path):
    """SASL EXTERNAL over TLS: the certificate's subject goes through authz-regexp as on ldapi."""
    from tests.certs import make_pki
    from tests.server.test_tls import outcome as tool_outcome
    from tests.server.test_tls import start, tool

    pki = make_pki(tmp_path / "pki")
    mapping = f'authz-regexp "^cn=client,o=test$" "{ROOTDN}"'
    servers = [
        start(kind, tmp_path / kind, pki, verify="demand", extra_global=mapping)
        for kind in ("slapd", "pyldapd")
    ]
    try:
        results = [tool_outcome(tool(pki, "ldapwhoami", "-Y", "EXTERNAL", "-H", server.ldaps_url, cert=True),
                                show_stdout=True) for server in servers]  # fmt: skip
        assert results[1] == results[0] == (0, "", f"dn:{ROOTDN}")
    finally:
        for server in servers:
            server.stop()


def test_rootdse_file_adds_attributes(tmp_path):
    """`rootdse FILE`: the LDIF file's attributes are added to the root DSE, as slapd adds them; a file that
    cannot be read is refused at its line."""
    ldif = tmp_path / "rootdse.ldif"
    ldif.write_text("dn:\nvendorName: The pyldapd test\ndescription: extra root DSE value\n")
    answers = []
    for kind in ("slapd", "pyldapd"):
        conf = slapd_conf(tmp_path / kind / "db", extra_global=f"rootdse {ldif}", modules=True)
        server = (start_slapd if kind == "slapd" else start_pyldapd)(tmp_path / kind, conf)
        try:
            found = ldap_tool("ldapsearch", "-x", "-LLL", "-H", server.url, "-s", "base", "-b", "",
                              "vendorName", "description")  # fmt: skip
            answers.append((found.returncode, sorted(found.stdout.split("\n"))))
        finally:
            server.stop()
    assert answers[1] == answers[0]
    assert "vendorName: The pyldapd test" in answers[1][1]
    from pyldapd.config.slapdconf import ConfigError

    with pytest.raises(ConfigError, match="line 3: rootdse: could not read"):
        parse_with(tmp_path, f"rootdse {tmp_path / 'missing.ldif'}", in_database=False)


def test_add_content_acl_checks_each_attribute(tmp_path):
    """`add_content_acl on`: an add needs `add` access to each attribute it brings (slapd's acl_check_modlist),
    result 50 "no write access to attribute"; off, only the entry and its parent are checked."""
    rules = (f'access to attrs=description by dn.exact="uid=jdoe,ou=People,{SUFFIX}" read by * read\n'
             f'access to * by dn.exact="uid=jdoe,ou=People,{SUFFIX}" write by * read\n')  # fmt: skip
    new = (f"dn: uid=new,ou=People,{SUFFIX}\nobjectClass: inetOrgPerson\ncn: New\nsn: New\nuid: new\n"
           "description: not allowed\n")  # fmt: skip
    answers = []
    for kind in ("slapd", "pyldapd"):
        for flag in ("off", "on"):
            conf = slapd_conf(
                tmp_path / kind / flag / "db", extra_db=f"add_content_acl {flag}\n{rules}", modules=True
            )
            server = (start_slapd if kind == "slapd" else start_pyldapd)(tmp_path / kind / flag, conf)
            try:
                loaded = ldap_tool(
                    "ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=BASE_LDIF
                )
                assert loaded.returncode == 0, loaded.stderr
                added = ldap_tool("ldapadd", "-x", "-H", server.url, "-D", f"uid=jdoe,ou=People,{SUFFIX}", "-w",
                                  "secret1", input=new)  # fmt: skip
                answers.append((kind, flag, added.returncode, added.stderr.strip().splitlines()[-1:]))
            finally:
                server.stop()
    assert [a[1:] for a in answers[2:]] == [a[1:] for a in answers[:2]]
    assert [a[2] for a in answers[2:]] == [0, 50]
