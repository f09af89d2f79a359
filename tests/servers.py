"""Start real servers for tests: pyldapd and Debian's slapd, on free loopback ports, stopped by pid.

Every wait here is bounded; a server that does not come up fails the test with its log attached.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SLAPD = "/usr/sbin/slapd"
SCHEMA_DIR = "/etc/ldap/schema"
SUFFIX = "dc=example,dc=com"
ROOTDN = "cn=admin,dc=example,dc=com"
ROOTPW = "secret"


# Ports for the tests' servers come from below the kernel's ephemeral range (32768 up on Linux): the local ports
# of outgoing connections (a node's to its peers, a client's) are drawn from that range, so none of them can take
# a chosen port before its server binds it. Each pytest-xdist worker draws from its own slice.
TEST_PORTS = range(20000, 32000)
_port_choice = random.Random()


def port_slice() -> range:
    """This test process's slice of TEST_PORTS (all of it outside pytest-xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(worker[2:]) % count if worker[2:].isdigit() else 0
    width = len(TEST_PORTS) // count
    first = TEST_PORTS.start + index * width
    return range(first, first + width)


def free_port() -> int:
    """A loopback TCP port nobody holds now, from this process's slice of TEST_PORTS."""
    ports = port_slice()
    for _ in range(200):
        port = _port_choice.randrange(ports.start, ports.stop)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # a slice all taken: whatever the kernel gives
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def slapd_conf(directory: Path, *, indexes: str = "", extra_global: str = "", extra_db: str = "",
               schema_includes: bool = True, modules: bool = False) -> str:  # fmt: skip
    """One slapd.conf that both Debian's slapd and pyldapd start from (its database directory is made here: both
    refuse a directory that is not there)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    lines = []
    if schema_includes:
        for name in ("core", "cosine", "inetorgperson", "nis"):
            lines.append(f"include {SCHEMA_DIR}/{name}.schema")
    if modules:
        lines += ["modulepath /usr/lib/ldap", "moduleload back_mdb"]
    lines.append(extra_global)
    lines += [
        "database mdb",
        f'suffix "{SUFFIX}"',
        f'rootdn "{ROOTDN}"',
        f"rootpw {ROOTPW}",
        f"directory {directory}",
        "maxsize 104857600",
        indexes or "index objectClass eq\nindex uid,cn,sn,mail eq,pres,sub\nindex uidNumber eq",
        extra_db,
    ]
    return "\n".join(lines) + "\n"


@dataclass
class RunningServer:
    name: str
    process: subprocess.Popen
    port: int
    ldapi_path: str
    log_path: Path
    workdir: Path
    config_path: Path
    argv: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldapi_url(self) -> str:
        return "ldapi://" + self.ldapi_path.replace("/", "%2F")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Stop by pid; with worker processes (the default), wait for them to be gone too (a `kill -9` of the
        supervisor takes them along, PR_SET_PDEATHSIG), so the ports are free again."""
        if self.process.poll() is None:
            workers = child_pids(self.process.pid)
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            deadline = time.monotonic() + timeout
            while workers and time.monotonic() < deadline:
                workers = [pid for pid in workers if process_alive(pid)]
                time.sleep(0.02)
            for pid in workers:  # should never happen: ended by pid all the same
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return self.process.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def start_process(name: str, argv: list[str], port: int, ldapi_path: str, workdir: Path, config_path: Path,
                  env: dict | None = None) -> RunningServer:  # fmt: skip
    log_path = workdir / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    server = RunningServer(name, process, port, ldapi_path, log_path, workdir, config_path, argv)
    try:
        wait_for(lambda: port_open(port) or process.poll() is not None, 30, what=f"{name} to listen")
    except TimeoutError:
        server.kill()
        raise RuntimeError(f"{name} did not start:\n{server.log()}") from None
    if process.poll() is not None:
        raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log()}")
    return server


def start_pyldapd(workdir: Path, conf_text: str, *, name: str = "pyldapd", port: int | None = None,
                  debug: str = "stats,sync", extra_args: list[str] | None = None,
                  env: dict | None = None) -> RunningServer:  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.conf"
    config_path.write_text(conf_text)
    port = port or free_port()
    ldapi_path = str(workdir / f"{name}.sock")
    urls = f"ldap://127.0.0.1:{port}/ ldapi://{ldapi_path.replace('/', '%2F')}/"
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
        debug,
    ]
    argv += extra_args or []
    return start_process(name, argv, port, ldapi_path, workdir, config_path, env=env)


def start_slapd(
    workdir: Path, conf_text: str, *, name: str = "slapd", port: int | None = None
) -> RunningServer:
    if not os.path.exists(SLAPD):
        raise RuntimeError("Debian's slapd is not installed (the test command installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.conf"
    config_path.write_text(conf_text)
    port = port or free_port()
    ldapi_path = str(workdir / f"{name}.sock")
    urls = f"ldap://127.0.0.1:{port}/ ldapi://{ldapi_path.replace('/', '%2F')}/"
    argv = [SLAPD, "-f", str(config_path), "-h", urls, "-d", "0"]
    return start_process(name, argv, port, ldapi_path, workdir, config_path)


def ldap_tool(tool: str, *args: str, input: str | None = None, check: bool = False,
              timeout: float = 30) -> subprocess.CompletedProcess:  # fmt: skip
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed (the test command installs ldap-utils)")
    env = dict(os.environ, LDAPTLS_REQCERT="never", LDAPNOINIT="1")
    return subprocess.run([path, *args], input=input, capture_output=True, text=True, timeout=timeout,
                          check=check, env=env)  # fmt: skip


@contextlib.contextmanager
def slapd_and_pyldapd(root: Path, *, extra_global: str, extra_db: str, loads: list[tuple[str, str]]):
    """Debian's slapd and pyldapd from one slapd.conf, each loaded with the same (LDIF, tool) steps as the rootdn;
    yields (slapd, pyldapd) and stops both by pid. The set-up of the differential tests."""
    servers: list[RunningServer] = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            conf = slapd_conf(root / name / "db", modules=True, extra_global=extra_global, extra_db=extra_db)
            server = start(root / name, conf, name=name)
            servers.append(server)
            for ldif, tool in loads:
                result = ldap_tool(tool, "-H", server.url, "-x", "-D", ROOTDN, "-w", ROOTPW, input=ldif)
                assert result.returncode == 0, f"{name}: {result.stderr}\n{server.log()}"
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def on_both(pair, tool: str, *args: str, input: str | None = None) -> list[subprocess.CompletedProcess]:
    """The same ldap-utils command against each server of a pair."""
    return [ldap_tool(tool, "-H", server.url, *args, input=input) for server in pair]


# -- worker processes (issue 13: `threads N` in the config, server/supervisor.py) -------------------------------


def child_pids(pid: int) -> list[int]:
    """The live child processes of pid (a supervisor's workers), from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry))
    return sorted(children)


def process_alive(pid: int) -> bool:
    """pid is a running process (not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def worker_pids(server: RunningServer) -> list[int]:
    return child_pids(server.process.pid)


def wait_workers(server: RunningServer, count: int, timeout: float = 30.0) -> list[int]:
    """Wait until the supervisor has `count` workers and all of them listened once ("N worker processes
    listening" in the log, written when the last one is ready); returns their pids."""
    wait_for(lambda: f"pyldapd: {count} worker processes listening" in server.log()
             and len(worker_pids(server)) == count, timeout, what=f"{count} workers")  # fmt: skip
    return worker_pids(server)


def conn_id_of(server: RunningServer, local_port: int, timeout: float = 10.0) -> int:
    """The conn=N the server logged for the TCP connection from 127.0.0.1:local_port (needs -d stats, the
    default of start_pyldapd)."""
    import re

    pattern = re.compile(rf"conn=(\d+) fd=\d+ ACCEPT from IP=127\.0\.0\.1:{local_port} ")
    found: list[int] = []

    def logged() -> bool:
        matches = pattern.findall(server.log())
        if matches:
            found.append(int(matches[-1]))
        return bool(matches)

    wait_for(logged, timeout, what=f"the ACCEPT of port {local_port} in the log")
    return found[0]


def worker_of(server: RunningServer, local_port: int, timeout: float = 10.0) -> int:
    """The index of the worker process holding the server's end of the TCP connection from
    127.0.0.1:local_port: that socket's inode (in /proc/net/tcp) among the worker's descriptors, and the
    worker's index from the supervisor's "worker N started (pid P)" log lines. Waits (bounded) for the accept."""
    import re

    def inodes() -> set[str]:
        found = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as lines:
                    next(lines)
                    for line in lines:
                        fields = line.split()
                        local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
                        if int(local, 16) == server.port and int(remote, 16) == local_port:
                            found.add(fields[9])
            except OSError:
                continue
        return found

    def holder() -> int | None:
        wanted = {f"socket:[{inode}]" for inode in inodes()}
        indexes = {int(pid): int(index) for index, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)",
                                                                     server.log())}  # fmt: skip
        for pid in worker_pids(server):
            try:
                links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
            except OSError:
                continue  # gone meanwhile
            if links & wanted and pid in indexes:
                return indexes[pid]
        return None

    found: list[int] = []
    wait_for(lambda: (index := holder()) is not None and not found.append(index), timeout,
             what=f"the worker holding the connection from port {local_port}")  # fmt: skip
    return found[0]


def connection_on_worker(server: RunningServer, index: int, count: int, *, who: str = ROOTDN,
                         password: str = ROOTPW, attempts: int = 2000, timeout: float = 60.0,
                         tls_ca: Path | None = None):  # fmt: skip
    """A bound python-ldap connection (ldap://) served by worker `index` of `count`: connections are opened
    (at most `attempts`, for at most `timeout` seconds) until one lands on that worker (`worker_of`). The workers share
    new connections evenly (server/sharedlisten.py: the one holding fewest takes the next), so those landing
    elsewhere are kept open until then, and closed after: a test may hold several connections on one worker. A
    worker just restarted accepts only once it has opened its databases: until then every connection goes to
    the others, hence the pause after the first misses. `tls_ca`: StartTLS first (trusting this CA), which keeps
    the connection on its worker when it writes (server/handoff.py moves a plain one that writes to worker 0).
    Returns (connection, conn id)."""
    import ldap

    deadline = time.monotonic() + timeout
    elsewhere = []
    try:
        for attempt in range(attempts):
            if time.monotonic() > deadline:
                break
            if attempt >= 20:
                time.sleep(0.05)
            conn = ldap.initialize(server.url)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
            conn.set_option(ldap.OPT_TIMEOUT, 30)
            if tls_ca is not None:
                conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(tls_ca))
                conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
                conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
                conn.start_tls_s()
            if who:
                conn.simple_bind_s(who, password)
            else:
                conn.simple_bind_s("", "")
            sock = socket.socket(fileno=os.dup(conn.get_option(ldap.OPT_DESC)))
            try:
                local_port = sock.getsockname()[1]
            finally:
                sock.close()
            if worker_of(server, local_port) == index:
                return conn, conn_id_of(server, local_port)
            elsewhere.append(conn)
            if len(elsewhere) > 200:  # a worker that never accepts: do not hold descriptors without end
                elsewhere.pop(0).unbind_s()
    finally:
        for conn in elsewhere:
            conn.unbind_s()
    raise RuntimeError(f"no connection landed on worker {index} of {count} in {attempt + 1} attempts")


def server_rss_kb(server: RunningServer) -> int:
    """The resident anonymous memory (heap, buffers) of the server: its process and its worker processes (pages
    they share counted in each: compare growth, not totals). LMDB's pages are file-backed and left out: which
    of them a worker has touched says nothing about what the server holds."""
    total = 0
    for pid in [server.process.pid, *child_pids(server.process.pid)]:
        try:
            with open(f"/proc/{pid}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))
        except (OSError, StopIteration):
            continue  # gone meanwhile
    return total
