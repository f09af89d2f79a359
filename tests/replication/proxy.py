"""A TCP proxy on loopback that a test can cut and heal: the network partition of a replication link."""

from __future__ import annotations

import socket
import threading

from tests.servers import free_port


class LinkProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cut_off = False
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.listener.settimeout(0.2)
        self.stopped = False
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    def accept_loop(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    def pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or self.cut_off:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                self.close_socket(sock)

    def close_socket(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        """Drop every connection through this link and refuse new ones."""
        self.cut_off = True
        with self.lock:
            sockets = list(self.sockets)
        for sock in sockets:
            self.close_socket(sock)

    def heal(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.stopped = True
        self.cut()
        self.listener.close()
        self.thread.join(2)
