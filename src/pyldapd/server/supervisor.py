"""The supervisor of `pyldapd serve` with more than one worker process (issue 13, docs/architecture.md).

The process started by `pyldapd serve` reads the config, binds every listener, writes the pid files, becomes
the service user (-u/-g; -r happened before), then forks N workers, each one today's whole server
(`run_server`'s event loop) on the inherited listening sockets: the kernel hands each new connection to one of
the workers accepting on the socket. The supervisor itself runs no event loop and never opens a database: it
relays the bus messages (server/workers.py), restarts a worker that dies (same index, with a backoff), forwards
stop signals, tells systemd READY=1 once every worker listens, and changes the number of workers when
olcThreads changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import secrets
import select
import shutil
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pyldapd.backends import ldif
from pyldapd.server.configshare import ConfigShare
from pyldapd.server.log import Logger
from pyldapd.server.service import STOP_SIGNALS, Service
from pyldapd.server.stats import SLOT_SIZE, clear_connections
from pyldapd.server.workers import MAX_MESSAGE, RESYNC, SUPERVISOR, decode, encode

PR_SET_PDEATHSIG = 1  # prctl(2)
MAX_WORKERS = 256  # slots of the shared counters, fixed before the first fork
QUEUE_LIMIT = 10_000  # messages waiting for one worker; past it they are dropped and "resync" sent instead
RESTART_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)  # a worker that keeps dying is restarted less and less often
STABLE_AFTER = 30.0  # seconds up after which a worker's next death restarts it at once again


@dataclass
class WorkerContext:
    """What a forked worker gets: its index, the count, its bus socket, the shared counters, the cn=config
    lock and operation log (server/configshare.py)."""

    index: int
    count: int
    sock: socket.socket
    counters: mmap.mmap
    capacity: int
    config_share: ConfigShare
    # connections handed to worker 0 (server/handoff.py): its receiving end for worker 0, the sending end for
    # the others; None with one worker
    handoff: socket.socket | None = None


@dataclass
class Worker:
    index: int
    pid: int = 0
    sock: socket.socket | None = None
    outbox: deque = field(default_factory=deque)
    dropped: bool = False  # messages dropped: "resync" queued
    ready: bool = False
    started: float = 0.0
    deaths: int = 0
    restart_at: float = 0.0  # when a dead worker is started again (0: not waiting)


EARLY_SIGNALS: list[int] = []  # stop signals a worker got before its loop handled them


def note_early_signal(signum: int, _frame) -> None:
    EARLY_SIGNALS.append(signum)


def early_signals() -> list[signal.Signals]:
    """The stop signals this worker got while it started, in order (once: the list is emptied)."""
    taken = [signal.Signals(signum) for signum in EARLY_SIGNALS]
    EARLY_SIGNALS.clear()
    return taken


def set_death_signal() -> None:
    """The kernel kills this process when its parent (the supervisor) dies, whatever the way (kill -9)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Supervisor:
    def __init__(self, count: int, log: Logger, service: Service | None,
                 run_worker: Callable[[WorkerContext], int], cleanup: Callable[[], None],
                 close_listeners: Callable[[], None] = lambda: None) -> None:  # fmt: skip
        self.count = min(count, MAX_WORKERS)
        self.capacity = MAX_WORKERS
        self.log = log
        self.service = service
        self.run_worker = run_worker
        self.cleanup = cleanup  # the supervisor's exit: pid files and ldapi sockets removed
        # at a stop signal: its copies of the listening sockets closed, so that once the workers have closed
        # theirs (at once, or at gentlehup's pace) nobody listens any more
        self.close_listeners = close_listeners
        self.counters = mmap.mmap(-1, SLOT_SIZE * self.capacity)  # MAP_SHARED|MAP_ANONYMOUS: kept across fork
        # one for the server's life: the log holds every cn=config change since the config read before the first
        # fork, which a worker started later replays
        self.config_share = ConfigShare.create()
        self.workers: dict[int, Worker] = {}
        self.retiring: dict[int, Worker] = {}  # pid -> a worker stopped by a smaller olcThreads, not yet gone
        self.stopping: signal.Signals | None = None
        self.pending_signals: deque[signal.Signals] = deque()
        self.announced = False  # READY=1 sent
        self.failed = False  # a worker could not start: the server stops with status 1
        self.wake_read, self.wake_write = socket.socketpair()
        # one datagram pair for the server's life: only processes forked from here hold an end, so nothing else
        # can hand a worker a connection; a worker 0 started again finds what was sent while none ran
        self.handoff_in, self.handoff_out = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    # -- processes ------------------------------------------------------------------------------------------

    def spawn(self, index: int) -> None:
        worker = self.workers.setdefault(index, Worker(index))
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        # a stop signal relayed to a worker still starting must not kill it (a gentle SIGHUP would not be gentle):
        # blocked over the fork, then noted until its loop handles them (`early_signals`, Server.run)
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
        finally:
            if os.getpid() == parent:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if pid == 0:  # the worker
            code = 1
            try:
                set_death_signal()
                mine.close()
                for other in [*self.workers.values(), *self.retiring.values()]:
                    if other.sock is not None:
                        other.sock.close()
                signal.set_wakeup_fd(-1)
                self.wake_read.close()
                self.wake_write.close()
                handoff, other_end = (
                    (self.handoff_in, self.handoff_out) if index == 0 else (self.handoff_out, self.handoff_in)
                )
                other_end.close()
                for sig in STOP_SIGNALS:
                    signal.signal(sig, note_early_signal)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                if os.getppid() != parent:  # the supervisor died before the death signal was set
                    os._exit(1)
                code = self.run_worker(
                    WorkerContext(
                        index, self.count, theirs, self.counters, self.capacity, self.config_share, handoff
                    )  # fmt: skip
                )
            except BaseException as exc:  # noqa: BLE001 (whatever happens, the child must not return)
                try:
                    self.log.error(f"pyldapd: worker {index}: {exc!r}")
                except Exception:  # noqa: BLE001
                    pass
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        theirs.close()
        mine.setblocking(False)
        worker.pid, worker.sock, worker.ready = pid, mine, False
        worker.outbox.clear()
        worker.dropped, worker.restart_at, worker.started = False, 0.0, time.monotonic()
        self.log.error(f"pyldapd: worker {index} started (pid {pid})")

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers.values() if w.pid == pid), None)
            if worker is None:
                leaving = self.retiring.pop(pid, None)
                if leaving is not None and leaving.sock is not None:
                    leaving.sock.close()
                continue
            self.exited(worker, status)

    def exited(self, worker: Worker, status: int) -> None:
        how = (f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
               else f"exited with status {os.waitstatus_to_exitcode(status)}")  # fmt: skip
        worker.pid = 0
        if worker.sock is not None:
            worker.sock.close()
            worker.sock = None
        worker.outbox.clear()
        clear_connections(self.counters, worker.index)  # its clients are gone with it
        if self.stopping is not None or worker.index >= self.count:
            self.log.error(f"pyldapd: worker {worker.index} {how}")
            if worker.index >= self.count:
                del self.workers[worker.index]
            return
        if not worker.ready and not self.announced:  # never listened at start: the config cannot serve
            self.log.error(f"pyldapd: worker {worker.index} {how} before it was ready: stopping")
            self.failed = True
            self.stop(signal.SIGTERM)
            return
        if time.monotonic() - worker.started > STABLE_AFTER:
            worker.deaths = 0
        delay = RESTART_DELAYS[min(worker.deaths, len(RESTART_DELAYS) - 1)]
        worker.deaths += 1
        worker.restart_at = time.monotonic() + delay
        self.log.error(f"pyldapd: worker {worker.index} {how}; restarting it in {delay}s")

    def stop(self, sig: signal.Signals) -> None:
        """A stop signal for the server: every worker gets it (gentlehup included: each worker closes its
        listeners and stops when its last client goes; a second signal stops them at once)."""
        if self.stopping is None:
            self.log.error(f"daemon: shutdown requested and initiated ({sig.name}).")
            if self.service is not None:
                self.service.notify("STOPPING=1")
            self.close_listeners()
        self.stopping = sig
        for worker in [*self.workers.values(), *self.retiring.values()]:
            if worker.pid:
                try:
                    os.kill(worker.pid, sig)
                except ProcessLookupError:
                    pass

    def resize(self, count: int) -> None:
        """olcThreads changed: start the missing workers, stop (SIGTERM, a clean stop) those past the count."""
        count = max(1, min(count, self.capacity))
        if count == self.count or self.stopping is not None:
            return
        self.log.error(f"pyldapd: {count} worker processes (were {self.count})")
        old, self.count = self.count, count
        for index in range(count, old):
            worker = self.workers.get(index)
            if worker is not None and worker.pid:
                os.kill(worker.pid, signal.SIGTERM)
            elif worker is not None:
                del self.workers[index]
        for index in range(old, count):
            leaving = self.workers.pop(index, None)
            if leaving is not None and leaving.pid:  # still stopping from a smaller count: let it end apart
                self.retiring[leaving.pid] = leaving
            self.spawn(index)
        for worker in self.workers.values():
            self.queue(worker, SUPERVISOR, encode("_count", str(count).encode()))

    # -- the bus --------------------------------------------------------------------------------------------

    def queue(self, worker: Worker, sender: int, message: bytes) -> None:
        if worker.sock is None:
            return  # not running: it rebuilds its state from storage when it starts
        if worker.dropped:
            return
        if len(worker.outbox) >= QUEUE_LIMIT:  # it stopped reading: drop, and tell it to catch up
            worker.outbox.clear()
            worker.dropped = True
            self.log.error(
                f"pyldapd: worker {worker.index} does not read its bus messages: dropped, resync sent"
            )
            worker.outbox.append(SUPERVISOR.to_bytes(2, "big") + encode(RESYNC, b""))
            return
        worker.outbox.append(sender.to_bytes(2, "big") + message)

    def flush(self, worker: Worker) -> None:
        while worker.outbox and worker.sock is not None:
            try:
                worker.sock.send(worker.outbox[0])
            except BlockingIOError:
                return
            except OSError:  # dying: reaped soon
                worker.outbox.clear()
                return
            worker.outbox.popleft()
        worker.dropped = False

    def receive(self, worker: Worker) -> None:
        for _ in range(256):
            if worker.sock is None:
                return
            try:
                data = worker.sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the worker is gone (reaped soon) or closed its end
                worker.sock.close()
                worker.sock = None
                return
            kind, payload = decode(data)
            if kind.startswith("_"):
                self.control(worker, kind, payload)
                continue
            for other in self.workers.values():
                if other is not worker:
                    self.queue(other, worker.index, data)

    def control(self, worker: Worker, kind: str, payload: bytes) -> None:
        if kind == "_ready":
            worker.ready = True
            if not self.announced and all(w.ready for w in self.workers.values()):
                self.announced = True
                self.log.error(f"pyldapd: {self.count} worker processes listening")
                self.log.starting = False  # from now on errors go where the config says only
                if self.service is not None:
                    self.service.notify("READY=1", f"STATUS={self.count} worker processes listening")
        elif kind == "_to":  # for one worker only
            target = self.workers.get(int.from_bytes(payload[:2], "big"))
            if target is not None and target is not worker:
                self.queue(target, worker.index, payload[2:])
        elif kind == "_threads":
            try:
                wanted = int(payload)
            except ValueError:
                return
            self.resize(wanted)

    # -- the loop -------------------------------------------------------------------------------------------

    def on_signal(self, sig: int, _frame) -> None:
        self.pending_signals.append(signal.Signals(sig))

    def run(self) -> int:
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        signal.set_wakeup_fd(self.wake_write.fileno(), warn_on_full_buffer=False)
        for sig in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, self.on_signal)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # slapd's "wake": nothing to do here
        # back-ldif databases' LMDB copies, one per database shared by every worker (backends/ldif.py), in a
        # folder named after this process and this run, made only if a worker opens an ldif database
        ldif.SHARED_COPIES_OWNER = f"{os.getpid()}-{secrets.token_hex(6)}"
        try:
            for index in range(self.count):
                self.spawn(index)
            while True:
                while self.pending_signals:
                    sig = self.pending_signals.popleft()
                    if sig != signal.SIGCHLD:
                        self.stop(sig)
                self.reap()
                if (
                    self.stopping is not None
                    and not any(w.pid for w in self.workers.values())
                    and not self.retiring
                ):
                    break
                now = time.monotonic()
                for worker in list(self.workers.values()):
                    if worker.restart_at and now >= worker.restart_at and self.stopping is None:
                        self.spawn(worker.index)
                readers = [self.wake_read] + [w.sock for w in self.workers.values() if w.sock is not None]
                writers = [w.sock for w in self.workers.values() if w.sock is not None and w.outbox]
                try:
                    readable, writable, _ = select.select(readers, writers, [], 0.5)
                except InterruptedError:
                    continue
                for sock in readable:
                    if sock is self.wake_read:
                        try:
                            self.wake_read.recv(4096)
                        except OSError:
                            pass
                        continue
                    worker = next((w for w in self.workers.values() if w.sock is sock), None)
                    if worker is not None:
                        self.receive(worker)
                for worker in list(self.workers.values()):
                    if worker.sock is not None and worker.outbox and worker.sock in writable:
                        self.flush(worker)
        finally:
            for worker in [
                *self.workers.values(),
                *self.retiring.values(),
            ]:  # (an unexpected error): none left
                if worker.pid:
                    try:
                        os.kill(worker.pid, signal.SIGKILL)
                        os.waitpid(worker.pid, 0)
                    except (ProcessLookupError, ChildProcessError):
                        pass
            self.log.error("slapd stopped.")
            with contextlib.suppress(
                OSError
            ):  # none made (no ldif database), or no temporary folder (a chroot)
                shutil.rmtree(ldif.shared_copies_path(ldif.SHARED_COPIES_OWNER))
            self.cleanup()
        return 1 if self.failed else 0
