"""pyldapd run as a system service, as slapd is: -u/-g privilege drop, syslog (-n, -l, -s), logfile with
logfile-rotate, slapd's stop signals, -V, -o, the shipped systemd unit and default file run as systemd would run
them, and a database of the previous format upgraded at start.

Every test runs real `pyldapd serve` processes over real sockets; the syslog daemon and systemd are played by
unix datagram sockets the test owns (PYLDAPD_SYSLOG_SOCKET is pyldapd's documented seam for the syslog path)."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import ldap
import pytest

from tests.servers import (
    ROOTDN,
    ROOTPW,
    SLAPD,
    SUFFIX,
    child_pids,
    free_port,
    ldap_tool,
    port_open,
    slapd_conf,
    start_process,
    start_pyldapd,
    start_slapd,
    wait_for,
    worker_pids,
)

PYLDAPD = [sys.executable, "-m", "pyldapd.cli.main"]
REPO = Path(__file__).resolve().parents[2]
SERVICE_USER = "openldap"  # Debian's slapd package made it; the tests run as root, as the CI does
ENTRY = "dn: uid=svc,dc=example,dc=com\nobjectClass: account\nuid: svc\n"
SUFFIX_LDIF = (
    "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"
)


def run(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*PYLDAPD, *args], capture_output=True, text=True, timeout=timeout, env=env)


def add_as_root(url: str, ldif: str) -> None:
    result = ldap_tool("ldapadd", "-x", "-H", url, "-D", ROOTDN, "-w", ROOTPW, input=ldif)
    assert result.returncode == 0, result.stderr


def suffix_context_csn(conf: Path) -> list[str]:
    """contextCSN on the suffix entry in the stopped server's database (what slapcat shows)."""
    result = run("cat", "-f", str(conf), "-b", SUFFIX)
    assert result.returncode == 0, result.stderr
    return re.findall(r"^contextCSN: (.+)$", result.stdout.split("\n\n")[0], re.MULTILINE)


def provider_conf(workdir: Path, extra_global: str = "") -> str:
    return slapd_conf(workdir / "db", extra_global=extra_global, extra_db="overlay syncprov\n")


# --- slapd's stop signals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("signame", ["SIGHUP", "SIGINT", "SIGTERM", "SIGUSR2"])
def test_each_slapd_stop_signal_stops_cleanly(tmp_path: Path, signame: str) -> None:
    """SIGHUP, SIGINT, SIGTERM and SIGUSR2 each stop pyldapd as slapd: exit 0, the pid and args files removed,
    contextCSN checkpointed onto the suffix entry. SIGUSR1 (slapd's wake-up) does not stop it."""
    pidfile, argsfile = tmp_path / "run" / "pyldapd.pid", tmp_path / "run" / "pyldapd.args"
    pidfile.parent.mkdir()
    server = start_pyldapd(tmp_path, provider_conf(tmp_path, f"pidfile {pidfile}\nargsfile {argsfile}\n"))
    try:
        add_as_root(server.url, SUFFIX_LDIF + "\n" + ENTRY)
        assert pidfile.read_text().strip() == str(server.process.pid)
        assert "serve" in argsfile.read_text()
        server.process.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        assert server.process.poll() is None
        assert ldap_tool("ldapsearch", "-x", "-H", server.url, "-b", SUFFIX, "(uid=svc)").returncode == 0
    finally:
        code = server.stop(getattr(signal, signame))
    assert code == 0, server.log()
    assert not pidfile.exists() and not argsfile.exists()
    assert f"shutdown requested and initiated ({signame})" in server.log()
    assert "slapd stopped." in server.log()
    assert len(suffix_context_csn(server.config_path)) == 1


def test_a_database_without_syncprov_shows_no_context_csn(tmp_path: Path) -> None:
    """As slapd: contextCSN is syncprov's (or a consumer's); a plain database shows none on its suffix, live or
    after a stop. Its vector is still kept (in the database's metadata): a write after a restart is newer."""
    conf = slapd_conf(tmp_path / "db")
    server = start_pyldapd(tmp_path, conf)
    try:
        add_as_root(server.url, SUFFIX_LDIF + "\n" + ENTRY)
        found = ldap_tool("ldapsearch", "-x", "-LLL", "-H", server.url, "-b", SUFFIX, "-s", "base", "+")
        assert found.returncode == 0 and "entryCSN:" in found.stdout and "contextCSN" not in found.stdout
        before = re.search(r"^entryCSN: (.+)$", found.stdout, re.MULTILINE)[1]
    finally:
        assert server.stop() == 0, server.log()
    assert suffix_context_csn(server.config_path) == []
    server = start_pyldapd(tmp_path, conf)
    try:
        changed = ldap_tool("ldapmodify", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW,
                            input=f"dn: {SUFFIX}\nchangetype: modify\nreplace: description\ndescription: x\n")  # fmt: skip
        assert changed.returncode == 0, changed.stderr
        found = ldap_tool("ldapsearch", "-x", "-LLL", "-H", server.url, "-b", SUFFIX, "-s", "base", "+")
        assert "contextCSN" not in found.stdout
        assert re.search(r"^entryCSN: (.+)$", found.stdout, re.MULTILINE)[1] > before
    finally:
        assert server.stop() == 0, server.log()


def gentle_hup_outcome(server, ldif: str = SUFFIX_LDIF + "\n" + ENTRY) -> list:
    """What a bound client sees across a SIGHUP under `gentlehup on`, and how the server ends."""
    add_as_root(server.url, ldif)
    conn = ldap.initialize(server.url)
    conn.simple_bind_s(ROOTDN, ROOTPW)
    workers = len(worker_pids(server)) or 1
    logged = len(server.log())
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: not port_open(server.port), 15, what="the listener to close")
    # pyldapd's supervisor stops the shared listener at once and relays the signal: each worker takes it
    # a moment later (the write below must find every worker in its gentle shutdown, as slapd's one process)
    if server.name != "slapd":
        try:
            wait_for(lambda: server.log()[logged:].count("slapd gentle shutdown") >= workers, 5,
                     what="every worker gentle")  # fmt: skip
        except TimeoutError:
            raise AssertionError(server.log()) from None
    seen: list = [server.process.poll()]
    seen.append(conn.search_s(f"uid=svc,{SUFFIX}", ldap.SCOPE_BASE, "(objectClass=*)", ["uid"]))
    try:
        conn.modify_s(f"uid=svc,{SUFFIX}", [(ldap.MOD_REPLACE, "description", [b"x"])])
        seen.append("modified")
    except ldap.LDAPError as exc:
        seen.append((type(exc).__name__, exc.args[0].get("info")))
    seen.append(server.process.poll())  # still serving the client it has
    conn.unbind_s()
    wait_for(lambda: server.process.poll() is not None, 20, what="the server to stop once idle")
    seen.append(server.process.returncode)
    return seen


def test_gentlehup_alike_slapd(tmp_path: Path) -> None:
    """`gentlehup on`: SIGHUP closes the listeners, the connected client still reads but its writes get
    unwillingToPerform "operation restricted", and the server exits 0 once the client unbinds; as slapd."""
    ours = start_pyldapd(tmp_path / "ours", slapd_conf(tmp_path / "ours" / "db", extra_global="gentlehup on"))
    try:
        mine = gentle_hup_outcome(ours)
    finally:
        ours.stop()
    (tmp_path / "slapd" / "db").mkdir(parents=True, exist_ok=True)
    slapd = start_slapd(tmp_path / "slapd", slapd_conf(tmp_path / "slapd" / "db", extra_global="gentlehup on",
                                                       modules=True))  # fmt: skip
    try:
        theirs = gentle_hup_outcome(slapd)
    finally:
        slapd.stop()
    assert mine == theirs
    assert mine[2] == ("UNWILLING_TO_PERFORM", "operation restricted") and mine[-1] == 0
    assert "slapd gentle shutdown" in ours.log()


# --- -V, -o, -l, -u, -g checks, alike with slapd -----------------------------------------------------------------


def test_version_flags(tmp_path: Path) -> None:
    """`--version` and `serve -VV` print the version and the database format and exit 0 (slapd's -VV);
    `serve -V` prints it and goes on starting (slapd's -V)."""
    from pyldapd import __version__
    from pyldapd.backends.mdb import FORMAT_VERSION

    text = f"pyldapd {__version__} (database format {FORMAT_VERSION})"
    result = run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, text)
    result = run("serve", "-VV")
    assert (result.returncode, result.stderr.strip()) == (0, text)
    server = start_pyldapd(tmp_path, slapd_conf(tmp_path / "db"), extra_args=["-V"])
    try:
        assert server.log().startswith(text)
    finally:
        assert server.stop() == 0


BAD_OPTIONS = [
    (["-o", "frob=1"], ""),
    (["-l", "LOCAL9"], ""),
    (["-u", "no-such-user-here"], ""),
    (["-g", "no-such-group-here"], ""),
    (["-s", "frob"], 'unrecognized log level "frob"'),
    (["-r", "/no-such-sandbox-here"], "chdir: No such file or directory"),
]


@pytest.mark.parametrize(("flags", "slapd_text"), BAD_OPTIONS)
def test_refused_service_options_alike_slapd(tmp_path: Path, flags: list[str], slapd_text: str) -> None:
    """A service option slapd refuses is refused by pyldapd with exit 1 before anything starts (slapd's own
    message where slapd prints one; slapd prints nothing for a bad -l/-u/-g)."""
    conf = tmp_path / "slapd.conf"
    conf.write_text(slapd_conf(tmp_path / "db", modules=True))
    slapd = subprocess.run([SLAPD, *flags, "-d", "0", "-f", str(conf), "-h", f"ldap://127.0.0.1:{free_port()}/"],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    ours = run("serve", *flags, "-d", "0", "-f", str(conf), "-h", f"ldap://127.0.0.1:{free_port()}/")
    assert slapd.returncode == ours.returncode == 1, ours.stderr
    assert slapd_text in slapd.stderr
    if "chdir" in slapd_text:
        assert slapd_text in ours.stderr
    assert ours.stderr.strip() and "Traceback" not in ours.stderr
    assert not (tmp_path / "db" / "data.mdb").exists()  # nothing opened


@pytest.mark.parametrize("value", ["on", "(srvtype=ldap)"])
def test_slp_option_noted_and_started_alike_slapd(tmp_path: Path, value: str) -> None:
    """Debian's slapd has no SLP: `-o slp=...` prints "SLP support is not available" and the server starts."""
    from tests.servers import start_process

    conf = tmp_path / "slapd.conf"
    conf.write_text(slapd_conf(tmp_path / "db", modules=True))
    port = free_port()
    slapd = start_process("slapd", [SLAPD, "-o", f"slp={value}", "-d", "0", "-f", str(conf), "-h",
                                    f"ldap://127.0.0.1:{port}/"], port, "", tmp_path, conf)  # fmt: skip
    try:
        assert "SLP support is not available" in slapd.log()
    finally:
        slapd.stop()
    server = start_pyldapd(
        tmp_path / "p", slapd_conf(tmp_path / "p" / "db"), extra_args=["-o", f"slp={value}"]
    )
    try:
        assert "SLP support is not available" in server.log()
    finally:
        assert server.stop() == 0


def test_slp_off_accepted(tmp_path: Path) -> None:
    """`-o slp=off` asks for what pyldapd always does (no SLP registration): it starts."""
    server = start_pyldapd(tmp_path, slapd_conf(tmp_path / "db"), extra_args=["-o", "slp=off"])
    assert server.stop() == 0


def test_chroot_needs_a_config(tmp_path: Path) -> None:
    """-r with the quick start (no -f/-F) is refused: its files are pyldapd's own, outside any sandbox."""
    result = run("serve", "-r", str(tmp_path), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1 and "-r: a sandbox needs -f or -F" in result.stderr
    assert not (tmp_path / "data").exists()


# --- -u / -g ------------------------------------------------------------------------------------------------------


@pytest.fixture
def open_dir():
    """A folder the service user can reach after the drop (pytest's tmp_path is under a root-only 0700 folder,
    as /root would be)."""
    path = Path(tempfile.mkdtemp(prefix="pyldapd-service-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def proc_ids(pid: int) -> tuple[list[int], list[int], list[int]]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = {line.split(":")[0]: line.split(":")[1].split() for line in status.splitlines()}
    return (
        [int(x) for x in fields["Uid"]],
        [int(x) for x in fields["Gid"]],
        [int(x) for x in fields["Groups"]],
    )


def test_privilege_drop_after_bind(open_dir: Path) -> None:
    """Started as root with -u openldap -g openldap on a fresh database: the listeners are bound and the
    database opened as root, then every uid and gid of the process is openldap's, the files it must still write
    are openldap's, and writes, the checkpoint at stop and the pid file removal work as that user."""
    assert os.geteuid() == 0, "this test starts pyldapd as root, as a service manager does"
    user = pwd.getpwnam(SERVICE_USER)
    run_dir = open_dir / "run"  # like /run/slapd: the service user's, so the pid file can be removed at stop
    run_dir.mkdir()
    os.chown(run_dir, user.pw_uid, user.pw_gid)
    pidfile, logfile = run_dir / "pyldapd.pid", run_dir / "pyldapd.log"
    conf = provider_conf(open_dir, f"pidfile {pidfile}\nlogfile {logfile}\n")
    server = start_pyldapd(open_dir, conf, extra_args=["-u", SERVICE_USER, "-g", SERVICE_USER])
    try:
        wait_for(lambda: "running as uid" in server.log(), 15, what="the privilege drop")
        uids, gids, groups = proc_ids(server.process.pid)
        assert uids == [user.pw_uid] * 4 and gids == [user.pw_gid] * 4, server.log()
        assert 0 not in groups and user.pw_gid in groups
        owned = [open_dir / "db" / "data.mdb", open_dir / "db" / "lock.mdb", open_dir / "db", pidfile, logfile,
                 Path(server.ldapi_path)]  # fmt: skip
        for path in owned:
            st = os.stat(path)
            assert (path, st.st_uid, st.st_gid) == (path, user.pw_uid, user.pw_gid)
        add_as_root(server.url, SUFFIX_LDIF + "\n" + ENTRY)  # LMDB writes as openldap
        who = ldap_tool("ldapwhoami", "-Y", "EXTERNAL", "-H", server.ldapi_url)
        assert who.returncode == 0, who.stderr
        assert "SRCH" not in logfile.read_text() and "ADD dn=" in logfile.read_text()
    finally:
        assert server.stop() == 0, server.log()
    assert not pidfile.exists()
    assert len(suffix_context_csn(server.config_path)) == 1


def test_privilege_drop_matches_slapd_identity(open_dir: Path) -> None:
    """slapd -u openldap -g openldap and pyldapd with the same flags end with the same uid, gid and groups."""
    assert os.geteuid() == 0
    user = pwd.getpwnam(SERVICE_USER)
    conf_text = slapd_conf(open_dir / "slapd-db", modules=True)
    (open_dir / "slapd-db").mkdir(exist_ok=True)
    os.chown(open_dir / "slapd-db", user.pw_uid, user.pw_gid)  # slapd opens its database after the drop
    port = free_port()
    (open_dir / "slapd.conf").write_text(conf_text)
    argv = [SLAPD, "-u", SERVICE_USER, "-g", SERVICE_USER, "-d", "0", "-f", str(open_dir / "slapd.conf"), "-h",
            f"ldap://127.0.0.1:{port}/"]  # fmt: skip
    slapd = start_process("slapd", argv, port, "", open_dir, open_dir / "slapd.conf")
    ours = None
    try:
        ours = start_pyldapd(open_dir / "ours", slapd_conf(open_dir / "ours" / "db"),
                             extra_args=["-u", SERVICE_USER, "-g", SERVICE_USER])  # fmt: skip
        wait_for(lambda: "running as uid" in ours.log(), 15, what="the privilege drop")
        assert proc_ids(ours.process.pid) == proc_ids(slapd.process.pid)
    finally:
        slapd.stop()
        assert ours is None or ours.stop() == 0


# --- syslog ---------------------------------------------------------------------------------------------------------


class DatagramSink:
    """A unix datagram socket playing the syslog daemon or systemd's notify socket."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.received: list[str] = []
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self.read, daemon=True)  # read at once, as a daemon would
        self.reader.start()

    def read(self) -> None:
        while not self.closed.is_set():
            try:
                self.received.append(self.sock.recv(1 << 20).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def wait_for(self, needle: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in list(self.received):
                if needle in message:
                    return message
            time.sleep(0.05)
        raise TimeoutError(f"no datagram with {needle!r} in {timeout}s: {self.received[-5:]}")

    def close(self) -> None:
        self.closed.set()
        self.reader.join(5)
        self.sock.close()


def test_syslog_without_debug_mode(tmp_path: Path) -> None:
    """Without -d (and with -d 0) lines go to syslog, as slapd's do: ident -n, facility -l, severity debug;
    stderr stays quiet. -s sets the level syslog gets."""
    sink = DatagramSink(str(tmp_path / "log.sock"))
    conf = tmp_path / "slapd.conf"
    conf.write_text(slapd_conf(tmp_path / "db"))
    port = free_port()
    argv = [*PYLDAPD, "serve", "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0", "-n", "dirsrv",
            "-l", "LOCAL3", "-s", "stats"]  # fmt: skip
    env = dict(os.environ, PYLDAPD_SYSLOG_SOCKET=sink.address)
    log_path = tmp_path / "stderr.log"
    with open(log_path, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: port_open(port) or process.poll() is not None, 30, what="pyldapd to listen")
        assert process.poll() is None, log_path.read_text()
        ldap_tool("ldapsearch", "-x", "-H", f"ldap://127.0.0.1:{port}", "-b", SUFFIX, "(uid=nobody)")
        line = sink.wait_for(" SRCH base=")
        # LOCAL3 (19) * 8 + LOG_DEBUG (7) = 159; "Mmm dd hh:mm:ss ident[pid]: message", as syslog(3) sends;
        # the pid of the process that wrote it: the server's, or one of its worker processes'
        pids = "|".join(map(str, [process.pid, *child_pids(process.pid)]))
        assert re.match(
            rf"<159>\w{{3}} [ \d]\d \d\d:\d\d:\d\d dirsrv\[(?:{pids})\]: conn=\d+ op=\d+ SRCH ", line
        )
        assert any("pyldapd starting" in m for m in sink.received)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        sink.close()
    assert any("slapd stopped." in m for m in sink.received)
    assert "SRCH" not in log_path.read_text()
    # a start that fails is told on stderr too, where whoever started it looks
    sink = DatagramSink(str(tmp_path / "log2.sock"))
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        argv[argv.index("-h") + 1] = f"ldap://127.0.0.1:{busy.getsockname()[1]}/"
        failed = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                env=dict(env, PYLDAPD_SYSLOG_SOCKET=sink.address))  # fmt: skip
        assert failed.returncode == 1
        assert failed.stderr.count("address already in use") == 1
        sink.wait_for("address already in use")
    finally:
        busy.close()
        sink.close()


# --- logfile and logfile-rotate --------------------------------------------------------------------------------------


def test_logfile_rotate(tmp_path: Path) -> None:
    """`logfile` gets every line; `logfile-rotate 2 1 0` moves it aside to .01 (then .02) before it grows past
    1 MB, and keeps no more than two old files."""
    logfile = tmp_path / "logs" / "pyldapd.log"
    logfile.parent.mkdir()
    server = start_pyldapd(tmp_path, slapd_conf(tmp_path / "db", extra_global=f"logfile {logfile}\n"
                                                "logfile-rotate 2 1 0\n"), debug="stats")  # fmt: skip
    try:
        conn = ldap.initialize(server.url)
        conn.simple_bind_s(ROOTDN, ROOTPW)
        big = (
            "(|" + "".join(f"(cn={uuid.uuid4().hex * 40})" for _ in range(250)) + ")"
        )  # ~330 kB per SRCH line
        conn.add_s(SUFFIX, [("objectClass", [b"dcObject", b"organization"]), ("dc", [b"example"]),
                            ("o", [b"Example"])])  # fmt: skip
        for _ in range(10):
            assert conn.search_s(SUFFIX, ldap.SCOPE_SUBTREE, big, ["1.1"]) == []
        conn.unbind_s()
        wait_for(lambda: (logfile.parent / "pyldapd.log.02").exists(), 10, what="two rotations")
    finally:
        assert server.stop() == 0
    names = sorted(p.name for p in logfile.parent.iterdir())
    assert names == ["pyldapd.log", "pyldapd.log.01", "pyldapd.log.02"]
    for path in logfile.parent.iterdir():
        assert path.stat().st_size <= 1024 * 1024
    assert "slapd stopped." in logfile.read_text()
    assert server.log().count(" SRCH base=") == 10  # -d stats: stderr gets every line too (logfile copies)


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("logfile-rotate 100 1 0", '<logfile-rotate> invalid max value "100" must be 1-99'),
        ("logfile-rotate 2 0 0", "<logfile-rotate> Mbyte and hours cannot both be zero"),
        ("logfile-rotate 2 1", "usage is logfile-rotate"),
        ("logfile-rotate 2 x 1", '<logfile-rotate> invalid Mbyte value "x"'),
        ("logfile-only maybe", "on or off"),
    ],
)
def test_logfile_rotate_refused(tmp_path: Path, line: str, text: str) -> None:
    conf = tmp_path / "slapd.conf"
    conf.write_text(slapd_conf(tmp_path / "db", extra_global=line))
    result = run("test", "-f", str(conf))
    assert result.returncode == 1 and text in result.stderr and "slapd.conf" in result.stderr


# --- the systemd unit and the default file -------------------------------------------------------------------------


def read_env_file(text: str) -> dict[str, str]:
    """EnvironmentFile= as systemd reads it: KEY=VALUE lines, # comments, quotes around the value removed."""
    env = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def expand_exec(command: str, env: dict[str, str]) -> list[str]:
    """ExecStart= as systemd expands it: `${VAR}` is one argument (empty if unset), a word `$VAR` is split at
    whitespace into arguments (none if empty)."""
    argv: list[str] = []
    for word in shlex.split(command):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            argv += env.get(whole.group(1), "").split()
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


def read_unit(path: Path) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None
        current[key.strip()] = value.strip()
    return sections


def test_systemd_unit_command_line(open_dir: Path) -> None:
    """The shipped unit's ExecStart, with the shipped default file edited as an admin would (config, listeners),
    run as systemd runs it: as root, NOTIFY_SOCKET set (an abstract socket here). READY=1 arrives once the
    listeners answer, the process runs as SLAPD_USER, and the unit's KillSignal stops it cleanly (STOPPING=1,
    exit 0)."""
    assert os.geteuid() == 0
    unit = read_unit(REPO / "contrib" / "pyldapd.service")
    service = unit["Service"]
    assert service["Type"] == "notify" and service["EnvironmentFile"] == "-/etc/default/pyldapd"
    default = (REPO / "contrib" / "default" / "pyldapd").read_text()
    shipped = read_env_file(default)
    assert {"SLAPD_CONF", "SLAPD_USER", "SLAPD_GROUP", "SLAPD_SERVICES", "SLAPD_OPTIONS"} <= shipped.keys()
    assert shipped["SLAPD_USER"] == SERVICE_USER

    user = pwd.getpwnam(shipped["SLAPD_USER"])
    port = free_port()
    ldapi = open_dir / "run" / "ldapi"
    ldapi.parent.mkdir()
    conf = open_dir / "slapd.conf"
    conf.write_text(slapd_conf(open_dir / "db", extra_global=f"pidfile {open_dir}/run/pyldapd.pid\n"))
    os.chown(ldapi.parent, user.pw_uid, user.pw_gid)
    edited = default.replace("SLAPD_CONF=/etc/pyldapd/slapd.conf", f"SLAPD_CONF={conf}")
    edited = re.sub(r"^SLAPD_SERVICES=.*$", f'SLAPD_SERVICES="ldap://127.0.0.1:{port}/ ldapi://'
                    f'{str(ldapi).replace("/", "%2F")}/"', edited, flags=re.MULTILINE)  # fmt: skip
    edited = re.sub(
        r"^SLAPD_OPTIONS=.*$", 'SLAPD_OPTIONS="-n pyldapd-test -o slp=off"', edited, flags=re.MULTILINE
    )
    argv = expand_exec(service["ExecStart"], read_env_file(edited))
    assert argv[:4] == ["/usr/bin/pyldapd", "serve", "-d", "0"]
    assert argv[-4:] == ["-n", "pyldapd-test", "-o", "slp=off"]
    argv[0] = shutil.which("pyldapd", path=str(Path(sys.executable).parent)) or "pyldapd"

    notify = DatagramSink(f"@pyldapd-notify-{uuid.uuid4().hex}")
    syslog = DatagramSink(str(open_dir / "syslog.sock"))
    env = {"PATH": os.environ["PATH"], "NOTIFY_SOCKET": notify.address, "PYLDAPD_SYSLOG_SOCKET": syslog.address,
           "LANG": "C.UTF-8"}  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd="/")
    try:
        ready = notify.wait_for("READY=1", 30)
        assert f"MAINPID={process.pid}" in ready
        assert port_open(port)  # listening before READY=1
        uids, gids, _ = proc_ids(process.pid)
        assert uids == [user.pw_uid] * 4 and gids == [user.pw_gid] * 4
        result = ldap_tool("ldapsearch", "-x", "-H", f"ldap://127.0.0.1:{port}", "-s", "base", "-b", "", "+")
        assert result.returncode == 0 and "namingContexts: dc=example,dc=com" in result.stdout
        whoami = ldap_tool("ldapwhoami", "-Y", "EXTERNAL", "-H", "ldapi://" + str(ldapi).replace("/", "%2F"))
        assert whoami.returncode == 0, whoami.stderr
        syslog.wait_for("pyldapd-test[")
    finally:
        process.send_signal(getattr(signal, service.get("KillSignal", "SIGTERM")))
        code = process.wait(30)
        output = process.stdout.read().decode() if process.stdout else ""
    assert code == 0, output
    assert "Traceback" not in output
    notify.wait_for("STOPPING=1", 5)
    notify.close()
    syslog.close()
    assert not (open_dir / "run" / "pyldapd.pid").exists()


# --- upgrade from the previous database format --------------------------------------------------------------------


def test_serve_upgrades_format_1_database(tmp_path: Path) -> None:
    """A database written in format 1 (one id per index value) is upgraded in place by `pyldapd serve`, which
    says so, answers searches through the upgraded indexes exactly as slapd answers on the same data, and shows
    the format in cn=Monitor."""
    from pyldapd.backends.mdb import FORMAT_VERSION
    from tests.format1 import rewrite_as_format_1

    people = "".join(
        f"\ndn: uid=user{i},dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: user{i}\ncn: User {i}\n"
        f"sn: Number{i % 7}\nmail: user{i}@example.com\n"
        for i in range(200)
    )
    ldif = tmp_path / "data.ldif"
    ldif.write_text(SUFFIX_LDIF + people)
    conf_text = slapd_conf(tmp_path / "db")
    conf = tmp_path / "pyldapd.conf"
    conf.write_text(conf_text)
    loaded = run("add", "-q", "-f", str(conf), "-l", str(ldif))
    assert loaded.returncode == 0, loaded.stderr
    assert rewrite_as_format_1(str(tmp_path / "db")) > 200

    server = start_pyldapd(tmp_path, conf_text, name="pyldapd")
    slapd_dir = tmp_path / "slapd"
    slapd_conf_path = slapd_dir / "slapd.conf"
    slapd_dir.mkdir()
    slapd_conf_path.write_text(slapd_conf(slapd_dir / "db", modules=True))
    (slapd_dir / "db").mkdir(exist_ok=True)
    subprocess.run(["/usr/sbin/slapadd", "-q", "-f", str(slapd_conf_path), "-l", str(ldif)], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    port = free_port()
    slapd = start_process("slapd", [SLAPD, "-f", str(slapd_conf_path), "-h", f"ldap://127.0.0.1:{port}/", "-d",
                          "0"], port, "", slapd_dir, slapd_conf_path)  # fmt: skip
    try:
        assert f"database upgraded in place from format 1 to {FORMAT_VERSION}" in server.log()
        for query in [
            "(uid=user42)",
            "(sn=number3)",
            "(cn=User 1*)",
            "(mail=*)",
            "(&(objectClass=person)(sn=*5))",
        ]:
            ours = ldap_tool(
                "ldapsearch", "-x", "-LLL", "-H", server.url, "-b", SUFFIX, "-z", "0", query, "dn"
            )
            theirs = ldap_tool(
                "ldapsearch", "-x", "-LLL", "-H", slapd.url, "-b", SUFFIX, "-z", "0", query, "dn"
            )
            assert (ours.returncode, sorted(ours.stdout.split("\n\n"))) == (
                theirs.returncode,
                sorted(theirs.stdout.split("\n\n")),
            ), query
            assert ours.stdout.count("dn: ") >= 1
        add_as_root(server.url, ENTRY.replace("uid=svc,", "uid=after,").replace("uid: svc", "uid: after"))
        monitor = ldap_tool("ldapsearch", "-Y", "EXTERNAL", "-H", server.ldapi_url, "-b", "cn=Monitor", "-s",
                            "base", "monitoredInfo")  # fmt: skip
        shown = monitor.stdout + monitor.stderr
        assert f"monitoredInfo: database format {FORMAT_VERSION}" in monitor.stdout, shown
    finally:
        assert server.stop() == 0
        slapd.stop()
    again = start_pyldapd(tmp_path, conf_text, name="again")
    try:
        assert "upgraded" not in again.log()
        found = ldap_tool("ldapsearch", "-x", "-LLL", "-H", again.url, "-b", SUFFIX, "(uid=after)", "dn")
        assert found.stdout.count("dn: ") == 1
    finally:
        again.stop()


def test_logfile_settings_over_cn_config(tmp_path: Path) -> None:
    """olcLogFile, olcLogFileOnly and olcLogFileRotate (OpenLDAP 2.6's cn=config names) are set over ldapi at
    run time: lines go to the new file at once, the values are written to slapd.d and read back at the next start;
    an invalid rotation is refused with slapd's text and changes nothing."""
    init = run(
        "init", "-F", str(tmp_path / "slapd.d"), "--suffix", SUFFIX, "--rootdn", ROOTDN, "--rootpw", ROOTPW
    )
    assert init.returncode == 0, init.stderr
    port = free_port()
    ldapi = str(tmp_path / "ldapi")
    ldapi_url = "ldapi://" + ldapi.replace("/", "%2F")
    argv = [*PYLDAPD, "serve", "-F", str(tmp_path / "slapd.d"), "-h", f"ldap://127.0.0.1:{port}/ {ldapi_url}/",
            "-d", "stats"]  # fmt: skip
    logfile = tmp_path / "logs.txt"  # not pyldapd.log: start_process puts stderr there

    def modify(ldif: str) -> subprocess.CompletedProcess:
        return ldap_tool("ldapmodify", "-Y", "EXTERNAL", "-H", ldapi_url, input=ldif)

    server = start_process("pyldapd", argv, port, ldapi, tmp_path, tmp_path / "slapd.d")
    try:
        result = modify(f"dn: cn=config\nchangetype: modify\nreplace: olcLogFile\nolcLogFile: {logfile}\n-\n"
                        "replace: olcLogFileRotate\nolcLogFileRotate: 3 10 24\n")  # fmt: skip
        assert result.returncode == 0, result.stderr
        ldap_tool("ldapsearch", "-x", "-H", f"ldap://127.0.0.1:{port}", "-b", SUFFIX, "(uid=marker)")
        wait_for(
            lambda: logfile.exists() and "(uid=marker)" in logfile.read_text(), 10, what="the new logfile"
        )
        refused = modify(
            "dn: cn=config\nchangetype: modify\nreplace: olcLogFileRotate\nolcLogFileRotate: 0 1 0\n"
        )
        assert refused.returncode != 0
        assert '<olcLogFileRotate> invalid max value "0" must be 1-99' in refused.stderr
        stored = (tmp_path / "slapd.d" / "cn=config.ldif").read_text().replace("\n ", "")  # unfolded
        assert f"olcLogFile: {logfile}" in stored and "olcLogFileRotate: 3 10 24" in stored
        result = modify("dn: cn=config\nchangetype: modify\nreplace: olcLogFileOnly\nolcLogFileOnly: TRUE\n")
        assert result.returncode == 0, result.stderr
        ldap_tool("ldapsearch", "-x", "-H", f"ldap://127.0.0.1:{port}", "-b", SUFFIX, "(uid=second)")
        wait_for(lambda: "(uid=second)" in logfile.read_text(), 10, what="the second search in the logfile")
        assert "(uid=second)" not in server.log()  # logfile-only: not on stderr any more
    finally:
        assert server.stop() == 0
    again = start_process("again", argv, port, ldapi, tmp_path, tmp_path / "slapd.d")
    try:
        ldap_tool("ldapsearch", "-x", "-H", f"ldap://127.0.0.1:{port}", "-b", SUFFIX, "(uid=third)")
        wait_for(lambda: "(uid=third)" in logfile.read_text(), 10, what="the logfile after a restart")
        config = ldap_tool("ldapsearch", "-Y", "EXTERNAL", "-H", ldapi_url, "-LLL", "-b", "cn=config", "-s", "base",
                           "olcLogFileRotate", "olcLogFileOnly")  # fmt: skip
        assert "olcLogFileRotate: 3 10 24" in config.stdout and "olcLogFileOnly: TRUE" in config.stdout
    finally:
        assert again.stop() == 0


def test_serve_refuses_a_newer_database_format_cleanly(tmp_path: Path) -> None:
    """A database from a newer pyldapd is not touched: a clear message and exit 1, no traceback."""
    import lmdb

    from pyldapd.backends.mdb import FORMAT_VERSION

    conf = tmp_path / "slapd.conf"
    conf.write_text(slapd_conf(tmp_path / "db"))
    env = lmdb.open(str(tmp_path / "db"), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(b"version", str(FORMAT_VERSION + 1).encode(), db=env.open_db(b"meta", txn=txn))
    env.close()
    result = run("serve", "-f", str(conf), "-h", f"ldap://127.0.0.1:{free_port()}/", "-d", "stats")
    assert result.returncode == 1
    assert f"database format {FORMAT_VERSION + 1} was written by a newer pyldapd" in result.stderr
    assert "Traceback" not in result.stderr


# --- olcGentleHUP (cn=config's gentlehup) -------------------------------------------------------------------------


def test_gentlehup_set_over_cn_config(tmp_path: Path) -> None:
    """olcGentleHUP: TRUE set over ldapi at run time makes the next SIGHUP gentle, as `gentlehup on` does (the
    same outcome as slapd's, test_gentlehup_alike_slapd); it is written to slapd.d and read back at a start."""
    init = run(
        "init", "-F", str(tmp_path / "slapd.d"), "--suffix", SUFFIX, "--rootdn", ROOTDN, "--rootpw", ROOTPW
    )
    assert init.returncode == 0, init.stderr
    port = free_port()
    ldapi = str(tmp_path / "ldapi")
    ldapi_url = "ldapi://" + ldapi.replace("/", "%2F")
    argv = [*PYLDAPD, "serve", "-F", str(tmp_path / "slapd.d"), "-h", f"ldap://127.0.0.1:{port}/ {ldapi_url}/",
            "-d", "stats"]  # fmt: skip
    gentle = "dn: cn=config\nchangetype: modify\nreplace: olcGentleHUP\nolcGentleHUP: TRUE\n"
    for attempt in ("set at run time", "read from slapd.d"):
        server = start_process("pyldapd", argv, port, ldapi, tmp_path, tmp_path / "slapd.d")
        try:
            if attempt == "set at run time":
                result = ldap_tool("ldapmodify", "-Y", "EXTERNAL", "-H", ldapi_url, input=gentle)
                assert result.returncode == 0, result.stderr
                stored = (tmp_path / "slapd.d" / "cn=config.ldif").read_text()
                assert "olcGentleHUP: TRUE" in stored
            other = f"dn: uid=other,{SUFFIX}\nobjectClass: account\nuid: other\n"  # uid=svc is there by now
            seen = gentle_hup_outcome(server, ENTRY if attempt == "set at run time" else other)
        finally:
            server.stop()
        assert seen[0] is None and seen[2] == ("UNWILLING_TO_PERFORM", "operation restricted"), (
            attempt,
            seen,
        )
        assert seen[3] is None and seen[-1] == 0, (attempt, seen, server.log())
        assert "slapd gentle shutdown" in server.log()


# --- -r (chroot) --------------------------------------------------------------------------------------------------


def sandbox(root: Path, conf_text: str) -> Path:
    """A chroot folder holding what slapd's config names, at the same paths inside: the config, the schema
    files it includes and the (empty) database folder. Nothing of Python or of the system."""
    (root / "db").mkdir(parents=True, exist_ok=True)
    shutil.copytree("/etc/ldap/schema", root / "etc" / "ldap" / "schema")
    (root / "slapd.conf").write_text(conf_text)
    return root


def sandbox_session(server) -> list:
    """What a client sees of a server in a sandbox: an add, a search over TCP and over ldapi (bound outside)."""
    add_as_root(server.url, SUFFIX_LDIF + "\n" + ENTRY)
    found = ldap_tool(
        "ldapsearch", "-Y", "EXTERNAL", "-H", server.ldapi_url, "-LLL", "-b", SUFFIX, "(uid=svc)"
    )
    assert found.returncode == 0, found.stderr
    return [found.stdout.split("\n")[0], os.readlink(f"/proc/{server.process.pid}/root"),
            os.readlink(f"/proc/{server.process.pid}/cwd")]  # fmt: skip


def start_in_sandbox(
    name: str, command: list[str], root: Path, workdir: Path, extra: list[str] | None = None
):
    port = free_port()
    ldapi = str(workdir / f"{name}.sock")  # outside the sandbox, as the listeners are bound before the chroot
    argv = [*command, "-r", str(root), "-f", "/slapd.conf", "-h",
            f"ldap://127.0.0.1:{port}/ ldapi://{ldapi.replace('/', '%2F')}/", *(extra or [])]  # fmt: skip
    return start_process(name, argv, port, ldapi, workdir, root / "slapd.conf")


def test_chroot_alike_slapd(tmp_path: Path) -> None:
    """`-r DIR` as slapd's: listeners bound first (the ldapi socket outside DIR), then chroot(DIR), then the
    config (-f /slapd.conf), its includes, `directory /db` and the pid file read or made inside DIR. Debian's
    slapd runs in the same layout once its back_mdb module is copied in (it loads it while reading the config,
    after the chroot); pyldapd needs nothing of Python inside: it loaded every module before."""
    assert os.geteuid() == 0, "chroot(2) needs root, as slapd's -r does"
    conf = slapd_conf(Path("/db"), extra_global="pidfile /run.pid", extra_db="overlay syncprov\n")
    ours_root = sandbox(tmp_path / "ours", conf)
    ours = start_in_sandbox("pyldapd", [*PYLDAPD, "serve", "-d", "stats"], ours_root, tmp_path)
    try:
        mine = sandbox_session(ours)
        assert (ours_root / "run.pid").read_text().strip() == str(ours.process.pid)
        assert (ours_root / "db" / "data.mdb").exists() and not (tmp_path / "db").exists()
    finally:
        assert ours.stop() == 0, ours.log()
    assert "slapd stopped." in ours.log() and "Traceback" not in ours.log()
    assert not (ours_root / "run.pid").exists()
    # syncprov's checkpoint at stop, in the sandbox's database
    assert len(suffix_context_csn_in(ours_root)) == 1

    theirs_root = sandbox(tmp_path / "slapd", slapd_conf(Path("/db"), extra_global="pidfile /run.pid",
                                                          modules=True))  # fmt: skip
    (theirs_root / "usr" / "lib" / "ldap").mkdir(parents=True)
    for module in Path("/usr/lib/ldap").glob("back_mdb*"):
        shutil.copy2(module, theirs_root / "usr" / "lib" / "ldap", follow_symlinks=False)
    slapd = start_in_sandbox("slapd", [SLAPD, "-d", "0"], theirs_root, tmp_path)
    try:
        theirs = sandbox_session(slapd)
        assert (theirs_root / "run.pid").read_text().strip() == str(slapd.process.pid)
    finally:
        slapd.stop()  # slapd aborts at stop in a chroot without libgcc_s.so.1 (glibc needs it for pthread_exit)
    assert mine[0] == theirs[0] == f"dn: uid=svc,{SUFFIX}"
    assert (mine[1], mine[2]) == (str(ours_root), str(ours_root))
    assert (theirs[1], theirs[2]) == (str(theirs_root), str(theirs_root))


def suffix_context_csn_in(root: Path) -> list[str]:
    """contextCSN of the suffix in a sandbox's database, read from outside with the config's paths rebased."""
    conf = root.parent / f"{root.name}-outside.conf"
    text = (root / "slapd.conf").read_text().replace("directory /db", f"directory {root / 'db'}")
    conf.write_text(text.replace("include /", f"include {root}/"))
    return suffix_context_csn(conf)


def test_chroot_with_privilege_drop_and_syslog(tmp_path: Path) -> None:
    """-r with -u/-g and no -d: the syslog socket (outside the sandbox) still gets the lines written after the
    chroot, the process runs as openldap with its groups (resolved before the chroot: no /etc/passwd inside),
    the database inside is openldap's, and a write and the stop work."""
    assert os.geteuid() == 0
    user = pwd.getpwnam(SERVICE_USER)
    sink = DatagramSink(str(tmp_path / "log.sock"))
    root = sandbox(tmp_path / "root", slapd_conf(Path("/db")))
    port = free_port()
    argv = [*PYLDAPD, "serve", "-r", str(root), "-f", "/slapd.conf", "-h", f"ldap://127.0.0.1:{port}/",
            "-u", SERVICE_USER, "-g", SERVICE_USER, "-s", "stats"]  # fmt: skip
    env = dict(os.environ, PYLDAPD_SYSLOG_SOCKET=sink.address)
    with open(tmp_path / "stderr.log", "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: port_open(port) or process.poll() is not None, 30, what="pyldapd to listen")
        assert process.poll() is None, (tmp_path / "stderr.log").read_text()
        sink.wait_for("running as uid")
        uids, gids, groups = proc_ids(process.pid)
        assert uids == [user.pw_uid] * 4 and gids == [user.pw_gid] * 4
        assert sorted(groups) == sorted(set(os.getgrouplist(SERVICE_USER, user.pw_gid)))
        assert os.stat(root / "db" / "data.mdb").st_uid == user.pw_uid
        add_as_root(f"ldap://127.0.0.1:{port}", SUFFIX_LDIF + "\n" + ENTRY)
        sink.wait_for(f'ADD dn="uid=svc,{SUFFIX}"')
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(20)
        sink.close()
    assert code == 0, (tmp_path / "stderr.log").read_text()
    assert any("slapd stopped." in m for m in sink.received)


def test_chroot_serves_tls_from_inside(tmp_path: Path) -> None:
    """TLS under -r: the certificate files are read after the chroot (paths inside the sandbox, as slapd reads
    them) and ldaps:// and StartTLS work with OpenSSL loaded before it; a bind checks a hashed password."""
    from tests.certs import make_pki

    root = tmp_path / "root"
    pki = make_pki(root / "tls")
    tls = (f"TLSCACertificateFile /tls/{pki.ca_cert.name}\nTLSCertificateFile /tls/{pki.server_cert.name}\n"
           f"TLSCertificateKeyFile /tls/{pki.server_key.name}\n")  # fmt: skip
    sandbox(root, slapd_conf(Path("/db"), extra_global=tls))
    port, ldaps_port = free_port(), free_port()
    argv = [*PYLDAPD, "serve", "-r", str(root), "-f", "/slapd.conf", "-d", "stats", "-h",
            f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/"]  # fmt: skip
    server = start_process("pyldapd", argv, port, str(tmp_path / "none.sock"), tmp_path, root / "slapd.conf")
    try:
        entry = ENTRY.replace("uid: svc", "uid: svc\nobjectClass: simpleSecurityObject\nuserPassword: x")
        add_as_root(server.url, SUFFIX_LDIF + "\n" + entry)
        passwd = ldap_tool("ldappasswd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, "-s", "pw",
                           f"uid=svc,{SUFFIX}")  # fmt: skip
        assert passwd.returncode == 0, passwd.stderr
        env = dict(
            os.environ,
            LDAPCONF=os.devnull,
            LDAPRC=os.devnull,
            LDAPTLS_CACERT=str(pki.ca_cert),
            LDAPTLS_REQCERT="demand",
        )  # the server shows the certificate it read inside the sandbox
        for how in (["-H", f"ldaps://127.0.0.1:{ldaps_port}"], ["-H", server.url, "-ZZ"]):
            found = subprocess.run(["ldapwhoami", "-o", "nettimeout=10", "-x", *how, "-D", f"uid=svc,{SUFFIX}",
                                    "-w", "pw"], capture_output=True, text=True, timeout=30, env=env)  # fmt: skip
            assert (found.returncode, found.stdout.strip()) == (0, f"dn:uid=svc,{SUFFIX}"), found.stderr
    finally:
        assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log()


def test_debug_level_outlives_cn_config_changes_as_in_slapd(tmp_path: Path) -> None:
    """`-d stats` is slapd's debug level (slap_debug); olcLogLevel sets its syslog level only (bconfig.c
    config_loglevel), so a cn=config change, olcLogLevel included, leaves the -d lines coming (OpenLDAP's test
    scripts read them: test059 changes cn=config at once)."""
    outcomes = {}
    for name in ("slapd", "pyldapd"):
        folder = tmp_path / name
        folder.mkdir()
        conf = folder / "slapd.conf"
        conf.write_text(slapd_conf(folder / "db", modules=True, extra_global="loglevel none")
                        + "database config\nrootpw configpw\n")  # fmt: skip
        port = free_port()
        program = [SLAPD] if name == "slapd" else [*PYLDAPD, "serve"]
        argv = [*program, "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "stats"]
        server = start_process(name, argv, port, str(folder / "unused"), folder, conf)
        url = f"ldap://127.0.0.1:{port}/"
        try:
            changed = ldap_tool("ldapmodify", "-x", "-H", url, "-D", "cn=config", "-w", "configpw",
                                input="dn: cn=config\nchangetype: modify\nreplace: olcLogLevel\nolcLogLevel: none\n"
                                "-\nreplace: olcSizeLimit\nolcSizeLimit: 400\n")  # fmt: skip
            assert changed.returncode == 0, changed.stderr
            ldap_tool("ldapsearch", "-x", "-H", url, "-b", SUFFIX, "(uid=after-the-change)")
            wait_for(lambda: "(uid=after-the-change)" in server.log(), 10, what=f"{name}'s stats line")  # noqa: B023
            outcomes[name] = 'filter="(uid=after-the-change)"' in server.log()
        finally:
            server.stop()
    assert outcomes == {"slapd": True, "pyldapd": True}
