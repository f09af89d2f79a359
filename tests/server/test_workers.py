"""Worker processes (issue 13): `threads N` runs a supervisor and N workers sharing the listeners
(server/supervisor.py), real processes over real sockets."""

from __future__ import annotations

import ldap

from tests.servers import (
    connection_on_worker,
    ldap_tool,
    slapd_conf,
    start_pyldapd,
    wait_workers,
    worker_pids,
)


def start_workers(tmp_path, count: int = 2, *, extra_global: str = "", name: str = "pyldapd"):
    conf = slapd_conf(tmp_path / name / "db", extra_global=f"threads {count}\n{extra_global}")
    server = start_pyldapd(tmp_path / name, conf, name=name)
    try:
        wait_workers(server, count)
    except BaseException:
        server.stop()
        raise
    return server


def test_two_workers_serve_ldap_and_ldapi_and_both_get_connections(tmp_path):
    server = start_workers(tmp_path)
    try:
        assert len(worker_pids(server)) == 2
        for url in (server.url, server.ldapi_url):
            result = ldap_tool("ldapsearch", "-x", "-H", url, "-b", "", "-s", "base", "namingContexts")
            assert "namingContexts: dc=example,dc=com" in result.stdout, result.stderr
        connections = []
        for index in range(2):
            conn, conn_id = connection_on_worker(server, index, 2)
            assert conn_id % 2 == index
            connections.append(conn)
        connections[0].add_s("dc=example,dc=com", [("objectClass", [b"dcObject", b"organization"]),
                                                     ("dc", [b"example"]), ("o", [b"example"])])  # fmt: skip
        found = connections[1].search_s("dc=example,dc=com", ldap.SCOPE_BASE, "(objectClass=*)", ["o"])
        assert found[0][1]["o"] == [b"example"]  # written by worker 0, read by worker 1: one database
        for conn in connections:
            conn.unbind_s()
    finally:
        assert server.stop() == 0
