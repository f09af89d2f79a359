"""The http:// listener: Prometheus metrics scraped with urllib and parsed with prometheus_client's own parser,
the same counters as cn=Monitor, and /healthz and /readyz (not ready while a consumer's provider is down)."""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.data import BASE_LDIF
from tests.replication.helpers import consumer_conf, provider_conf
from tests.servers import (
    ROOTDN,
    ROOTPW,
    free_port,
    ldap_tool,
    port_open,
    slapd_conf,
    start_process,
    start_pyldapd,
    wait_for,
)

SUFFIX = "dc=example,dc=com"
ADMIN = ["-x", "-D", ROOTDN, "-w", ROOTPW]


def start_with_http(workdir: Path, conf_text: str, name: str = "pyldapd"):
    """pyldapd with an ldap://, an ldapi:// and an http:// listener; returns (server, metrics base URL)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.conf"
    config_path.write_text(conf_text)
    port, http_port = free_port(), free_port()
    ldapi_path = str(workdir / f"{name}.sock")
    urls = f"ldap://127.0.0.1:{port}/ ldapi://{ldapi_path.replace('/', '%2F')}/ http://127.0.0.1:{http_port}/"
    argv = [
        sys.executable,
        "-m",
        "pyldapd.cli.main",
        "serve",
        "-f",
        str(config_path),
        "-h",
        urls,
        "-d",
        "stats",
    ]
    server = start_process(name, argv, port, ldapi_path, workdir, config_path)
    wait_for(lambda: port_open(http_port), 15, what="the http:// listener")  # opened after the ldap:// one
    return server, f"http://127.0.0.1:{http_port}"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> dict[tuple[str, tuple], float]:
    """/metrics -> {(sample name, sorted labels): value}"""
    status, text = get(f"{base}/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def monitor_counter(server, dn: str, attr: str) -> int:
    result = ldap_tool(
        "ldapsearch", "-LLL", "-H", server.url, *ADMIN, "-b", dn, "-s", "base", attr, check=True
    )
    return int(next(line.split(": ")[1] for line in result.stdout.splitlines() if line.startswith(attr)))


def test_scrape(tmp_path):
    server, base = start_with_http(tmp_path, slapd_conf(tmp_path / "db"))
    try:
        ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=BASE_LDIF, check=True)
        for _ in range(3):
            ldap_tool("ldapsearch", "-x", "-H", server.url, "-b", SUFFIX, "(uid=jdoe)", "cn", check=True)
        bad = ldap_tool("ldapsearch", "-x", "-H", server.url, "-b", f"ou=Nowhere,{SUFFIX}", "(objectClass=*)")
        assert bad.returncode == 32
        samples = scrape(base)
        ops = {
            op: samples[("pyldapd_operations_initiated_total", (("op", op),))]
            for op in ("add", "search", "bind")
        }
        assert ops == {"add": BASE_LDIF.count("dn: "), "search": 4, "bind": 5}
        assert (
            samples[
                ("pyldapd_operation_results_total", (("code", "0"), ("op", "search"), ("result", "success")))
            ]
            == 3
        )
        assert samples[("pyldapd_operation_results_total",
                        (("code", "32"), ("op", "search"), ("result", "noSuchObject")))] == 1  # fmt: skip
        # the latency histogram holds every completed search, in its +Inf bucket and its count
        assert samples[("pyldapd_operation_duration_seconds_count", (("op", "search"),))] == 4
        assert samples[("pyldapd_operation_duration_seconds_bucket", (("le", "+Inf"), ("op", "search")))] == 4
        assert samples[("pyldapd_operation_duration_seconds_sum", (("op", "search"),))] > 0
        assert (
            samples[("pyldapd_connections_accepted_total", ())] == 6
        )  # tests/servers.py's probe, then 5 tools
        assert samples[("pyldapd_connections", ())] == 0
        assert samples[("pyldapd_sent_entries_total", ())] == 3  # one jdoe per search
        assert samples[("pyldapd_mdb_map_size_bytes", (("suffix", SUFFIX),))] == 104857600
        assert samples[("pyldapd_mdb_entries", (("suffix", SUFFIX),))] == BASE_LDIF.count("dn: ")
        assert 0 < samples[("pyldapd_mdb_map_used_bytes", (("suffix", SUFFIX),))] < 104857600
        lag = samples[("pyldapd_replication_lag_seconds", (("sid", "0"), ("suffix", SUFFIX)))]
        assert 0 <= lag < 600  # the adds were just made
        # the same counters as cn=Monitor (whose own search is the one more initiated)
        searches = monitor_counter(server, "cn=Search,cn=Operations,cn=Monitor", "monitorOpInitiated")
        assert searches == 5
        assert (
            monitor_counter(server, "cn=Total,cn=Connections,cn=Monitor", "monitorCounter") == 8
        )  # + 2 reads
        assert scrape(base)[("pyldapd_operations_initiated_total", (("op", "search"),))] == 6  # + the 2 reads
        assert get(f"{base}/healthz") == (200, "ok\n")
        assert get(f"{base}/readyz") == (200, "ready\n")
    finally:
        server.stop()


def test_bad_http_requests(tmp_path):
    server, base = start_with_http(tmp_path, slapd_conf(tmp_path / "db"))
    try:
        assert get(f"{base}/nothing")[0] == 404
        request = urllib.request.Request(f"{base}/metrics", method="POST", data=b"x")
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError("POST accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 405
        host, port = base[len("http://") :].split(":")
        for payload, expected in ((b"garbage\r\n\r\n", b"HTTP/1.1 400"),
                                  (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", b"HTTP/1.1 431")):  # fmt: skip
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(payload)
                assert sock.recv(100).startswith(expected)
        # the server still answers LDAP and HTTP
        assert get(f"{base}/healthz")[0] == 200
        ldap_tool("ldapsearch", "-x", "-H", server.url, "-b", "", "-s", "base", check=True)
    finally:
        server.stop()


def test_readyz_waits_for_the_first_refresh(tmp_path):
    provider_port = free_port()
    provider_url = f"ldap://127.0.0.1:{provider_port}"
    consumer, base = start_with_http(tmp_path / "consumer", consumer_conf(tmp_path / "consumer" / "db", provider_url),
                                     name="consumer")  # fmt: skip
    provider = None
    try:
        status, body = get(f"{base}/readyz")
        assert status == 503 and "syncrepl rid=001: first refresh not done" in body
        assert get(f"{base}/healthz")[0] == 200  # alive, just not ready
        samples = scrape(base)
        assert samples[("pyldapd_syncrepl_refreshed", (("rid", "001"), ("suffix", SUFFIX)))] == 0
        provider = start_pyldapd(tmp_path / "provider", provider_conf(tmp_path / "provider" / "db"), name="provider",
                                 port=provider_port)  # fmt: skip
        ldap_tool("ldapadd", "-H", provider.url, *ADMIN, input=BASE_LDIF, check=True)
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, 30, what="the consumer's first refresh")
        samples = scrape(base)
        assert samples[("pyldapd_syncrepl_refreshed", (("rid", "001"), ("suffix", SUFFIX)))] == 1
        assert samples[("pyldapd_syncrepl_connected", (("rid", "001"), ("suffix", SUFFIX)))] == 1
        assert samples[("pyldapd_syncrepl_conflicts_total", (("rid", "001"), ("suffix", SUFFIX)))] == 0
        assert ("pyldapd_syncrepl_lag_seconds", (("rid", "001"), ("suffix", SUFFIX))) in samples
        # a provider lost after the first refresh: still ready (the data is there), no longer connected
        provider.stop()
        wait_for(lambda: scrape(base)[("pyldapd_syncrepl_connected", (("rid", "001"), ("suffix", SUFFIX)))] == 0,
                 30, what="the consumer to notice")  # fmt: skip
        assert get(f"{base}/readyz")[0] == 200
    finally:
        consumer.stop()
        if provider is not None:
            provider.stop()
