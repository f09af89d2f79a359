"""One client connection: bytes in, PDUs framed and decoded, operations dispatched, responses written.

Malformed input ends the connection with a Notice of Disconnection (RFC 4511 4.4.1), never the server.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import TYPE_CHECKING

from pyldapd.backends.base import DatabaseFull
from pyldapd.model.filter import filter_to_string
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ber import tlv
from pyldapd.protocol.ldap import Control, ResultCode
from pyldapd.server import limits
from pyldapd.server.directory import SizeLimitExceeded
from pyldapd.server.errors import LDAPError
from pyldapd.server.log import STATS
from pyldapd.server.tls import check_security, setup_session, start_tls

if TYPE_CHECKING:
    from pyldapd.server.app import Server

# Controls the server understands; any other control marked critical fails the operation (RFC 4511 4.1.11).
KNOWN_CONTROLS = {
    ctl.MANAGE_DSA_IT,
    ctl.PAGED_RESULTS,
    ctl.ASSERTION,
    ctl.PRE_READ,
    ctl.POST_READ,
    ctl.SYNC_REQUEST,
}
# Operations whose controls may include Pre/Post-Read and Assertion.
EXTENDED_RESULT_NAME_TAG = 0x8A
EXTENDED_RESULT_VALUE_TAG = 0x8B

MAP_FULL_TEXT = {
    ldap.ADD_RESPONSE: "entry store failed",
    ldap.MODIFY_RESPONSE: "entry update failed",
    ldap.DEL_RESPONSE: "entry delete failed",
    ldap.MODIFY_DN_RESPONSE: "DN index add failed",
}
RESPONSE_TAGS = {
    ldap.BindRequest: ldap.BIND_RESPONSE,
    ldap.SearchRequest: ldap.SEARCH_RESULT_DONE,
    ldap.ModifyRequest: ldap.MODIFY_RESPONSE,
    ldap.AddRequest: ldap.ADD_RESPONSE,
    ldap.DelRequest: ldap.DEL_RESPONSE,
    ldap.ModifyDNRequest: ldap.MODIFY_DN_RESPONSE,
    ldap.CompareRequest: ldap.COMPARE_RESPONSE,
    ldap.ExtendedRequest: ldap.EXTENDED_RESPONSE,
}


class LDAPConnection(asyncio.Protocol):
    def __init__(self, server: Server, listener_url: str, local: bool) -> None:
        self.server = server
        self.directory = server.directory
        self.log = server.log
        self.listener_url = listener_url
        self.local = local
        self.transport: asyncio.Transport | None = None
        self.session = server.new_session(local)
        self.framer = ldap.MessageFramer(server.config.max_pdu)
        self.closing = False
        self.op_count = 0
        self.idle_handle: asyncio.TimerHandle | None = None
        self.starting_tls = False  # StartTLS answered, handshake pending: nothing more is read in the clear
        self.write_paused = False  # set by pause_writing (flow control, server/limits.py)
        self.held_pdus: list[bytes] = []
        self.tls_backlog = bytearray()

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        conn = self.session.conn_id
        if self.local:
            self.session.peer = "PATH=" + self.listener_url
            if sock is not None:
                try:
                    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                    _pid, uid, gid = struct.unpack("3i", creds)
                    self.session.peer_uid, self.session.peer_gid = uid, gid
                except OSError:
                    pass
        else:
            peer = transport.get_extra_info("peername")
            self.session.peer = f"IP={peer[0]}:{peer[1]}" if peer else "IP=?"
        fd = sock.fileno() if sock is not None else -1
        self.log.log(STATS, f"conn={conn} fd={fd} ACCEPT from {self.session.peer} ({self.listener_url})")
        if limits.too_many_connections(self):  # server/limits.py: accepted, told why, closed
            self.disconnect(ResultCode.unavailable, "too many connections")
            return
        self.server.connections.add(self)
        setup_session(self, transport)  # strength factors; ldaps:// is already encrypted here
        self.reset_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.directory.connection_closed(self)
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        self.log.log(
            STATS, f"conn={self.session.conn_id} fd=-1 closed" + (" (connection lost)" if exc else "")
        )

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.starting_tls:  # StartTLS handshake under way (server/tls.py): held until it is complete
            self.tls_backlog += data
            return
        self.reset_idle()
        try:
            pdus = self.framer.feed(data)
        except ldap.ProtocolError as exc:
            self.disconnect(ResultCode.protocolError, f"{exc}")
            return
        self.process_pdus(pdus)

    def process_pdus(self, pdus: list[bytes]) -> None:
        for index, pdu in enumerate(pdus):
            if self.closing or self.starting_tls:
                return
            if self.write_paused:  # the client is not reading its responses: hold the rest (server/limits.py)
                self.held_pdus = pdus[index:] + self.held_pdus
                return
            try:
                message = ldap.decode_message(pdu, limits.filter_depth(self.server.config.max_filter_depth))
            except ldap.BERError as exc:
                self.log.log(STATS, f"conn={self.session.conn_id} op={self.op_count} BER error: {exc}")
                self.disconnect(ResultCode.protocolError, "decoding error")
                return
            try:
                self.dispatch(message)
            except Exception as exc:  # a bug must cost one operation, never the server
                self.log.error(f"conn={self.session.conn_id} internal error: {exc!r}")
                import traceback

                traceback.print_exc()
                tag = RESPONSE_TAGS.get(type(message.op))
                if tag is not None:
                    self.send(
                        ldap.encode_result(message.message_id, tag, ResultCode.other, "", "internal error")
                    )

    def pause_writing(self) -> None:
        """Responses pile up unread: stop reading requests until the client catches up (flow control)."""
        self.write_paused = True
        if self.transport is not None and not self.closing:
            try:
                self.transport.pause_reading()
            except RuntimeError:
                pass

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is None or self.closing:
            return
        held, self.held_pdus = self.held_pdus, []
        if held:
            self.process_pdus(held)
        if not self.write_paused and not self.closing:
            try:
                self.transport.resume_reading()
            except RuntimeError:
                pass

    # -- plumbing ---------------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def reset_idle(self) -> None:
        timeout = self.server.config.idletimeout
        if not timeout:
            return
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        self.idle_handle = asyncio.get_running_loop().call_later(timeout, self.idle_timeout)

    def idle_timeout(self) -> None:
        self.log.log(STATS, f"conn={self.session.conn_id} idle timeout")
        self.close()

    def disconnect(self, code: int, message: str) -> None:
        """Send a Notice of Disconnection and close (RFC 4511 4.4.1)."""
        self.log.log(STATS, f"conn={self.session.conn_id} closing: {message}")
        extra = tlv(EXTENDED_RESULT_NAME_TAG, ctl.NOTICE_OF_DISCONNECTION.encode())
        self.send(ldap.encode_result(0, ldap.EXTENDED_RESPONSE, code, "", message, extra=extra))
        self.close()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def result(self, message_id: int, tag: int, code: int, text: str = "", matched: str = "", *,
               controls: list[Control] | None = None, extra: bytes = b"", referrals=None, nentries=None) -> None:  # fmt: skip
        self.send(ldap.encode_result(message_id, tag, code, matched, text, referrals=referrals, extra=extra,
                                     controls=controls or None))  # fmt: skip
        if self.log.level & STATS:
            op = self.current_op
            if tag == ldap.SEARCH_RESULT_DONE:
                self.log.write(f"conn={self.session.conn_id} op={op} SEARCH RESULT tag={tag} err={code} "
                               f"qtime=0.000000 etime={self.etime()} nentries={nentries} text={text}")  # fmt: skip
            else:
                self.log.write(f"conn={self.session.conn_id} op={op} RESULT tag={tag} err={code} "
                               f"qtime=0.000000 etime={self.etime()} text={text}")  # fmt: skip

    def etime(self) -> str:
        return f"{asyncio.get_running_loop().time() - self.op_started:.6f}"

    # -- dispatch ---------------------------------------------------------------------------------------------

    def dispatch(self, message: ldap.LDAPMessage) -> None:
        op = message.op
        self.current_op = self.op_count
        self.op_count += 1
        self.op_started = asyncio.get_running_loop().time()
        mid = message.message_id
        if isinstance(op, ldap.UnbindRequest):
            self.log.log(STATS, f"conn={self.session.conn_id} op={self.current_op} UNBIND")
            self.close()
            return
        if isinstance(op, ldap.AbandonRequest):
            self.log.log(
                STATS, f"conn={self.session.conn_id} op={self.current_op} ABANDON msg={op.message_id}"
            )
            self.directory.stop_sync_search(self, op.message_id, None)
            return
        tag = RESPONSE_TAGS.get(type(op))
        if tag is None:
            self.disconnect(ResultCode.protocolError, "unknown operation")
            return
        self.log_request(op)
        for control in message.controls:
            if control.critical and control.oid not in KNOWN_CONTROLS:
                self.result(mid, tag, ResultCode.unavailableCriticalExtension, "critical extension is unavailable",
                            nentries=0)  # fmt: skip
                return
        try:
            limits.check_request(self, op)  # outstanding operations, values per request
            check_security(self, op)
            self.handle(mid, op, message.controls, tag)
        except LDAPError as exc:
            self.result(mid, tag, exc.code, exc.message, exc.matched_dn, referrals=exc.referrals, nentries=0)
        except DatabaseFull:  # past maxsize: back-mdb's answer to MDB_MAP_FULL for this operation
            self.result(mid, tag, ResultCode.other, MAP_FULL_TEXT.get(tag, "internal error"), nentries=0)

    def handle(self, mid: int, op, controls: list[Control], tag: int) -> None:
        directory = self.directory
        session = self.session
        if isinstance(op, ldap.SearchRequest):
            sync = ctl.find_control(controls, ctl.SYNC_REQUEST)
            if sync is not None:
                directory.sync_search(self, mid, op, controls, sync)
                return
            try:
                sent, response_controls, text = directory.search(session, mid, op, controls, self.send)
            except SizeLimitExceeded as exc:
                self.result(mid, tag, ResultCode.sizeLimitExceeded, "", nentries=exc.sent)
                return
            self.result(mid, tag, ResultCode.success, text, controls=response_controls, nentries=sent)
        elif isinstance(op, ldap.BindRequest):
            session.bind_dn, session.bind_ndn = "", ""
            dn, ndn = directory.bind(session, op)
            session.bind_dn, session.bind_ndn = dn, ndn
            self.framer.max_pdu_size = self.server.config.max_pdu_auth if ndn else self.server.config.max_pdu
            if self.log.level & STATS:
                mech = "SIMPLE" if op.sasl_mechanism is None else op.sasl_mechanism
                self.log.write(f'conn={session.conn_id} op={self.current_op} BIND dn="{dn}" mech={mech} '
                               f"ssf={session.ssf}")  # fmt: skip
            self.result(mid, tag, ResultCode.success)
        elif isinstance(op, ldap.AddRequest):
            self.result(mid, tag, ResultCode.success, controls=directory.add(session, op, controls))
        elif isinstance(op, ldap.ModifyRequest):
            self.result(mid, tag, ResultCode.success, controls=directory.modify(session, op, controls))
        elif isinstance(op, ldap.DelRequest):
            self.result(mid, tag, ResultCode.success, controls=directory.delete(session, op, controls))
        elif isinstance(op, ldap.ModifyDNRequest):
            self.result(mid, tag, ResultCode.success, controls=directory.modify_dn(session, op, controls))
        elif isinstance(op, ldap.CompareRequest):
            self.result(mid, tag, directory.compare(session, op, controls))
        elif isinstance(op, ldap.ExtendedRequest):
            self.extended(mid, op, tag)

    def extended(self, mid: int, op: ldap.ExtendedRequest, tag: int) -> None:
        if op.name == ctl.WHO_AM_I:
            value = self.directory.who_am_i(self.session)
            extra = tlv(EXTENDED_RESULT_VALUE_TAG, value)
            self.result(mid, tag, ResultCode.success, extra=extra)
        elif op.name == ctl.PASSWORD_MODIFY:
            value = self.directory.password_modify(self.session, op.value)
            extra = tlv(EXTENDED_RESULT_VALUE_TAG, value) if value is not None else b""
            self.result(mid, tag, ResultCode.success, extra=extra)
        elif op.name == ctl.CANCEL:
            try:
                target = ctl.decode_cancel_request(op.value)
            except ldap.ProtocolError:
                self.result(mid, tag, ResultCode.protocolError, "cancel request is malformed")
                return
            if self.directory.stop_sync_search(self, target, ResultCode.cancelled):
                self.result(mid, tag, ResultCode.success)
            else:
                self.result(mid, tag, ResultCode.noSuchOperation)
        elif op.name == ctl.START_TLS:
            start_tls(self, mid, op, tag)  # server/tls.py; unavailable when TLS is not configured
        else:
            self.result(mid, tag, ResultCode.protocolError, "unsupported extended operation")

    def log_request(self, op) -> None:
        if not self.log.level & STATS:
            return
        prefix = f"conn={self.session.conn_id} op={self.current_op}"
        if isinstance(op, ldap.SearchRequest):
            self.log.write(f'{prefix} SRCH base="{op.base}" scope={op.scope} deref={op.deref} '
                           f'filter="{filter_to_string(op.filter)}"')  # fmt: skip
            if op.attributes:
                self.log.write(f"{prefix} SRCH attr={' '.join(op.attributes)}")
        elif isinstance(op, ldap.BindRequest):
            method = 128 if op.sasl_mechanism is None else 163
            self.log.write(f'{prefix} BIND dn="{op.name}" method={method}')
        elif isinstance(op, ldap.AddRequest):
            self.log.write(f'{prefix} ADD dn="{op.dn}"')
        elif isinstance(op, ldap.ModifyRequest):
            self.log.write(f'{prefix} MOD dn="{op.dn}"')
            self.log.write(f"{prefix} MOD attr={' '.join(c.attr for c in op.changes)}")
        elif isinstance(op, ldap.DelRequest):
            self.log.write(f'{prefix} DEL dn="{op.dn}"')
        elif isinstance(op, ldap.ModifyDNRequest):
            self.log.write(f'{prefix} MODRDN dn="{op.dn}"')
        elif isinstance(op, ldap.CompareRequest):
            self.log.write(f'{prefix} CMP dn="{op.dn}" attr="{op.attr}"')
        elif isinstance(op, ldap.ExtendedRequest):
            self.log.write(f"{prefix} EXT oid={op.name}")
