"""Random and mutated LDAP PDUs at a running pyldapd over real sockets (hypothesis, bounded in count and time).

Afterwards the server is up, answers valid requests, has logged no Traceback, and the data written before the
fuzzing is all there, unchanged.
"""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyldapd.model import filter as flt
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap as pdu
from tests.data import BASE_LDIF
from tests.servers import ROOTDN, ROOTPW, SUFFIX, ldap_tool, slapd_conf, start_pyldapd

BUDGET = 90.0  # seconds for the whole fuzzing run
EXAMPLES = 300


def valid_requests() -> list[bytes]:
    f = flt.And(
        [flt.Equality("uid", b"jdoe"), flt.Substrings("cn", b"J", [b"o"], b"n"), flt.Not(flt.Present("x"))]
    )
    ops = [
        pdu.BindRequest(3, ROOTDN, ROOTPW.encode(), None, None),
        pdu.BindRequest(3, "", b"", None, None),
        pdu.BindRequest(3, "", None, "EXTERNAL", None),
        pdu.SearchRequest(SUFFIX, 2, 0, 10, 5, False, f, ["cn", "+", "*"]),
        pdu.SearchRequest("", 0, 0, 0, 0, True, flt.Present("objectClass"), []),
        pdu.AddRequest(
            f"cn=fuzz,{SUFFIX}", [("objectClass", [b"person"]), ("cn", [b"fuzz"]), ("sn", [b"z"])]
        ),
        pdu.ModifyRequest(f"cn=fuzz,{SUFFIX}", [pdu.Change(2, "sn", [b"y"])]),
        pdu.DelRequest(f"cn=fuzz,{SUFFIX}"),
        pdu.ModifyDNRequest(f"cn=fuzz,{SUFFIX}", "cn=fuzz2", True, None),
        pdu.CompareRequest(f"uid=jdoe,ou=People,{SUFFIX}", "uid", b"jdoe"),
        pdu.ExtendedRequest(ctl.WHO_AM_I, None),
        pdu.ExtendedRequest(ctl.PASSWORD_MODIFY, b"\x30\x00"),
        pdu.AbandonRequest(1),
    ]
    out = []
    for index, op in enumerate(ops, 1):
        controls = [pdu.Control(ctl.MANAGE_DSA_IT, False, None)] if index % 3 == 0 else []
        out.append(pdu.encode_message(pdu.LDAPMessage(index, op, controls)))
    paged = pdu.Control(ctl.PAGED_RESULTS, True, ctl.encode_paged_results(ctl.PagedResults(2, b"")))
    out.append(pdu.encode_message(pdu.LDAPMessage(99, ops[3], [paged])))
    return out


SEEDS = valid_requests()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 4))
        position = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == 0 and data:  # flip a byte (tags, lengths, content)
            data[position] = draw(st.integers(0, 255))
        elif kind == 1:  # insert bytes
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == 2 and data:  # delete a run
            del data[position : position + draw(st.integers(1, 8))]
        elif kind == 3 and len(data) > 2:  # rewrite a length octet as long form
            data[1] = draw(st.sampled_from([0x80, 0x81, 0x84, 0x85, 0xFF, 0x7F]))
        elif kind == 4:  # truncate
            data = data[:position]
    return bytes(data)


payloads = st.lists(
    st.one_of(mutated(), st.binary(min_size=1, max_size=200), st.sampled_from(SEEDS)), min_size=1, max_size=4
)


@pytest.fixture(scope="module")
def loaded_server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz")
    server = start_pyldapd(workdir, slapd_conf(workdir / "db"))
    added = ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=BASE_LDIF)
    assert added.returncode == 0, added.stderr
    yield server
    server.stop()


def snapshot(server) -> str:
    result = ldap_tool("ldapsearch", "-LLL", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, "-b", SUFFIX,
                       "(!(cn=fuzz*))", "*", "+")  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = "\n".join(line for line in result.stdout.splitlines() if not line.startswith("contextCSN:"))
    return "\n\n".join(sorted(block for block in text.split("\n\n") if block.strip()))  # contextCSN may move


def test_fuzzed_pdus_never_hurt_the_server(loaded_server):
    before = snapshot(loaded_server)
    started = time.monotonic()
    sent = [0]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(payloads)
    def fuzz(chunks: list[bytes]) -> None:
        if time.monotonic() - started > BUDGET:
            return
        with socket.create_connection(("127.0.0.1", loaded_server.port), timeout=3) as sock:
            sock.settimeout(0.3)
            try:
                for chunk in chunks:
                    sock.sendall(chunk)
                    sent[0] += 1
                sock.recv(65536)
            except (TimeoutError, ConnectionError):
                pass
        assert loaded_server.process.poll() is None, loaded_server.log()[-3000:]

    fuzz()
    assert sent[0] >= 100
    assert loaded_server.process.poll() is None
    assert ldap_tool("ldapwhoami", "-x", "-H", loaded_server.url, "-D", ROOTDN, "-w", ROOTPW).returncode == 0
    assert snapshot(loaded_server) == before  # nothing lost, nothing changed
    assert "Traceback" not in loaded_server.log()
