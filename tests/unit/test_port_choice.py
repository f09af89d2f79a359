"""The tests' servers listen on ports from below the kernel's ephemeral range, each pytest-xdist process on its
own slice of them (tests/servers.py), so that neither an outgoing connection's local port nor another test
process can take a chosen port before its server binds it."""

from __future__ import annotations

import socket

from tests.servers import TEST_PORTS, free_port, port_slice


def test_ports_come_from_this_process_slice_below_the_ephemeral_range(monkeypatch) -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
        ephemeral_low = int(ranges.read().split()[0])
    assert TEST_PORTS.stop <= ephemeral_low
    for worker, count in (("gw0", "2"), ("gw1", "2"), ("gw2", "3")):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", count)
        ports = port_slice()
        index, width = int(worker[2:]), len(TEST_PORTS) // int(count)
        assert ports == range(TEST_PORTS.start + index * width, TEST_PORTS.start + (index + 1) * width)
        chosen = {free_port() for _ in range(20)}
        assert all(port in ports for port in chosen)
        for port in chosen:  # free now: a server can bind it
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))


def test_a_held_port_is_not_chosen(monkeypatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "1000")  # a slice of 12 ports
    ports = port_slice()
    held = []
    try:
        for port in list(ports)[:-1]:  # all but one held
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        taken = {sock.getsockname()[1] for sock in held}
        assert len(taken) >= len(ports) // 2
        chosen = free_port()
        assert chosen not in taken
        if len(taken) == len(ports) - 1:  # (unless something else holds some of them)
            assert chosen == ports[-1]
    finally:
        for sock in held:
            sock.close()
