"""TLS: ldaps:// and StartTLS, `security` strength requirements, SASL EXTERNAL with client certificates.

Certificates are made at run time (tests/certs.py). The differential tests start Debian's slapd with the same
slapd.conf and compare result codes and texts request by request.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.certs import TestPKI, make_pki, tls_conf
from tests.servers import ROOTDN, ROOTPW, SLAPD, RunningServer, free_port, slapd_conf, start_process

pytest.importorskip("cryptography")

NO_UVLOOP = "import sys; sys.modules['uvloop'] = None; from pyldapd.cli.main import main; sys.exit(main())"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


class TLSServer:
    def __init__(self, server: RunningServer, ldaps_port: int) -> None:
        self.server = server
        self.url = server.url
        self.ldaps_url = f"ldaps://127.0.0.1:{ldaps_port}"
        self.ldapi_url = server.ldapi_url

    def stop(self) -> None:
        self.server.stop()


def start(kind: str, workdir: Path, pki: TestPKI, *, verify: str = "never", extra_global: str = "",
          extra_db: str = "", tls: bool = True, uvloop: bool = True) -> TLSServer:  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "db").mkdir(exist_ok=True)
    global_text = (tls_conf(pki, verify) if tls else "") + extra_global
    conf = slapd_conf(workdir / "db", extra_global=global_text, extra_db=extra_db, modules=kind == "slapd")
    config_path = workdir / f"{kind}.conf"
    config_path.write_text(conf)
    port, ldaps_port = free_port(), free_port()
    ldapi_path = str(workdir / f"{kind}.sock")
    urls = f"ldap://127.0.0.1:{port}/ ldapi://{ldapi_path.replace('/', '%2F')}/"
    if tls:
        urls += f" ldaps://127.0.0.1:{ldaps_port}/"
    if kind == "slapd":
        if not os.path.exists(SLAPD):
            pytest.skip("Debian's slapd is not installed")
        argv = [SLAPD, "-f", str(config_path), "-h", urls, "-d", "0"]
    else:
        head = ["-c", NO_UVLOOP] if not uvloop else ["-m", "pyldapd.cli.main"]
        argv = [sys.executable, *head, "serve", "-f", str(config_path), "-h", urls, "-d", "stats"]
    return TLSServer(start_process(kind, argv, port, ldapi_path, workdir, config_path), ldaps_port)


@pytest.fixture
def pair(tmp_path, pki):
    """Start pyldapd and slapd with the same TLS config; yields a starter and stops what it started."""
    started: list[TLSServer] = []

    def starter(**kwargs) -> tuple[TLSServer, TLSServer]:
        index = len(started)
        ours = start("pyldapd", tmp_path / f"p{index}", pki, **kwargs)
        started.append(ours)
        theirs = start("slapd", tmp_path / f"s{index}", pki, **kwargs)
        started.append(theirs)
        return ours, theirs

    yield starter
    for server in started:
        server.stop()


def tool(pki: TestPKI, name: str, *args: str, cert: bool = False, rogue: bool = False,
         input: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    env = dict(
        os.environ,
        LDAPCONF=os.devnull,
        LDAPRC=os.devnull,
        LDAPTLS_CACERT=str(pki.ca_cert),
        LDAPTLS_REQCERT="demand",
    )
    if cert or rogue:
        env["LDAPTLS_CERT"] = str(pki.rogue_cert if rogue else pki.client_cert)
        env["LDAPTLS_KEY"] = str(pki.rogue_key if rogue else pki.client_key)
    return subprocess.run([path, "-o", "nettimeout=10", *args], input=input, capture_output=True, text=True,
                          timeout=30, env=env)  # fmt: skip


def outcome(proc: subprocess.CompletedProcess, *, show_stdout: bool = False) -> tuple:
    """(LDAP result code, diagnostic text[, output]) as the ldap-utils report them."""
    if proc.returncode == 0:
        return (0, "", proc.stdout.strip()) if show_stdout else (0, "")
    codes = re.findall(r"\((-?\d+)\)\s*$", proc.stderr + proc.stdout, re.MULTILINE)
    info = re.search(r"[Aa]dditional info(?:rmation)?: (.*)", proc.stderr + proc.stdout)
    return (int(codes[-1]) if codes else proc.returncode, info.group(1).strip() if info else "")


ADD_SUFFIX = "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: x\ndc: example\n"


def security_matrix(pki: TestPKI, server: TLSServer) -> list[tuple]:
    """Every connection kind x a bind and the main operations; what the client sees."""
    results = []
    modes = {
        "plain": ["-H", server.url],
        "ldapi": ["-H", server.ldapi_url],
        "starttls": ["-ZZ", "-H", server.url],
        "ldaps": ["-H", server.ldaps_url],
        "external": ["-ZZ", "-H", server.url],
    }
    for mode, where in modes.items():
        cert = mode == "external"
        auth = ["-Y", "EXTERNAL"] if cert else ["-x", "-D", ROOTDN, "-w", ROOTPW]
        checks = {
            "anonymous whoami": tool(pki, "ldapwhoami", "-x", *where),
            "bound whoami": tool(pki, "ldapwhoami", *auth, *where, cert=cert),
            "root DSE": tool(
                pki, "ldapsearch", "-LLL", "-x", *where, "-s", "base", "-b", "", "namingContexts"
            ),
            "database search": tool(
                pki, "ldapsearch", "-LLL", "-x", *where, "-s", "base", "-b", "dc=example,dc=com", "1.1"
            ),  # fmt: skip
            "compare": tool(pki, "ldapcompare", "-x", *where, "dc=example,dc=com", "dc:example"),
            "add": tool(pki, "ldapadd", *auth, *where, input=ADD_SUFFIX, cert=cert),
        }
        for label, proc in checks.items():
            results.append((mode, label, *outcome(proc, show_stdout="whoami" in label)))
    return results


# -- pyldapd alone -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_starttls_and_ldaps_with_ldap_utils(tmp_path, pki, uvloop):
    server = start("pyldapd", tmp_path, pki, verify="allow", uvloop=uvloop)
    try:
        for args in (["-ZZ", "-H", server.url], ["-H", server.ldaps_url]):
            proc = tool(pki, "ldapwhoami", "-x", "-D", ROOTDN, "-w", ROOTPW, *args)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.strip() == f"dn:{ROOTDN}"
            proc = tool(pki, "ldapsearch", "-LLL", "-x", *args, "-s", "base", "-b", "", "namingContexts")
            assert proc.returncode == 0, proc.stderr
            assert "namingContexts: dc=example,dc=com" in proc.stdout
            proc = tool(pki, "ldapwhoami", "-Y", "EXTERNAL", *args, cert=True)
            assert (proc.returncode, proc.stdout.strip()) == (0, "dn:cn=client,o=test"), proc.stderr
        log = server.server.log()
        assert "TLS established tls_ssf=" in log
        assert re.search(r"BIND dn=\"cn=admin,dc=example,dc=com\" mech=SIMPLE ssf=(128|256)", log)
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["pyldapd", "slapd"])
def test_starttls_without_tls_config_is_not_offered(tmp_path, pki, kind):
    """Without a certificate configured, StartTLS is not among the server's extended operations: protocolError
    "unsupported extended operation", as Debian's slapd answers, and the connection goes on in the clear."""
    ldap = pytest.importorskip("ldap")
    server = start(kind, tmp_path, pki, tls=False)
    try:
        conn = ldap.initialize(server.url)
        with pytest.raises(ldap.PROTOCOL_ERROR) as info:
            conn.start_tls_s()
        assert info.value.args[0]["info"] == "unsupported extended operation"
        assert conn.whoami_s() == ""  # the connection is usable
        proc = tool(pki, "ldapwhoami", "-x", "-ZZ", "-H", server.url)
        assert outcome(proc) == (2, "unsupported extended operation")
        assert tool(pki, "ldapwhoami", "-x", "-H", server.url).returncode == 0
    finally:
        server.stop()


def test_python_ldap_starttls_twice_and_ldaps(tmp_path, pki):
    pytest.importorskip("ldap")
    import ldap.extop

    server = start("pyldapd", tmp_path, pki, verify="try")
    try:
        conn = ldap.initialize(server.url)
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(pki.ca_cert))
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        conn.start_tls_s()
        conn.simple_bind_s(ROOTDN, ROOTPW)
        assert conn.whoami_s() == f"dn:{ROOTDN}"
        with pytest.raises(ldap.OPERATIONS_ERROR) as info:
            conn.extop_s(ldap.extop.ExtendedRequest("1.3.6.1.4.1.1466.20037", None))
        assert info.value.args[0]["info"] == "TLS already started"
        assert conn.whoami_s() == f"dn:{ROOTDN}"  # still usable, still encrypted
        conn.unbind_s()

        conn = ldap.initialize(server.ldaps_url)
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(pki.ca_cert))
        conn.set_option(ldap.OPT_X_TLS_CERTFILE, str(pki.client_cert))
        conn.set_option(ldap.OPT_X_TLS_KEYFILE, str(pki.client_key))
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        conn.sasl_non_interactive_bind_s("EXTERNAL")
        assert conn.whoami_s() == "dn:cn=client,o=test"
        conn.unbind_s()
    finally:
        server.stop()


def test_ldap3_tls(tmp_path, pki):
    ldap3 = pytest.importorskip("ldap3")
    server = start("pyldapd", tmp_path, pki, verify="allow")
    try:
        port = int(server.url.rsplit(":", 1)[1])
        tls = ldap3.Tls(ca_certs_file=str(pki.ca_cert), validate=ssl.CERT_REQUIRED)
        conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=port, tls=tls), ROOTDN, ROOTPW)
        conn.open()
        assert conn.start_tls()
        assert conn.bind()
        assert conn.extend.standard.who_am_i() == f"dn:{ROOTDN}"
        conn.unbind()

        ldaps_port = int(server.ldaps_url.rsplit(":", 1)[1])
        tls = ldap3.Tls(ca_certs_file=str(pki.ca_cert), validate=ssl.CERT_REQUIRED,
                        local_certificate_file=str(pki.client_cert), local_private_key_file=str(pki.client_key))  # fmt: skip
        conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=ldaps_port, use_ssl=True, tls=tls),
                                authentication=ldap3.SASL, sasl_mechanism=ldap3.EXTERNAL)  # fmt: skip
        assert conn.bind(), conn.result
        assert conn.extend.standard.who_am_i() == "dn:cn=client,o=test"
        conn.unbind()
    finally:
        server.stop()


def test_starttls_refused_with_outstanding_persistent_search(tmp_path, pki):
    """A refreshAndPersist sync search is an outstanding operation: StartTLS gets operationsError."""
    pytest.importorskip("ldap")
    import ldap.extop
    from ldap.syncrepl import SyncreplConsumer

    server = start("pyldapd", tmp_path, pki, extra_db="overlay syncprov")

    class Consumer(SyncreplConsumer, ldap.ldapobject.SimpleLDAPObject):
        pass

    conn = Consumer(server.url)
    try:
        conn.simple_bind_s(ROOTDN, ROOTPW)
        conn.add_s("dc=example,dc=com", [("objectClass", [b"dcObject", b"organization"]), ("o", [b"x"]),
                                         ("dc", [b"example"])])  # fmt: skip
        conn.syncrepl_search("dc=example,dc=com", ldap.SCOPE_SUBTREE, mode="refreshAndPersist")
        request = conn.extop(ldap.extop.ExtendedRequest("1.3.6.1.4.1.1466.20037", None))
        with pytest.raises(ldap.OPERATIONS_ERROR) as info:
            conn.extop_result(request, timeout=10)
        assert info.value.args[0]["info"] == "cannot start TLS when operations are outstanding"
    finally:
        conn.unbind_s()
        server.stop()


# -- pyldapd and slapd side by side -------------------------------------------------------------------------

SECURITY_CONFIGS = [
    ("security simple_bind=128", ""),
    ("security ssf=128", ""),
    ("security tls=1 transport=1", ""),
    ("security update_ssf=128", ""),
    ("security sasl=1", ""),
    ("", "security ssf=128"),
    ("", "security update_tls=128 simple_bind=64"),
]


@pytest.mark.parametrize("extra_global,extra_db", SECURITY_CONFIGS, ids=lambda s: s or "-")
def test_security_matrix_matches_slapd(pair, pki, extra_global, extra_db):
    ours, theirs = pair(verify="allow", extra_global=extra_global + "\n", extra_db=extra_db)
    expected = security_matrix(pki, theirs)
    got = security_matrix(pki, ours)
    assert got == expected
    # the plain connection is refused something in every configuration; TLS satisfies all but transport= and sasl=
    assert any(r[0] == "plain" and r[2] == 13 for r in got)
    if "transport" not in extra_global and "sasl" not in extra_global:
        assert all(r[2] != 13 for r in got if r[0] in ("starttls", "ldaps", "external"))


def test_client_certificates_match_slapd(pair, pki):
    """TLSVerifyClient demand: no certificate or an untrusted one ends the session; SASL EXTERNAL authzid."""
    ours, theirs = pair(verify="demand")
    for server in (ours, theirs):
        server.checks = [
            outcome(
                tool(pki, "ldapwhoami", "-Y", "EXTERNAL", "-ZZ", "-H", server.url, cert=True),
                show_stdout=True,
            ),
            outcome(
                tool(pki, "ldapwhoami", "-Y", "EXTERNAL", "-H", server.ldaps_url, cert=True), show_stdout=True
            ),
            outcome(
                tool(
                    pki,
                    "ldapwhoami",
                    "-Y",
                    "EXTERNAL",
                    "-X",
                    "dn:CN=client,O=Test",
                    "-ZZ",
                    "-H",
                    server.url,
                    cert=True,
                ),
                show_stdout=True,
            ),  # fmt: skip
            outcome(
                tool(
                    pki,
                    "ldapwhoami",
                    "-Y",
                    "EXTERNAL",
                    "-X",
                    f"dn:{ROOTDN}",
                    "-ZZ",
                    "-H",
                    server.url,
                    cert=True,
                )
            ),  # fmt: skip
            outcome(
                tool(pki, "ldapwhoami", "-x", "-D", ROOTDN, "-w", ROOTPW, "-ZZ", "-H", server.url, cert=True),
                show_stdout=True,
            ),  # fmt: skip
            outcome(tool(pki, "ldapwhoami", "-Y", "EXTERNAL", "-H", server.ldapi_url), show_stdout=True),
        ]
        server.failures = [
            tool(pki, "ldapwhoami", "-x", "-ZZ", "-H", server.url).returncode,
            tool(pki, "ldapwhoami", "-x", "-H", server.ldaps_url).returncode,
            tool(pki, "ldapwhoami", "-x", "-ZZ", "-H", server.url, rogue=True).returncode,
            tool(pki, "ldapwhoami", "-x", "-H", server.ldaps_url, rogue=True).returncode,
        ]
    assert ours.checks == theirs.checks
    assert ours.checks[0] == (0, "", "dn:cn=client,o=test")
    assert ours.checks[3] == (50, "SASL(-14): authorization failure: not authorized")
    assert all(code != 0 for code in ours.failures), ours.failures
    assert all(code != 0 for code in theirs.failures), theirs.failures
    # the plain listener still works without any certificate
    for server in (ours, theirs):
        assert tool(pki, "ldapwhoami", "-x", "-H", server.url).returncode == 0


def test_verify_client_never_has_no_external(pair, pki):
    ours, theirs = pair(verify="never")
    for server in (ours, theirs):
        server.checks = [
            outcome(tool(pki, "ldapwhoami", "-Y", "EXTERNAL", "-ZZ", "-H", server.url, cert=True)),
            outcome(tool(pki, "ldapwhoami", "-x", "-ZZ", "-H", server.url, cert=True), show_stdout=True),
        ]
    assert ours.checks == theirs.checks
    assert ours.checks[0][1] == "SASL(-4): no mechanism available:"  # no external identity
