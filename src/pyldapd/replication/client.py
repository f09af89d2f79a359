"""A small asyncio LDAP client over the project's own codec, for the syncrepl consumer (and tools).

ldap://, ldaps:// and ldapi:// URLs; StartTLS; simple and SASL EXTERNAL binds; requests answered as a stream of
decoded messages.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator

from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ldap import Control
from pyldapd.server.listeners import parse_listener_url

MAX_PDU = 1 << 26  # what a provider may send in one message (a large entry)


class ClientError(Exception):
    def __init__(self, message: str, result_code: int | None = None) -> None:
        super().__init__(message)
        self.result_code = result_code


def tls_context(settings: dict[str, str]) -> ssl.SSLContext:
    """A client TLS context from syncrepl's tls_* keywords (tls_reqcert defaults to demand, as in slapd)."""
    context = ssl.create_default_context(cafile=settings.get("tls_cacert") or None,
                                         capath=settings.get("tls_cacertdir") or None)  # fmt: skip
    if settings.get("tls_cert"):
        context.load_cert_chain(settings["tls_cert"], settings.get("tls_key") or None)
    reqcert = settings.get("tls_reqcert", "demand").lower()
    if reqcert in ("never", "allow", "try"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.get("tls_cipher_suite"):
        try:
            context.set_ciphers(settings["tls_cipher_suite"])
        except ssl.SSLError:
            pass
    return context


def set_keepalive(sock: socket.socket | None, idle: int, probes: int, interval: int) -> None:
    """syncrepl's keepalive=idle:probes:interval as TCP keepalive options (0 keeps the system default)."""
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPCNT", probes), ("TCP_KEEPINTVL", interval)):
        if value and hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class LDAPClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = ldap.MessageFramer(MAX_PDU)
        self.pending: list[bytes] = []
        self.next_id = 1

    @classmethod
    async def connect(cls, url: str, *, timeout: float | None = None, tls: dict[str, str] | None = None,
                      starttls: str = "no", keepalive: tuple[int, int, int] = (0, 0, 0)) -> LDAPClient:  # fmt: skip
        target = parse_listener_url(url)
        tls = tls or {}
        if target.scheme == "ldapi":
            opening = asyncio.open_unix_connection(target.path, limit=MAX_PDU)
        elif target.scheme == "ldaps":
            opening = asyncio.open_connection(target.host or "localhost", target.port, ssl=tls_context(tls),
                                              limit=MAX_PDU)  # fmt: skip
        else:
            opening = asyncio.open_connection(target.host or "localhost", target.port, limit=MAX_PDU)
        reader, writer = await asyncio.wait_for(opening, timeout or None)
        if target.scheme != "ldapi" and any(keepalive):
            set_keepalive(writer.get_extra_info("socket"), *keepalive)
        client = cls(reader, writer)
        if starttls in ("yes", "critical") and target.scheme == "ldap":
            response = await client.request(ldap.ExtendedRequest(ctl.START_TLS, None))
            if response.op.result_code == 0:
                await writer.start_tls(tls_context(tls), server_hostname=target.host or None)
            elif starttls == "critical":
                client.close()
                raise ClientError(f"StartTLS refused: {response.op.message}", response.op.result_code)
        return client

    def local_address(self) -> str:
        """This end of the connection as slapd's monitor writes addresses (IP=host:port), for olmSRConnection."""
        name = self.writer.get_extra_info("sockname")
        if isinstance(name, tuple) and len(name) >= 2:
            return f"IP={name[0]}:{name[1]}"
        return f"PATH={name}" if name else ""

    def send(self, op, controls: list[Control] | None = None) -> int:
        message_id = self.next_id
        self.next_id += 1
        self.writer.write(ldap.encode_message(ldap.LDAPMessage(message_id, op, controls or [])))
        return message_id

    async def receive(self, timeout: float | None = None) -> ldap.LDAPMessage:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout or None)
            if not data:
                raise ClientError("connection closed by the server")
            self.pending.extend(self.framer.feed(data))
        return ldap.decode_message(self.pending.pop(0))

    async def request(self, op, controls: list[Control] | None = None, timeout: float | None = None):
        """Send one request and return its single response message."""
        message_id = self.send(op, controls)
        await self.writer.drain()
        while True:
            message = await self.receive(timeout)
            if message.message_id == message_id:
                return message

    async def bind(self, method: str, dn: str = "", password: str = "", mechanism: str = "",
                   authzid: str = "", timeout: float | None = None) -> None:  # fmt: skip
        if method == "none":
            return
        if method == "sasl":
            if mechanism.upper() != "EXTERNAL":
                raise ClientError(f"SASL mechanism {mechanism!r} is not supported by pyldapd's consumer")
            op = ldap.BindRequest(3, "", None, "EXTERNAL", authzid.encode() if authzid else b"")
        else:
            op = ldap.BindRequest(3, dn, password.encode(), None, None)
        response = await self.request(op, timeout=timeout)
        if response.op.result_code != 0:
            raise ClientError(
                f"bind failed: {response.op.result_code} {response.op.message}", response.op.result_code
            )

    async def search(self, request: ldap.SearchRequest, controls: list[Control] | None = None,
                     timeout: float | None = None) -> AsyncIterator[ldap.LDAPMessage]:  # fmt: skip
        message_id = self.send(request, controls)
        await self.writer.drain()
        while True:
            message = await self.receive(timeout)
            if message.message_id != message_id:
                continue
            yield message
            if isinstance(message.op, ldap.SearchResultDone):
                return

    def close(self) -> None:
        try:
            self.writer.write(ldap.encode_message(ldap.LDAPMessage(self.next_id, ldap.UnbindRequest(), [])))
        except Exception:
            pass
        self.writer.close()
