"""OpenLDAP 2.5.13's own test scripts (`tests/scripts/` of Debian's source package `openldap`), driven as upstream
drives them, against Debian's slapd or against pyldapd standing in for slapd and its tools.

Nothing of OpenLDAP is copied into the repository: the source package is fetched with `apt-get source` into a
cache (~/.cache/pyldapd-tests/openldap, or $PYLDAPD_TEST_CACHE/openldap) and unpacked there once. For each run a
tree is laid out as OpenLDAP's build leaves it for `make test`:

    ROOT/servers/slapd/slapd          the server under test (slapd's tools run as `slapd -Ta` etc., as defines.sh does)
    ROOT/servers/slapd/schema         -> the source's schema folder
    ROOT/servers/slapd/back-*, overlays  -> Debian's module folder (a modular build only: Debian's slapd)
    ROOT/clients/tools                -> /usr/bin (Debian's ldap-utils)
    ROOT/tests/run                    tests/run.in with configure's @...@ substituted
    ROOT/tests/scripts, data          -> the source's (unchanged: defines.sh, configs, LDIF)
    ROOT/tests/progs/ldif-filter      compiled from the source's tests/progs/ldif-filter.c

and each script runs as `make test` runs it: `./run -b mdb testNNN-name` from ROOT/tests, under a timeout.
The BUILD_* flags say which modules the server has: Debian's slapd has every module of /usr/lib/ldap and loads
them (`#mod#` lines); pyldapd is a "static" build without back-ldap, back-meta, back-sql..., so the scripts leave
out their chain lines as they do for a slapd built without back-ldap.

Run by hand:  .venv/bin/python -m tests.compat.openldap_scripts [slapd|pyldapd] [script ...]
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import port_slice

VERSION = "2.5.13"
DEB_VERSION = "2.5.13+dfsg-5"
DEBIAN_SLAPD = "/usr/sbin/slapd"
DEBIAN_MODULES = "/usr/lib/ldap"

# The core and replication scripts of issue 10 (Debian's slapd passes all of them).
SCRIPTS = (
    "test000-rootdse",
    "test001-slapadd",
    "test002-populate",
    "test003-search",
    "test004-modify",
    "test005-modrdn",
    "test006-acls",
    "test007-slapmodify",
    "test011-glue-slapadd",
    "test012-glue-populate",
    "test027-emptydn",
    "test017-syncreplication-refresh",
    "test018-syncreplication-persist",
    "test019-syncreplication-cascade",
    "test033-glue-syncrepl",
    "test049-sync-config",
    "test050-syncrepl-multiprovider",
    "test053-syncprov-glue",
    "test054-syncreplication-parallel-load",
    "test059-consumer-config",
    "test061-syncreplication-initiation",
    # issue 11
    "test078-persistent-sessionlog",
    "test043-delta-syncrepl",
    "test063-delta-multiprovider",
    "test069-delta-multiprovider-starttls",
    "test070-delta-multiprovider-ldaps",
    "test086-delta-consumer-config",
    # more of OpenLDAP's suite
    "test014-whoami",
    "test051-config-undo",
    "test055-valregex",
    "test056-monitor",
    # search semantics: language tags, extensible matching, certificates, DN forms
    "test013-language",
    "test015-xsearch",
    "test021-certificate",
    "test026-dn",
    # passed once tried: limits, subtree rename, cn=config deletes, TLS, SASL EXTERNAL over TLS
    "test025-limits",
    "test040-subtree-rename",
    "test062-config-delete",
    "test067-tls",
    "test068-sasl-tls-external",
    # OpenLDAP's load programs, concurrent clients adding, modifying, renaming, binding and searching
    "test008-concurrency",
    # referrals, controls and extended operations
    "test009-referral",
    "test010-passwd",
    "test016-subref",
    "test037-manage",
    # a cn=config built with slapadd -n0 from LDIF with include: lines; {ARGON2} passwords
    "test083-argon2",
)

# configure's module flags (run.in's @BUILD_*@): "mod" = a loadable module, "yes" = built in, "no" = absent.
_ALL_BUILD = (
    "BALANCER MDB NULL LDAP META ASYNCMETA PERL RELAY SQL WT ACCESSLOG PW_ARGON2 AUTOCA CONSTRAINT DDS DEREF DYNLIST "
    "HOMEDIR MEMBEROF OTP PROXYCACHE PPOLICY REFINT REMOTEAUTH RETCODE TRANSLUCENT UNIQUE RWM SYNCPROV VALSORT"
).split()
# Debian's slapd 2.5.13: the modules in /usr/lib/ldap (no lloadd, no back-wt, no autoca).
# (password modules are "yes" or "no": test083 loads argon2.la when it is "yes")
DEBIAN_BUILD = {name: "mod" for name in _ALL_BUILD} | {"BALANCER": "no", "WT": "no", "AUTOCA": "no",
                                                     "PW_ARGON2": "yes"}  # fmt: skip
# pyldapd: back-mdb and syncprov are built in (back-monitor and glue are core), {ARGON2} too (moduleload argon2 is
# known and changes nothing); accesslog is a "module": pyldapd,
# like Debian's modular slapd, knows the accesslog schema once `moduleload accesslog` (or an olcModuleLoad over
# cn=config) or an accesslog overlay asks for it, where a static slapd registers it at start (test086 names req*
# attributes in an olcDbIndex before any accesslog overlay); no back-ldap (so no chain), no other backend or overlay
PYLDAPD_BUILD = {name: "no" for name in _ALL_BUILD} | {"MDB": "yes", "SYNCPROV": "yes", "ACCESSLOG": "mod",
                                                      "PW_ARGON2": "yes"}  # fmt: skip


def cache_dir() -> Path:
    return Path(os.environ.get("PYLDAPD_TEST_CACHE", Path.home() / ".cache" / "pyldapd-tests")) / "openldap"


@contextmanager
def cache_lock() -> Iterator[None]:
    """The cache's lock, held while its source is fetched and its programs built."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb.debian.org unless its sources say otherwise)."""
    folder = Path("/etc/apt/sources.list.d")
    texts = (
        [p.read_text(errors="replace") for p in sorted(folder.glob("*")) if p.is_file()]
        if folder.is_dir()
        else []
    )
    if Path("/etc/apt/sources.list").is_file():
        texts.append(Path("/etc/apt/sources.list").read_text(errors="replace"))
    for text in texts:
        for match in re.finditer(r"(?:URIs:\s*|^deb(?:-src)?\s+(?:\[[^]]*\]\s+)?)(https?://\S+)", text, re.M):
            url = match.group(1).rstrip("/")
            if url.endswith("/debian"):
                return url
    return "http://deb.debian.org/debian"


def fetch_source() -> Path:
    """The unpacked OpenLDAP source of Debian's package (fetched with apt-get source once, then cached)."""
    root = cache_dir()
    tree = root / "src" / f"openldap-{VERSION}"
    if (tree / "tests" / "scripts" / "defines.sh").is_file():
        return tree
    (root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (root / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (root / "src").mkdir(parents=True, exist_ok=True)
    sources = root / "sources.list"
    sources.write_text(f"deb-src {debian_mirror()} bookworm main\n")
    apt = [
        "apt-get",
        "-q",
        f"-oDir::Etc::SourceList={sources}",
        "-oDir::Etc::SourceParts=/dev/null",
        f"-oDir::State::Lists={root / 'lists'}",
        f"-oDir::Cache={root / 'cache'}",
    ]
    orig = root / "src" / f"openldap_{VERSION}+dfsg.orig.tar.xz"
    if not orig.is_file():
        subprocess.run([*apt, "update"], check=True, capture_output=True, timeout=300)
        subprocess.run(
            [*apt, "source", "--download-only", f"openldap={DEB_VERSION}"],
            cwd=root / "src",
            check=True,
            capture_output=True,
            timeout=600,
        )
    # unpacked as Debian builds it: upstream's tarball with Debian's patches, then (debian/rules) Debian's own
    # schema files where the DFSG tarball lacks upstream's (core.schema...)
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(
        ["dpkg-source", "--no-check", "-x", f"openldap_{DEB_VERSION}.dsc", tree.name],
        cwd=root / "src",
        check=True,
        capture_output=True,
        timeout=300,
    )
    schema = tree / "servers" / "slapd" / "schema"
    for path in sorted((tree / "debian" / "schema").iterdir()):
        if path.suffix in (".schema", ".ldif"):
            shutil.copy2(path, schema / path.name)
    return tree


def build_ldif_filter(source: Path) -> Path:
    """tests/progs/ldif-filter, compiled from the source with the few configure results it needs."""
    out = cache_dir() / "progs"
    binary = out / "ldif-filter"
    if binary.is_file():
        return binary
    out.mkdir(parents=True, exist_ok=True)
    # configure's portable.h, reduced to what ldif-filter.c and the <ac/*.h> it includes look at on glibc
    (out / "portable.h").write_text(
        "#define STDC_HEADERS 1\n#define HAVE_UNISTD_H 1\n#define HAVE_STRING_H 1\n#define HAVE_STDLIB_H 1\n"
        "#define HAVE_FCNTL_H 1\n#define HAVE_STRINGS_H 1\n#define HAVE_MEMCPY 1\n#define HAVE_STRDUP 1\n"
        '#define HAVE_GETOPT 1\n#include <assert.h>\n#include "ldap_cdefs.h"\n'
    )
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("a C compiler (cc) is needed to build OpenLDAP's tests/progs/ldif-filter")
    subprocess.run(
        [
            cc,
            "-O",
            "-w",
            f"-I{out}",
            f"-I{source / 'include'}",
            "-o",
            str(binary),
            str(source / "tests" / "progs" / "ldif-filter.c"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return binary


# OpenLDAP's load programs (tests/progs/slapd-*), which test008-concurrency and test060-mt-hot drive
LOAD_PROGRAMS = ("slapd-tester", "slapd-search", "slapd-read", "slapd-addel", "slapd-modify", "slapd-modrdn",
                 "slapd-bind", "slapd-mtread", "slapd-watcher")  # fmt: skip


def build_load_programs(source: Path) -> Path:
    """tests/progs/slapd-* as OpenLDAP's build makes them: they link against its internal libraries (liblutil,
    the static libldap), so a copy of the source is configured without the servers and its libraries and
    tests/progs built (about 20 s, once: kept in the cache with ldif-filter)."""
    out = cache_dir() / "progs"
    if all((out / name).is_file() for name in LOAD_PROGRAMS):
        return out
    out.mkdir(parents=True, exist_ok=True)
    build = out / f"build-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    try:
        shutil.copytree(source, build, symlinks=True)
        steps = [
            ["./configure", "--disable-slapd", "--disable-lloadd", "--without-cyrus-sasl", "--with-tls=no",
             "--disable-shared"],
            ["make", "depend"],
            ["make", "-C", "libraries", f"-j{os.cpu_count() or 2}"],
            ["make", "-C", "tests/progs", f"-j{os.cpu_count() or 2}"],
        ]  # fmt: skip
        for step in steps:
            done = subprocess.run(step, cwd=build, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(
                    f"building OpenLDAP's tests/progs: {' '.join(step)} failed:\n{done.stderr[-2000:]}"
                )
        for name in LOAD_PROGRAMS:
            shutil.copy2(build / "tests" / "progs" / name, out / name)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out


def pyldapd_dispatcher() -> str:
    """pyldapd's slapd-compatible program (the target of `pyldapd compat-links`)."""
    for folder in (Path(sys.executable).parent, Path(sys.argv[0]).resolve().parent):
        candidate = folder / "pyldapd-slapd"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("pyldapd-slapd")
    if found is None:
        raise FileNotFoundError("pyldapd-slapd is not installed")
    return found


def _symlink(target: str | Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def make_tree(root: Path, server: str) -> Path:
    """Lay out ROOT as OpenLDAP's build tree for `make test` with `server` ("slapd" or "pyldapd") as slapd;
    returns ROOT/tests."""
    with cache_lock():  # one fetch and build at a time (test processes run side by side under pytest-xdist)
        source = fetch_source()
        ldif_filter = build_ldif_filter(source)
        programs = build_load_programs(source)
    if server == "slapd":
        program, build = DEBIAN_SLAPD, DEBIAN_BUILD
    elif server == "pyldapd":
        program, build = pyldapd_dispatcher(), PYLDAPD_BUILD
    else:
        raise ValueError(server)
    if root.exists():
        shutil.rmtree(root)
    slapd_dir = root / "servers" / "slapd"
    _symlink(program, slapd_dir / "slapd")
    _symlink(source / "servers" / "slapd" / "schema", slapd_dir / "schema")
    if server == "slapd":
        # the configs' `modulepath ../servers/slapd/back-ldap/` and `moduleload ../servers/slapd/overlays/x.la`
        for folder in (
            "back-mdb",
            "back-ldap",
            "back-meta",
            "back-asyncmeta",
            "back-relay",
            "back-sql",
            "back-null",
            "back-perl",
            "overlays",
            "pwmods",
        ):
            _symlink(DEBIAN_MODULES, slapd_dir / folder)
    _symlink("/usr/bin", root / "clients" / "tools")
    tests = root / "tests"
    tests.mkdir(parents=True)
    _symlink(source / "tests" / "scripts", tests / "scripts")
    _symlink(source / "tests" / "data", tests / "data")
    (tests / "progs").mkdir()
    shutil.copy2(ldif_filter, tests / "progs" / "ldif-filter")
    for name in LOAD_PROGRAMS:
        shutil.copy2(programs / name, tests / "progs" / name)
    modular = "yes" if server == "slapd" else "no"
    values = {
        "srcdir": ".",
        "top_srcdir": "..",
        "LN_S": "ln -s",
        "EGREP": "grep -E",
        # both have SASL: slapd through Cyrus SASL, pyldapd EXTERNAL (TLS client certificates, ldapi); scripts
        # that need another mechanism ask the server for it and skip (test076: DIGEST-MD5)
        "WITH_SASL": "yes",
        "WITH_TLS": "yes",
        "WITH_TLS_TYPE": "gnutls",
        "WITH_MODULES_ENABLED": modular,
        "WITH_ACI_ENABLED": "no",
        "BUILD_LIBS_DYNAMIC": "dynamic" if modular == "yes" else "static",
    } | {f"BUILD_{name}": flag for name, flag in build.items()}
    text = (source / "tests" / "run.in").read_text()
    text = re.sub(r"@([A-Za-z0-9_]+)@", lambda m: values.get(m.group(1), m.group(0)), text)
    leftover = re.findall(r"@[A-Za-z0-9_]+@", text)
    if leftover:
        raise RuntimeError(f"run.in: no value for {sorted(set(leftover))}")
    (tests / "run").write_text(text)
    (tests / "run").chmod(0o755)
    return tests


def free_base_port(count: int = 7, tries: int = 200) -> int:
    """A base port such that base+1..base+count are free on loopback (defines.sh uses BASEPORT+1..+6). Taken below
    the kernel's ephemeral range: the scripts stop and restart servers on the same port, and a port of that range
    can meanwhile become the source port of some outgoing connection (or another test's free port)."""
    ports = port_slice()  # this test process's slice (pytest-xdist), as tests.servers.free_port draws
    low, high = ports.start, ports.stop
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        high = min(high, ephemeral_low) if ephemeral_low > low + 1000 else high
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(tries):
        base = random.randrange(low, high - count - 1)
        ok = True
        for port in range(base + 1, base + count + 1):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no run of free ports")


@dataclass
class Result:
    script: str
    passed: bool
    returncode: int | None  # None: timed out
    seconds: float
    output: str

    def divergence(self, lines: int = 12) -> str:
        """The end of the script's output (where it stopped)."""
        if self.returncode is None:
            return "timed out\n" + "\n".join(self.output.splitlines()[-lines:])
        return "\n".join(self.output.splitlines()[-lines:])


def _stop_leftovers(tests: Path, group: int | None) -> None:
    """Stop the servers a script left running: the process group of its run (ours) and the pids in its
    testrun/*.pid files (written by the servers it started), each by its id."""
    if group is not None:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    testrun = tests / "testrun"
    for pidfile in testrun.glob("*.pid") if testrun.is_dir() else ():
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (ValueError, IndexError, ProcessLookupError, PermissionError, OSError):
            pass


SCRIPT_SLEEPS = {"SLEEP0": "1", "SLEEP1": "4", "SLEEP2": "8"}


def run_script(tests: Path, script: str, timeout: float = 240.0) -> Result:
    """`./run -b mdb SCRIPT` in the tree, as `make test` runs each script, bounded by `timeout` seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LDAP", "SLAPD_", "PYTEST"))}
    env["SLAPD_BASEPORT"] = str(free_base_port())
    env["LANG"] = env["LC_ALL"] = "C"
    # The scripts' waits for replication are OpenLDAP's knobs (tests/scripts/defines.sh: SLEEP1=7, SLEEP2=15 s),
    # sized for slapd's retry and refreshOnly intervals of 3 s: 4 and 8 keep a second's margin over those and
    # take some 3 minutes off the suite. Set in the environment, they win.
    for knob, seconds in SCRIPT_SLEEPS.items():
        env.setdefault(knob, seconds)
    start = time.monotonic()
    proc = subprocess.Popen(
        ["./run", "-b", "mdb", script],
        cwd=tests,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _stop_leftovers(tests, proc.pid)
        output, _ = proc.communicate(timeout=30)
        code = None
    _stop_leftovers(tests, proc.pid)
    text = output.decode(errors="replace")
    return Result(script, code == 0, code, time.monotonic() - start, text)


def main(argv: list[str]) -> int:
    server = argv[0] if argv else "pyldapd"
    scripts = argv[1:] or list(SCRIPTS)
    root = Path(os.environ.get("OPENLDAP_SCRIPTS_ROOT", f"/tmp/openldap-scripts-{server}-{os.getpid()}"))
    tests = make_tree(root, server)
    passed = 0
    for script in scripts:
        result = run_script(tests, script)
        passed += result.passed
        status = "PASS" if result.passed else "FAIL"
        print(f"{status} {script} ({result.seconds:.0f}s, rc={result.returncode})", flush=True)
        if not result.passed:
            print("    " + result.divergence().replace("\n", "\n    "), flush=True)
    print(f"{server}: {passed}/{len(scripts)} passed")
    if "OPENLDAP_SCRIPTS_ROOT" not in os.environ:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if passed == len(scripts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
