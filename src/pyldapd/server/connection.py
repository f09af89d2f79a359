"""One client connection: bytes in, PDUs framed and decoded, operations dispatched, responses written.

Malformed input ends the connection with a Notice of Disconnection (RFC 4511 4.4.1), never the server.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyldapd.backends import writer
from pyldapd.backends.base import DatabaseFull
from pyldapd.model.filter import filter_to_string
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ber import tlv
from pyldapd.protocol.ldap import Control, ResultCode
from pyldapd.server import handoff, limits
from pyldapd.server.directory import PasswordCheck, Session, SizeLimitExceeded
from pyldapd.server.errors import LDAPError
from pyldapd.server.log import STATS
from pyldapd.server.restrictions import check_restrictions
from pyldapd.server.stats import RESPONSE_TAGS as STATS_RESPONSE_NAMES
from pyldapd.server.steps import COLLECTOR, Offload, Steps
from pyldapd.server.tls import check_security, setup_session, start_tls

if TYPE_CHECKING:
    from pyldapd.server.app import Server

# The requests each control the server understands applies to, as slapd's control table (controls.c) says:
# a critical control on any other request fails with unavailableCriticalExtension, a non-critical one is not
# looked at; a critical control not in this table fails as "not recognized" (RFC 4511 4.1.11).
_INTERROGATIONS = frozenset({ldap.SearchRequest, ldap.CompareRequest})
_UPDATES = frozenset({ldap.AddRequest, ldap.DelRequest, ldap.ModifyRequest, ldap.ModifyDNRequest})
_ACCESSES = _INTERROGATIONS | _UPDATES


@dataclass(frozen=True, slots=True)
class ControlScope:
    requests: frozenset[type]
    extended: frozenset[str] = frozenset()  # the extended operations it goes with


CONTROL_SCOPES: dict[str, ControlScope] = {
    ctl.ASSERTION: ControlScope(_ACCESSES),
    ctl.PRE_READ: ControlScope(frozenset({ldap.DelRequest, ldap.ModifyRequest, ldap.ModifyDNRequest})),
    ctl.POST_READ: ControlScope(frozenset({ldap.AddRequest, ldap.ModifyRequest, ldap.ModifyDNRequest})),
    ctl.VALUES_RETURN_FILTER: ControlScope(frozenset({ldap.SearchRequest})),
    ctl.PAGED_RESULTS: ControlScope(frozenset({ldap.SearchRequest})),
    ctl.DONT_USE_COPY: ControlScope(_INTERROGATIONS),
    ctl.RELAX: ControlScope(_UPDATES),
    ctl.MANAGE_DSA_IT: ControlScope(
        _ACCESSES
    ),  # (and the DDS Refresh operation, which pyldapd does not offer)
    ctl.PROXIED_AUTHZ: ControlScope(_ACCESSES, frozenset({ctl.PASSWORD_MODIFY, ctl.WHO_AM_I})),
    ctl.SYNC_REQUEST: ControlScope(frozenset({ldap.SearchRequest})),  # registered by syncprov
    ctl.SUBENTRIES: ControlScope(frozenset({ldap.SearchRequest})),
}
# A search that runs longer than this gives the loop back to the other connections, and goes on at its next turn
# (server/steps.py): the time another client may wait for one running search (measured in bench/bench_stall.py).
TIME_SLICE = 0.004
# A request this large takes milliseconds to decode (100,000 filter terms: 1.8 MB, 150 ms): a worker thread does it
LARGE_PDU = 65536
# Requests received while a search runs on the connection wait, in order; past this many, reading stops until
# the search ends (an Abandon among the first ones is acted on at once)
HELD_MAX = 64
# Responses made while the connection handles what it received (or runs a search's time slice) are gathered and
# written at its end in one transport write (one send() syscall, one wake-up of the client) rather than one each;
# past this many octets they are written at once, so flow control (pause_writing) still acts on time.
FLUSH_AT = 16384
WRITE_METHODS = {  # request -> the Directory method a writer thread runs (Directory.write)
    ldap.AddRequest: "add",
    ldap.ModifyRequest: "modify",
    ldap.DelRequest: "delete",
    ldap.ModifyDNRequest: "modify_dn",
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


def check_subentries(controls: list[Control]) -> None:
    """The Subentries control as slapd's parseSubentries reads it: once, its value a BER BOOLEAN (3 octets)."""
    seen = False
    for control in controls:  # in order: the first one's value is read before the second is refused
        if control.oid != ctl.SUBENTRIES:
            continue
        if seen:
            raise LDAPError(ResultCode.protocolError, "subentries control specified multiple times")
        seen = True
        value = control.value
        if value is None or len(value) != 3 or value[0] != 0x01 or value[1] != 0x01:
            raise LDAPError(ResultCode.protocolError, "subentries control value encoding is bogus")


def valueless_control(controls: list[Control], oid: str, name: str) -> Control | None:
    """The one control of a kind that takes no value, as slapd's parsers check it (protocolError otherwise)."""
    found = [c for c in controls if c.oid == oid]
    if not found:
        return None
    if len(found) > 1:
        raise LDAPError(ResultCode.protocolError, f"{name} control specified multiple times")
    if found[0].value is not None:
        raise LDAPError(ResultCode.protocolError, f"{name} control value not absent")
    return found[0]


class LDAPConnection(asyncio.Protocol):
    def __init__(self, server: Server, listener_url: str, local: bool, *, session: Session | None = None,
                 moved: dict | None = None) -> None:  # fmt: skip
        """`session` and `moved`: a connection another worker handed over (server/handoff.py), its state."""
        self.server = server
        self.directory = server.directory
        self.log = server.log
        self.listener_url = listener_url
        self.local = local
        self.transport: asyncio.Transport | None = None
        # the loop, kept: asyncio.get_running_loop() makes a getpid() system call each time (its fork check),
        # one more syscall per request beside the read and the write
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        self.session = session if session is not None else server.new_session(local)
        self.framer = ldap.MessageFramer(server.config.max_pdu)
        self.moved_from: int | None = None  # the worker that handed this connection over
        self.moved_away = False  # handed over to worker 0: its socket is not this worker's any more
        self.closing = False
        self.op_count = 0
        self.idle_handle: asyncio.TimerHandle | None = None
        self.pdu_handle: asyncio.TimerHandle | None = None  # a request began: it must complete in time
        self.write_handle: asyncio.TimerHandle | None = None  # writes blocked: writetimeout
        self.last_active = 0.0  # loop time of the last complete request (eviction order, server/limits.py)
        self.busy = False  # an operation waits on a worker thread (password check): requests are held
        self.starting_tls = False  # StartTLS answered, handshake pending: nothing more is read in the clear
        self.write_paused = False  # set by pause_writing (flow control, server/limits.py)
        self.held_pdus: list[bytes] = []
        self.job: SearchJob | None = None  # a search running in steps (server/steps.py): requests are held
        self.large_holds = 0  # large requests of this connection alive (steps.Collector)
        self.tls_backlog = bytearray()
        self.stats = server.stats  # server/stats.py: counters for cn=Monitor and /metrics
        self.opened_at = self.active_at = time.time()  # cn=Monitor's monitorConnectionStart/ActivityTime
        self.ops_completed = 0
        self.reads = 0  # reads from the client (cn=Monitor's monitorConnectionRead)
        self.write_waits = 0  # times its responses waited for it to read (monitorConnectionWrite)
        # the responses gathered for one write (FLUSH_AT); None: each is written at once
        self.out: list[bytes] | None = None
        self.out_size = 0
        if moved is not None:
            self.moved_from = moved["sender"]
            self.framer.max_pdu_size = moved["max_pdu"]
            self.opened_at = moved["opened_at"]
            self.op_count, self.ops_completed = moved["op_count"], moved["ops_completed"]
            self.reads, self.write_waits = moved["reads"], moved["write_waits"]

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.moved_from is not None:
            self.moved_in()
            return
        self.stats.connections_total += 1
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
        self.last_active = self.loop.time()
        if limits.at_capacity(self.server):  # descriptors all in use: an idle connection makes room
            victim = limits.eviction_victim(self.server)
            if victim is None:  # nothing to evict: accepted, told why, closed
                self.disconnect(ResultCode.unavailable, "too many connections")
                return
            self.server.connections.pop(victim, None)
            self.log.log(STATS, f"conn={victim.session.conn_id} evicted for conn={conn}")
            victim.disconnect(ResultCode.unavailable, "too many connections")
        self.server.connections[self] = None
        self.stats.current_connections = len(self.server.connections)  # summed over the workers (stats.py)
        setup_session(self, transport)  # strength factors; ldaps:// is already encrypted here
        self.reset_idle()

    def moved_in(self) -> None:
        """Taken over from another worker (server/handoff.py): counted and logged as there, not accepted again."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        fd = sock.fileno() if sock is not None else -1
        self.log.log(STATS, f"conn={self.session.conn_id} fd={fd} moved in from worker {self.moved_from}")
        self.last_active = self.loop.time()
        self.server.connections[self] = None
        self.stats.current_connections = len(self.server.connections)
        self.reset_idle()

    def resume(self, pending: bytes) -> None:
        """A connection moved in: the requests it sent from its first write on, as if just read."""
        if not pending:
            return
        try:
            pdus = self.framer.feed(pending)
        except ldap.ProtocolError as exc:
            self.disconnect(ResultCode.protocolError, f"{exc}")
            return
        if self.framer.buffered:
            self.watch_partial_pdu(bool(pdus))
        self.out = []
        try:
            self.process_pdus(pdus)
        finally:
            self.flush(None)

    def move_to_writer(self, pending: list[bytes]) -> bool:
        """Hand this connection to worker 0 from its write request on (server/handoff.py); False when it cannot
        move now and stays."""
        sender = self.server.handoff_sender
        if sender is None or not handoff.movable(self):
            return False
        if self.out:  # answers to what came before the write go out first, from here
            self.flush([])
        if self.transport is None or self.transport.get_write_buffer_size():
            return False
        if not sender.send(self, b"".join(pending) + self.framer.peek()):
            return False
        self.framer.clear()
        self.moved_away = True
        self.closing = True
        for handle in (self.idle_handle, self.pdu_handle, self.write_handle):
            if handle is not None:
                handle.cancel()
        self.idle_handle = self.pdu_handle = self.write_handle = None
        # closes this worker's descriptor only: the socket lives on in the message to worker 0, then there
        self.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.pop(self, None)
        self.stats.current_connections = len(self.server.connections)
        self.stop_job()
        self.release_large()
        self.directory.connection_closed(self)
        if self.session.paged is not None:  # an open paged search: its ids are freed with the session
            self.session.paged = None
            limits.give_back_memory(self.server)
        for handle in (self.idle_handle, self.pdu_handle, self.write_handle):
            if handle is not None:
                handle.cancel()
        if self.moved_away:
            self.log.log(STATS, f"conn={self.session.conn_id} moved to worker 0 (it writes)")
            return
        self.log.log(
            STATS, f"conn={self.session.conn_id} fd=-1 closed" + (" (connection lost)" if exc else "")
        )

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.server.shutting_down:
            # a connection the shutdown did not close (made after it began): closed unanswered, nothing served on
            # databases being closed, as by a slapd whose listener is gone; the client's retry finds the next one
            self.close()
            return
        if self.starting_tls:  # StartTLS handshake under way (server/tls.py): held until it is complete
            self.tls_backlog += data
            return
        self.reads += 1
        if self.server.config.idletimeout:  # (most servers have none: no call per read for nothing)
            self.reset_idle()
        self.stats.received(data)
        self.active_at = time.time()
        try:
            pdus = self.framer.feed(data)
        except ldap.ProtocolError as exc:
            self.disconnect(ResultCode.protocolError, f"{exc}")
            return
        if pdus:
            self.last_active = self.loop.time()
        if self.pdu_handle is not None or self.framer.buffered:  # (else there is nothing to watch or cancel)
            self.watch_partial_pdu(bool(pdus))
        if self.out is not None:  # within a gathering already (a test's direct call)
            self.process_pdus(pdus)
            return
        self.out = []
        try:
            self.process_pdus(pdus)
        finally:
            self.flush(None)
        if not self.busy and writer.writing():  # (busy: it waits for the writer, its own write: no need)
            time.sleep(0)  # the GIL to a writer thread waiting for it (backends/writer.py `writing`)

    def watch_partial_pdu(self, completed: bool) -> None:
        """A request that began arriving must be complete within limits.pdu_timeout: more octets do not extend
        the time (a client sending a byte a second keeps no descriptor), a completed request does."""
        if not self.framer.buffered:
            if self.pdu_handle is not None:
                self.pdu_handle.cancel()
                self.pdu_handle = None
            return
        if self.pdu_handle is None or completed:
            if self.pdu_handle is not None:
                self.pdu_handle.cancel()
            timeout = limits.pdu_timeout(self.server.config.idletimeout)
            self.pdu_handle = self.loop.call_later(timeout, self.pdu_timed_out, timeout)

    def pdu_timed_out(self, timeout: int) -> None:
        self.pdu_handle = None
        if self.closing or not self.framer.buffered:  # e.g. StartTLS dropped the half-framed request
            return
        if self.write_paused or self.busy or self.starting_tls or self.job is not None:  # the server stopped
            # reading, not the client
            self.pdu_handle = self.loop.call_later(timeout, self.pdu_timed_out, timeout)
            return
        self.log.log(STATS, f"conn={self.session.conn_id} closing: request incomplete after {timeout}s")
        self.close()

    def process_pdus(self, pdus: list[bytes]) -> None:
        for index, pdu in enumerate(pdus):
            if self.closing or self.starting_tls:
                return
            if self.write_paused or self.busy or self.job is not None:  # responses unread (server/limits.py),
                # a password check or a decode on a worker thread, a search running in steps: held, in order
                self.hold(pdus[index:])
                return
            if len(pdu) >= LARGE_PDU:
                self.decode_in_thread(pdu, pdus[index + 1 :])
                return
            try:
                message = ldap.decode_message(pdu, limits.filter_depth(self.server.config.max_filter_depth))
            except ldap.BERError as exc:
                self.decode_failed(exc)
                return
            # on worker k > 0 a write moves the connection to worker 0, where every worker's writes then group
            # (server/handoff.py); a Password Modify (not among them) stays: rare, and it may check slowly first
            if type(message.op) in WRITE_METHODS and self.server.handoff_sender is not None:
                if self.move_to_writer(pdus[index:]):
                    return
            self.run_message(message)

    def decode_failed(self, exc: ldap.BERError) -> None:
        self.log.log(STATS, f"conn={self.session.conn_id} op={self.op_count} BER error: {exc}")
        deep = isinstance(exc, ldap.FilterDepthError)  # slapd names this one
        self.disconnect(ResultCode.protocolError, str(exc) if deep else "decoding error")

    def run_message(self, message: ldap.LDAPMessage) -> None:
        try:
            self.dispatch(message)
        except Exception as exc:  # a bug must cost one operation, never the server
            self.log.error(f"conn={self.session.conn_id} internal error: {exc!r}")
            import traceback

            traceback.print_exc()
            tag = RESPONSE_TAGS.get(type(message.op))
            if tag is not None:
                self.send(ldap.encode_result(message.message_id, tag, ResultCode.other, "", "internal error"))

    def hold(self, pdus: list[bytes]) -> None:
        """Requests that wait for the connection's current work. While a search runs in steps, an Abandon is
        acted on at once (it may name that search), and reading stops once HELD_MAX requests wait."""
        if self.job is not None and not (self.write_paused or self.busy):
            kept = []
            for pdu in pdus:
                if len(pdu) <= 16 and self.job is not None:  # an Abandon is 8 to 16 octets
                    try:
                        message = ldap.decode_message(pdu)
                    except ldap.BERError:
                        message = None
                    if message is not None and isinstance(message.op, ldap.AbandonRequest):
                        self.run_message(message)
                        continue
                kept.append(pdu)
            self.held_pdus = kept + self.held_pdus
            if self.job is None:  # the Abandon ended the search: what waited runs now
                self.go_on()
                return
        else:
            self.held_pdus = pdus + self.held_pdus
        if len(self.held_pdus) >= HELD_MAX and self.transport is not None:
            try:
                self.transport.pause_reading()
            except RuntimeError:
                pass

    def decode_in_thread(self, pdu: bytes, rest: list[bytes]) -> None:
        """A large request (a filter of tens of thousands of terms) is decoded on a worker thread; the requests
        after it wait, in order."""
        self.held_pdus = rest + self.held_pdus
        self.hold_reading()
        depth = limits.filter_depth(self.server.config.max_filter_depth)
        self.hold_large()
        future = asyncio.get_running_loop().run_in_executor(
            self.server.password_pool, COLLECTOR.build(lambda: ldap.decode_message(pdu, depth))
        )
        future.add_done_callback(self.decoded)

    def decoded(self, done: asyncio.Future) -> None:
        self.busy = False
        if self.closing or self.transport is None or self.transport.is_closing():
            return
        try:
            message = done.result()
        except ldap.BERError as exc:
            self.release_large()
            self.decode_failed(exc)
            return
        self.run_message(message)
        del message
        if self.job is None:  # answered (else the search's end lets go of it)
            self.release_large()
        self.go_on()

    def hold_large(self) -> None:
        self.large_holds += 1
        COLLECTOR.hold()

    def release_large(self) -> None:
        holds, self.large_holds = self.large_holds, 0
        COLLECTOR.release(holds)

    def go_on(self) -> None:
        """The connection's current work is over: the requests held meanwhile run, then reading resumes (while a
        search runs, too: an Abandon may come)."""
        if self.closing or self.transport is None:
            return
        if not (self.busy or self.write_paused or self.job is not None):
            held, self.held_pdus = self.held_pdus, []
            if held:
                self.process_pdus(held)
        if self.closing or self.busy or self.write_paused:
            return
        if self.job is not None and len(self.held_pdus) >= HELD_MAX:
            return
        try:
            self.transport.resume_reading()
        except RuntimeError:
            pass

    # -- searches in steps (server/steps.py) --------------------------------------------------------------------

    def run_job(self, mid: int, tag: int, steps: Steps, finish: Callable[[Any], None] | None) -> None:
        """Run a search's steps. The first runs here and now, within the request's turn: most searches end in it,
        and are answered without a job. A longer one goes on as a job: it gives the loop back every TIME_SLICE,
        waits while its client does not read (pause_writing), and has its Offloads done on a worker thread."""
        if self.out is None or self.write_paused or self.closing:  # outside a turn of reading (a callback)
            self.job = SearchJob(mid, tag, steps, finish, self.current_op, self.op_started)
            self.step_job(self.job)
            return
        try:
            item = steps.send(None)
        except StopIteration as stop:
            self.conclude(mid, tag, finish, stop.value, None)
            return
        except Exception as exc:
            self.conclude(mid, tag, finish, None, exc)
            return
        job = self.job = SearchJob(mid, tag, steps, finish, self.current_op, self.op_started)
        if item is not None:
            self.offload(job, item)
        else:
            self.step_job(job)

    def step_job(self, job: SearchJob, value: Any = None, error: BaseException | None = None) -> None:
        if self.job is not job or job.waiting == "running":
            return  # abandoned, or the connection is gone; or called back while it runs
        if self.closing:
            self.stop_job()
            return
        if self.write_paused:
            job.waiting = "writable"  # resume_writing steps it again
            return
        job.waiting = "running"
        if self.out is None:  # its entries go out in one write per slice (or per FLUSH_AT octets)
            self.out = []
            try:
                self.run_slice(job, value, error)
            finally:
                self.flush(None)
        else:
            self.run_slice(job, value, error)

    def run_slice(self, job: SearchJob, value: Any, error: BaseException | None) -> None:
        clock = time.monotonic
        end = clock() + TIME_SLICE
        steps = job.steps
        try:
            while True:
                item = steps.throw(error) if error is not None else steps.send(value)
                value = error = None
                if item is not None:
                    self.offload(job, item)
                    return
                if self.closing or self.job is not job:
                    job.waiting = ""
                    steps.close()
                    return
                if self.write_paused:
                    job.waiting = "writable"
                    job.resumed = True
                    return
                if clock() >= end:
                    job.waiting = "turn"
                    job.resumed = True
                    self.loop.call_soon(self.step_job, job)
                    return
        except StopIteration as stop:
            job.waiting = ""
            self.job = None
            self.answer(job, stop.value, None)
        except Exception as exc:
            job.waiting = ""
            self.job = None
            self.answer(job, None, exc)
        if self.large_holds:
            job.steps = None  # type: ignore[assignment]  # its large objects go first
            self.release_large()
        if job.resumed:  # it ran on after its request's turn: what waited for it runs now
            self.go_on()

    def offload(self, job: SearchJob, item: Offload) -> None:
        """The search's work that cannot be cut, on a worker thread; the search waits for it."""
        job.waiting = "thread"
        job.resumed = True
        self.hold_large()
        future = self.loop.run_in_executor(self.server.password_pool, COLLECTOR.build(item.work))
        future.add_done_callback(lambda done: self.offload_done(job, done))

    def answer(self, job: SearchJob, outcome: Any, error: Exception | None) -> None:
        self.current_op, self.op_started = job.op, job.started  # an Abandon may have come meanwhile
        self.conclude(job.mid, job.tag, job.finish, outcome, error)

    def conclude(self, mid: int, tag: int, finish: Callable[[Any], None] | None, outcome: Any,
                 error: Exception | None) -> None:  # fmt: skip
        """The search's outcome or error, as dispatch answers any operation. `finish` None: the outcome is a
        search's (entries sent, response controls, diagnostic), answered with success."""
        try:
            if error is not None:
                raise error
            if finish is None:
                sent, response_controls, text = outcome
                self.result(mid, tag, ResultCode.success, text, controls=response_controls, nentries=sent)
            else:
                finish(outcome)
        except SizeLimitExceeded as exc:
            self.result(mid, tag, ResultCode.sizeLimitExceeded, "", nentries=exc.sent)
        except LDAPError as exc:
            self.result(mid, tag, exc.code, exc.message, exc.matched_dn, referrals=exc.referrals, nentries=0)
        except DatabaseFull:
            self.result(mid, tag, ResultCode.other, MAP_FULL_TEXT.get(tag, "internal error"), nentries=0)
        except Exception as exc:  # a bug must cost one operation, never the server
            self.log.error(f"conn={self.session.conn_id} internal error: {exc!r}")
            import traceback

            traceback.print_exception(exc)
            self.result(mid, tag, ResultCode.other, "internal error", nentries=0)

    def offload_done(self, job: SearchJob, done: asyncio.Future) -> None:
        if self.job is not job:  # abandoned while the thread worked
            if self.job is None:
                self.release_large()
            return
        try:
            value = done.result()
        except Exception as exc:
            self.step_job(job, error=exc)
            return
        self.step_job(job, value)

    def stop_job(self, message_id: int | None = None) -> bool:
        """End the running search (Abandon names it, or the connection closes); its read snapshot is freed."""
        job = self.job
        if job is None or (message_id is not None and job.mid != message_id):
            return False
        self.job = None
        if job.waiting != "thread":  # a worker thread still uses it: the generator is closed when collected
            job.steps.close()
            self.release_large()
        return True

    def pause_writing(self) -> None:
        """Responses pile up unread: stop reading requests until the client catches up (flow control)."""
        self.write_paused = True
        self.write_waits += 1
        timeout = self.server.config.writetimeout
        if timeout and self.write_handle is None:
            self.write_handle = self.loop.call_later(timeout, self.write_timed_out)
        if self.transport is not None and not self.closing:
            try:
                self.transport.pause_reading()
            except RuntimeError:
                pass

    def write_timed_out(self) -> None:
        """slapd's writetimeout: a write blocked this long ends the connection (what it holds is dropped)."""
        self.write_handle = None
        self.log.log(STATS, f"conn={self.session.conn_id} closing: write timeout")
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.write_handle is not None:
            self.write_handle.cancel()
            self.write_handle = None
        if self.transport is None or self.closing or self.busy:
            return
        job = self.job
        if job is not None and job.waiting == "writable":  # the client reads again: the search goes on
            self.step_job(job)
        self.go_on()

    # -- plumbing ---------------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        out = self.out
        if out is not None:
            if self.transport is None or self.transport.is_closing():
                return  # as below: nothing written, nothing counted
            # counted as it is made, not at its write: a search of cn=Monitor's statistics shows what it sent so far
            self.stats.sent(data)
            out.append(data)
            self.out_size += len(data)
            if self.out_size >= FLUSH_AT:
                self.flush([])
            return
        if self.transport is not None and not self.transport.is_closing():
            self.stats.sent(data)
            self.transport.write(data)

    def flush(self, then: list[bytes] | None = None) -> None:
        """Write the responses gathered so far in one write; `then` is what gathers next ([]: go on gathering,
        None: write at once from now on)."""
        out, self.out, self.out_size = self.out, then, 0
        if not out:
            return
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))

    def reset_idle(self) -> None:
        timeout = self.server.config.idletimeout
        if not timeout:
            return
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        self.idle_handle = self.loop.call_later(timeout, self.idle_timeout)

    def idle_timeout(self) -> None:
        # slapd leaves a connection alone while it has operations under way (persistent searches included)
        busy = self.busy or self.write_paused or self.job is not None or limits.outstanding(self)
        if busy and not self.closing:
            self.reset_idle()
            return
        self.log.log(STATS, f"conn={self.session.conn_id} idle timeout")
        self.close()

    def disconnect(self, code: int, message: str) -> None:
        """Send a Notice of Disconnection and close (RFC 4511 4.4.1)."""
        self.log.log(STATS, f"conn={self.session.conn_id} closing: {message}")
        extra = tlv(EXTENDED_RESULT_NAME_TAG, ctl.NOTICE_OF_DISCONNECTION.encode())
        self.send(ldap.encode_result(0, ldap.EXTENDED_RESPONSE, code, "", message, extra=extra))
        self.close()

    def close(self) -> None:
        if self.out:  # what was answered before the close goes first (a Notice of Disconnection, a result)
            self.flush([])
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def result(self, message_id: int, tag: int, code: int, text: str = "", matched: str = "", *,
               controls: list[Control] | None = None, extra: bytes = b"", referrals=None, nentries=None) -> None:  # fmt: skip
        # counted before it is sent: a client that asks cn=Monitor next, maybe of another worker, sees it
        self.stats.complete(STATS_RESPONSE_NAMES.get(tag, "Extended"), code, self.elapsed())
        self.send(ldap.encode_result(message_id, tag, code, matched, text, referrals=referrals, extra=extra,
                                     controls=controls or None))  # fmt: skip
        self.ops_completed += 1
        if self.log.level & STATS:
            op = self.current_op
            if tag == ldap.SEARCH_RESULT_DONE:
                self.log.write(f"conn={self.session.conn_id} op={op} SEARCH RESULT tag={tag} err={code} "
                               f"qtime=0.000000 etime={self.etime()} nentries={nentries} text={text}")  # fmt: skip
            else:
                self.log.write(f"conn={self.session.conn_id} op={op} RESULT tag={tag} err={code} "
                               f"qtime=0.000000 etime={self.etime()} text={text}")  # fmt: skip

    def etime(self) -> str:
        return f"{self.elapsed():.6f}"

    def elapsed(self) -> float:
        return time.monotonic() - self.op_started

    # -- dispatch ---------------------------------------------------------------------------------------------

    def dispatch(self, message: ldap.LDAPMessage) -> None:
        op = message.op
        self.current_op = self.op_count
        self.op_count += 1
        self.op_started = time.monotonic()  # not loop.time(): uvloop's is cached per loop iteration
        mid = message.message_id
        self.stats.initiate(getattr(op, "TAG", 0))
        if isinstance(op, ldap.UnbindRequest):
            self.log.log(STATS, f"conn={self.session.conn_id} op={self.current_op} UNBIND")
            self.stats.finish("Unbind")
            self.close()
            return
        if isinstance(op, ldap.AbandonRequest):
            self.log.log(
                STATS, f"conn={self.session.conn_id} op={self.current_op} ABANDON msg={op.message_id}"
            )
            if not self.stop_job(op.message_id):
                self.directory.stop_sync_search(self, op.message_id, None)
            self.stats.finish("Abandon")
            self.ops_completed += 1
            return
        configdb = self.directory.configdb
        if configdb is not None and configdb.share is not None:
            # with several workers: a cn=config change another worker (or worker 0's consumer) made is in effect
            # here before this operation, not only once the bus says so (one pread of the log's header)
            configdb.catch_up()
        tag = RESPONSE_TAGS.get(type(op))
        if tag is None:
            self.disconnect(ResultCode.protocolError, "unknown operation")
            return
        if self.log.level & STATS:
            self.log_request(op)
        controls = message.controls
        if controls:  # (most requests carry none: nothing to look for)
            try:
                controls = self.applicable_controls(op, controls)
            except LDAPError as exc:
                self.result(mid, tag, exc.code, exc.message, nentries=0)
                return
            if not self.check_values_return_filter(mid, op, tag, controls):
                return
        try:
            limits.check_request(self, op)  # outstanding operations
            check_security(self, op)
            session = self.request_session(op, controls) if controls else self.session
            self.handle(mid, op, controls, tag, session)
        except LDAPError as exc:
            self.result(mid, tag, exc.code, exc.message, exc.matched_dn, referrals=exc.referrals, nentries=0)
        except DatabaseFull:  # past maxsize: back-mdb's answer to MDB_MAP_FULL for this operation
            self.result(mid, tag, ResultCode.other, MAP_FULL_TEXT.get(tag, "internal error"), nentries=0)

    def applicable_controls(self, op, controls: list[Control]) -> list[Control]:
        """The controls this request takes, in slapd's order of checks (slap_parse_ctrl): an unknown critical
        control is not recognized, a known critical one the request does not take is unavailable, a
        non-critical one either way is left out, unread."""
        kept = []
        for control in controls:
            scope = CONTROL_SCOPES.get(control.oid)
            if scope is None or (control.oid == ctl.SYNC_REQUEST and not self.directory.offers_sync()):
                if control.critical:
                    raise LDAPError(
                        ResultCode.unavailableCriticalExtension, "critical extension is not recognized"
                    )
                continue
            if isinstance(op, ldap.ExtendedRequest):
                applies = op.name in scope.extended
            else:
                applies = type(op) in scope.requests
            if applies:
                kept.append(control)
            elif control.critical:
                raise LDAPError(ResultCode.unavailableCriticalExtension, "critical extension is unavailable")
        return kept

    def check_values_return_filter(self, mid: int, op, tag: int, controls: list[Control]) -> bool:
        """The matchedValues control as slapd's get_ctrls parses it: search only (critical elsewhere: 12), once,
        with a value; a value that does not decode ends the connection. False when the operation is answered."""
        found = [c for c in controls if c.oid == ctl.VALUES_RETURN_FILTER]
        if not found:
            return True
        if len(found) > 1:
            self.result(mid, tag, ResultCode.protocolError, "valuesReturnFilter control specified multiple times",
                        nentries=0)  # fmt: skip
            return False
        try:
            ctl.decode_values_return_filter(found[0].value)
        except ctl.ControlValueError as exc:
            self.result(mid, tag, ResultCode.protocolError, str(exc), nentries=0)
            return False
        except ldap.ProtocolError:
            self.disconnect(ResultCode.protocolError, "error decoding vrFilter")
            return False
        return True

    def request_session(self, op, controls: list[Control]):
        """The identity this operation runs as (Proxied Authorization), after slapd's control checks."""
        if controls:  # slapd's parseManageDSAit, parseRelax, parseDontUseCopy
            valueless_control(controls, ctl.MANAGE_DSA_IT, "manageDSAit")
            valueless_control(controls, ctl.RELAX, "relax")
            copy = valueless_control(controls, ctl.DONT_USE_COPY, "dontUseCopy")
            check_subentries(controls)
            if (
                copy is not None
                and not copy.critical
                and "dontusecopy_non_critical" in self.server.config.disallows
            ):
                raise LDAPError(ResultCode.protocolError, "dontUseCopy criticality of FALSE not allowed")
        if isinstance(op, ldap.BindRequest):
            return self.session
        if isinstance(op, ldap.ExtendedRequest) and op.name not in (ctl.WHO_AM_I, ctl.PASSWORD_MODIFY):
            return self.session
        return self.directory.proxied_session(self.session, controls)

    def handle(self, mid: int, op, controls: list[Control], tag: int, session=None) -> None:
        directory = self.directory
        session = session if session is not None else self.session
        if isinstance(op, ldap.SearchRequest):
            sync = ctl.find_control(controls, ctl.SYNC_REQUEST) if controls else None
            if sync is not None:
                self.run_job(mid, tag, directory.sync_search_steps(self, mid, op, controls, sync), ignore)
                return

            if (
                self.server.bus.count > 1
                and directory.monitor.under(op.base)
                and directory.monitor.needs_peers(op.base, op.scope)
            ):
                # cn=Monitor with worker processes: the other workers' connections and consumers first
                def search(_peers: Any) -> None:
                    self.run_job(
                        mid, tag, directory.search_steps(session, mid, op, controls, self.send), None
                    )

                self.in_writer(mid, tag, directory.monitor.gather_peers(self.server), search)
                return
            self.run_job(mid, tag, directory.search_steps(session, mid, op, controls, self.send), None)
        elif isinstance(op, ldap.BindRequest):
            session.bind_dn, session.bind_ndn = "", ""
            outcome = directory.prepare_bind(session, op)
            if isinstance(outcome, PasswordCheck):
                if outcome.slow:
                    self.check_password_in_thread(mid, op, tag, outcome)
                    return
                if not outcome.verify():
                    raise LDAPError(ResultCode.invalidCredentials)
                self.finish_bind(mid, op, tag, outcome)
                return
            self.bound(mid, op, tag, *outcome)
        elif type(op) in WRITE_METHODS:
            # on the database's writer thread, answered once durable (group commit, backends/writer.py)
            def answer(response_controls: list[Control]) -> None:
                self.result(mid, tag, ResultCode.success, controls=response_controls)

            self.in_writer(mid, tag, directory.write(WRITE_METHODS[type(op)], session, op, controls), answer)
        elif isinstance(op, ldap.CompareRequest):
            self.result(mid, tag, directory.compare(session, op, controls))
        elif isinstance(op, ldap.ExtendedRequest):
            self.extended(mid, op, tag, session)

    def bound(self, mid: int, op: ldap.BindRequest, tag: int, dn: str, ndn: str) -> None:
        session = self.session
        session.bind_dn, session.bind_ndn = dn, ndn
        self.framer.max_pdu_size = self.server.config.max_pdu_auth if ndn else self.server.config.max_pdu
        if self.log.level & STATS:
            mech = "SIMPLE" if op.sasl_mechanism is None else op.sasl_mechanism
            self.log.write(f'conn={session.conn_id} op={self.current_op} BIND dn="{dn}" mech={mech} '
                           f"ssf={session.ssf}")  # fmt: skip
        self.result(mid, tag, ResultCode.success)

    def check_password_in_thread(
        self, mid: int, op: ldap.BindRequest, tag: int, check: PasswordCheck
    ) -> None:
        def then(valid: bool) -> None:
            if not valid:
                raise LDAPError(ResultCode.invalidCredentials)
            self.finish_bind(mid, op, tag, check)

        self.in_thread(mid, tag, check.verify, then)

    def finish_bind(self, mid: int, op: ldap.BindRequest, tag: int, check: PasswordCheck) -> None:
        """A verified simple bind; with `lastbind` its pwdLastSuccess write goes through the database's writer
        thread, and the bind is answered once it is stored."""
        backend = check.backend
        if backend is None or not backend.config.lastbind:
            self.bound(mid, op, tag, *self.directory.finish_bind(self.session, check))
            return

        async def written() -> tuple[str, str]:
            return await backend.db.writer.submit(
                lambda _txn: self.directory.finish_bind(self.session, check)
            )

        self.in_writer(mid, tag, written(), lambda identity: self.bound(mid, op, tag, *identity))

    def in_thread(self, mid: int, tag: int, work: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """Slow password work ({ARGON2}...) runs on a worker thread (the hash releases the GIL) while the loop
        serves other connections; `then` answers on the loop. This connection's next requests wait, in order,
        as behind any slapd bind."""
        self.hold_reading()
        future = asyncio.get_running_loop().run_in_executor(self.server.password_pool, work)
        future.add_done_callback(lambda done: self.thread_done(mid, tag, done, then))

    def hold_reading(self) -> None:
        """Requests after this one wait (reading paused, `busy` set) until it answers."""
        self.busy = True
        if self.transport is not None:
            try:
                self.transport.pause_reading()
            except RuntimeError:
                pass

    def in_writer(self, mid: int, tag: int, write: Any, then: Callable[[Any], None]) -> None:
        """A write runs on its database's writer thread; the loop serves other connections meanwhile, and this
        connection's next requests wait, in order, as for `in_thread`."""
        self.hold_reading()
        future = asyncio.ensure_future(write)
        future.add_done_callback(lambda done: self.thread_done(mid, tag, done, then))

    def thread_done(self, mid: int, tag: int, done: asyncio.Future, then: Callable[[Any], None]) -> None:
        self.busy = False
        if self.closing or self.transport is None or self.transport.is_closing():
            if not done.cancelled():
                done.exception()  # retrieved: the client is gone, its write's outcome stays unreported
            return
        if self.out is not None:
            self.answer_done(mid, tag, done, then)
            return
        self.out = []  # the answer and those of the requests held meanwhile: one write
        try:
            self.answer_done(mid, tag, done, then)
        finally:
            self.flush(None)

    def answer_done(self, mid: int, tag: int, done: asyncio.Future, then: Callable[[Any], None]) -> None:
        try:
            then(done.result())
        except LDAPError as exc:
            self.result(mid, tag, exc.code, exc.message, exc.matched_dn, referrals=exc.referrals, nentries=0)
        except DatabaseFull:  # past maxsize: back-mdb's answer to MDB_MAP_FULL for this operation
            self.result(mid, tag, ResultCode.other, MAP_FULL_TEXT.get(tag, "internal error"), nentries=0)
        except Exception as exc:  # a broken stored value fails this operation, never the server
            self.log.error(f"conn={self.session.conn_id} operation failed: {exc!r}")
            self.result(mid, tag, ResultCode.other, "internal error", nentries=0)
        self.go_on()  # the requests held meanwhile, then reading

    def extended(self, mid: int, op: ldap.ExtendedRequest, tag: int, session=None) -> None:
        session = session if session is not None else self.session
        if op.name in (ctl.WHO_AM_I, ctl.CANCEL, ctl.START_TLS):  # Password Modify: at its target's database
            check_restrictions(self.directory, session, None, "extended", op.name)
        if op.name == ctl.WHO_AM_I:
            if op.value is not None:
                self.result(mid, tag, ResultCode.protocolError, "no request data expected")
                return
            value = self.directory.who_am_i(session)
            extra = tlv(EXTENDED_RESULT_VALUE_TAG, value)
            self.result(mid, tag, ResultCode.success, extra=extra)
        elif op.name == ctl.PASSWORD_MODIFY:
            change = self.directory.prepare_password_modify(session, op.value)

            def answer(value: bytes | None) -> None:
                extra = tlv(EXTENDED_RESULT_VALUE_TAG, value) if value is not None else b""
                self.result(mid, tag, ResultCode.success, extra=extra)

            def then(_: None) -> None:  # the write, on the database's writer thread
                self.in_writer(mid, tag, self.directory.password_modify_written(session, change), answer)

            if change.slow:  # {ARGON2} and the like: hashed and checked on a worker thread
                self.in_thread(mid, tag, change.compute, then)
            else:
                change.compute()
                then(None)
        elif op.name == ctl.CANCEL:
            try:
                target = ctl.decode_cancel_request(op.value)
            except ldap.ProtocolError:
                self.result(mid, tag, ResultCode.protocolError, "cancel request is malformed")
                return
            if self.directory.stop_sync_search(self, target, ResultCode.cancelled):
                self.result(mid, tag, ResultCode.success)
            else:
                self.result(mid, tag, ResultCode.noSuchOperation, "message ID not found")
        elif op.name == ctl.START_TLS:
            start_tls(self, mid, op, tag)  # server/tls.py; unavailable when TLS is not configured
        else:
            self.result(mid, tag, ResultCode.protocolError, "unsupported extended operation")

    def log_request(self, op) -> None:
        """The request's stats line (the caller asks only at the stats level)."""
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


def ignore(_outcome: Any) -> None:
    """A sync search answers for itself (replication/provider.py)."""


class SearchJob:
    """A search running in steps on one connection (server/steps.py)."""

    __slots__ = ("mid", "tag", "steps", "finish", "op", "started", "waiting", "resumed")

    def __init__(self, mid: int, tag: int, steps: Steps, finish: Callable[[Any], None] | None, op: int,
                 started: float) -> None:  # fmt: skip
        self.mid, self.tag, self.steps, self.finish = mid, tag, steps, finish
        self.op, self.started = op, started  # for its result's log line and etime
        self.waiting = ""  # "turn" (its next time slice), "writable" (the client reads again), "thread"
        self.resumed = False  # it went on after the request's own turn: the held requests follow its end
