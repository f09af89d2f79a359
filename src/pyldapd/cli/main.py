"""`pyldapd` command line: `serve` takes slapd's flags; the tools mirror slapd's tools."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

from pyldapd.cli import passwd as passwd_cli
from pyldapd.config.model import LOG_LEVELS, ServerConfig, parse_log_level
from pyldapd.config.slapdconf import ConfigError, load_slapd_conf
from pyldapd.server.log import SYSLOG_FACILITIES, Logger, SyslogSink

DEFAULT_URLS = "ldap://127.0.0.1:3890/"
QUICKSTART_DIR = "pyldapd-data"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyldapd", description="An LDAPv3 directory server in Python.")
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server in the foreground (slapd)", add_help=False)
    serve.add_argument("--help", action="help", help="show this help and exit")
    serve.add_argument("-f", dest="config_file", help="slapd.conf file")
    serve.add_argument("-F", dest="config_dir", help="slapd.d configuration directory")
    serve.add_argument(
        "-h", dest="urls", help=f'listener URLs, e.g. "{DEFAULT_URLS} ldapi://%%2Ftmp%%2Fsock/"'
    )
    serve.add_argument(
        "-d", dest="debug", action="append", help="log level (names or numbers, as slapd's -d)"
    )
    serve.add_argument("-c", dest="cookies", action="append", default=[], help="rid=NNN,csn=... sync cookie")
    # slapd's service flags (slapd(8)); see cmd_serve for what each does here
    serve.add_argument("-u", dest="user", help="user (name or id) to run as once the listeners are bound")
    serve.add_argument("-g", dest="group", help="group (name or id) to run as")
    serve.add_argument(
        "-r", dest="chroot", help="sandbox directory to chroot to once the listeners are bound"
    )
    serve.add_argument("-n", dest="service_name", default="pyldapd", help="service name (syslog ident)")
    serve.add_argument("-l", dest="facility", default="LOCAL4", help="syslog facility LOCAL0..LOCAL7")
    serve.add_argument("-s", dest="syslog_level", action="append", help="syslog log level (as loglevel)")
    serve.add_argument("-o", dest="options", action="append", default=[], help="slp=off (the only option)")
    serve.add_argument(
        "-V", dest="version", action="count", default=0, help="print the version (-VV: and exit)"
    )
    serve.add_argument(
        "--data-dir",
        default=QUICKSTART_DIR,
        help="with no -f/-F: folder for the quick-start config and database",
    )

    from pyldapd.cli.tools import register

    parser.set_defaults(tool_handlers=register(commands))  # add, cat, index, test (slapadd, slapcat, ...)

    init = commands.add_parser("init", help="write the slapd.d of a fresh install")
    init.add_argument("-F", dest="config_dir", required=True, help="slapd.d directory to create")
    init.add_argument("--suffix", required=True)
    init.add_argument("--rootdn", required=True)
    init.add_argument("--rootpw", required=True)
    init.add_argument("--db-type", choices=["mdb", "hdb", "bdb"], default="mdb")
    init.add_argument("--directory", help="database folder (default: db beside the slapd.d)")

    passwd = commands.add_parser("passwd", help="hash a password (slappasswd)", add_help=False)
    passwd.add_argument("--help", action="help", help="show this help and exit")
    passwd_cli.add_arguments(passwd)  # cli/passwd.py: slappasswd's flags

    links = commands.add_parser(
        "compat-links", help="make links named slapd, slapadd, ... to pyldapd's slapd-compatible program"
    )
    links.add_argument("directory", help="folder for the links (put it first in PATH, or SLAPD/SBIN/BIN)")

    from pyldapd.cli import cluster, status

    status.add_parser(commands).set_defaults(replication_handler=status.run)  # cli/status.py
    cluster.add_parser(commands).set_defaults(replication_handler=cluster.run)  # cli/cluster.py
    return parser


def version_text() -> str:
    from pyldapd import __version__
    from pyldapd.backends.mdb import FORMAT_VERSION

    return f"pyldapd {__version__} (database format {FORMAT_VERSION})"


def check_service_options(args: argparse.Namespace) -> str | None:
    """slapd's -r, -l and -o checked before anything starts; the error text, or None."""
    if args.chroot and not args.config_file and not args.config_dir:
        # the quick start writes and reads its files beside pyldapd's own, outside any sandbox
        return "-r: a sandbox needs -f or -F (a path inside it)"
    if args.facility.lower() not in SYSLOG_FACILITIES:
        return f"-l {args.facility}: unknown syslog facility (LOCAL0..LOCAL7)"
    for option in args.options:
        name, _, value = option.partition("=")
        if name.lower() != "slp":
            return f"-o {option}: unknown option (supported: slp)"
        if value.lower() != "off":  # slapd built without SLP (Debian's) says so and starts all the same
            print("pyldapd: SLP support is not available", file=sys.stderr)
    return None


def quickstart_config(data_dir: str) -> str:
    """Write (once) a ready slapd.conf and sample data under data_dir; returns the config path."""
    data_dir = os.path.abspath(data_dir)
    os.makedirs(os.path.join(data_dir, "db"), exist_ok=True)
    conf = os.path.join(data_dir, "slapd.conf")
    if not os.path.exists(conf):
        template = resources.files("pyldapd.data").joinpath("quickstart.conf").read_text()
        text = template.replace("pidfile pyldapd.pid", f"pidfile {data_dir}/pyldapd.pid")
        text = text.replace("directory db", f"directory {data_dir}/db")
        # the rootdn's password is never stored in clear: a fresh salt for every quick-start folder
        from pyldapd.model.passwords import hash_password

        text = text.replace("\nrootpw secret\n", f"\nrootpw {hash_password(b'secret', '{SSHA}').decode()}\n")
        with open(conf, "w") as handle:
            handle.write(text)
    return conf


def load_sample_data(config: ServerConfig, log: Logger) -> None:
    """Fill an empty quick-start database with the sample entries, as the rootdn."""
    from pyldapd.model.ldif import LDIFContent, parse_ldif
    from pyldapd.protocol.ldap import AddRequest
    from pyldapd.server.app import build_schema
    from pyldapd.server.directory import Directory, Session

    schema = build_schema(config)
    directory = Directory(config, schema)
    try:
        backend = directory.backends[0]
        with backend.db.read() as txn:
            if txn.count():
                return
        session = Session(conn_id=0, bind_dn=backend.config.rootdn, bind_ndn=backend.rootdn_ndn)
        sample = resources.files("pyldapd.data").joinpath("sample.ldif").read_text()
        count = 0
        for record in parse_ldif(sample):
            if isinstance(record, LDIFContent):
                directory.add(session, AddRequest(record.dn, record.attributes), [])
                count += 1
        log.error(f"quick start: loaded {count} sample entries under {backend.config.suffix}")
    finally:
        directory.close()


def cmd_serve(args: argparse.Namespace) -> int:
    """Logging as slapd: `-d LEVEL` (non-zero) is the foreground debug mode, lines on stderr; without -d, or with
    `-d 0` (what a systemd unit runs), lines go to syslog at the config's loglevel (or -s). pyldapd never forks
    to the background (slapd does without -d): a service manager runs it, and the quick start (no -f/-F) logs on
    stderr as with -d. A `logfile` gets a copy of every line."""
    log = Logger(LOG_LEVELS["stats"])
    if args.version:
        print(version_text(), file=sys.stderr)  # slapd prints its version on stderr
        if args.version > 1:
            return 0
    problem = check_service_options(args)
    if problem:
        log.error(f"pyldapd: {problem}")
        return 1
    from pyldapd.server.service import Notifier, Service, ServiceError, open_logfile, resolve_identity

    try:
        identity = resolve_identity(args.user, args.group)
    except ServiceError as exc:
        log.error(f"pyldapd: {exc}")
        return 1
    quickstart = not args.config_file and not args.config_dir
    notifier = Notifier()  # connected now: $NOTIFY_SOCKET is outside a -r sandbox
    urls = args.urls or DEFAULT_URLS
    if quickstart and not args.urls:
        urls = f"{DEFAULT_URLS} ldapi://{os.path.abspath(args.data_dir).replace('/', '%2F')}%2Fldapi/"
    early_syslog, prebound = None, None
    if args.chroot:  # slapd's order: syslog connected, listeners bound, chroot; then the config read inside
        from pyldapd.server.listeners import parse_listener_urls
        from pyldapd.server.service import bind_sandbox_listeners, enter_sandbox, preload_for_sandbox

        try:
            debugging = bool(args.debug) and bool(parse_log_level(args.debug))
        except ValueError:
            debugging = True  # reported below, before anything runs
        if not debugging:
            early_syslog = SyslogSink(args.service_name, SYSLOG_FACILITIES[args.facility.lower()])
        try:
            preload_for_sandbox()
            prebound = bind_sandbox_listeners(parse_listener_urls(urls))
            enter_sandbox(args.chroot)
        except (ValueError, ServiceError) as exc:
            log.error(f"pyldapd: {exc}")
            return 1
    config_entries = None
    if args.config_dir:
        from pyldapd.config.cnconfig import config_from_entries, read_slapd_d

        try:
            if args.config_file:
                convert_into_empty_slapd_d(args.config_file, args.config_dir)
            config_entries = read_slapd_d(args.config_dir)
            config = config_from_entries(config_entries)
        except (OSError, ValueError) as exc:
            log.error(f"pyldapd: -F {args.config_dir}: {exc}")
            return 1
        except ConfigError as exc:
            log.error(f"pyldapd: {exc}")
            return 1
    else:
        path = quickstart_config(args.data_dir) if quickstart else args.config_file
        try:
            config = load_slapd_conf(path)
        except ConfigError as exc:
            log.error(f"pyldapd: {exc}")
            return 1
    for warning in config.warnings:
        log.error(f"warning: {warning}")
    # slapd's two levels: -d is the debug level (stderr), loglevel (or -s) the syslog level; olcLogLevel
    # changes at run time move the syslog level only (server/log.py)
    log.syslog_level = config.loglevel
    if config_entries is not None and not any(e.dn.strip().lower() == "cn=config" and e.get("olcloglevel")
                                              for e in config_entries):  # fmt: skip
        log.syslog_level = LOG_LEVELS["stats"]  # slapd's syslog level when the tree sets none (init.c)
    debug = 0
    try:
        if args.debug:
            debug = parse_log_level(args.debug)
        if args.syslog_level:
            log.syslog_level = parse_log_level(args.syslog_level)
    except ValueError as exc:
        log.error(f"pyldapd: {'-d' if args.debug and not debug else '-d/-s'}: {exc}")
        return 1
    foreground = bool(debug) or (quickstart and not args.debug)
    # the quick start (no -d) shows its loglevel on stderr in place of syslog
    log.debug_level = debug or (config.loglevel if foreground else 0)
    try:
        logfile = open_logfile(config)
    except (OSError, ServiceError) as exc:
        log.error(f"pyldapd: {exc}")
        return 1
    facility = SYSLOG_FACILITIES[args.facility.lower()]
    if not foreground:
        syslog = early_syslog or SyslogSink(args.service_name, facility)
    elif debug:  # slapd -d also sends its loglevel's lines to syslog, when there is one
        sink = SyslogSink(args.service_name, facility, fallback=False)
        syslog = sink if sink.sock is not None else None
    else:
        syslog = None
    log.configure(foreground=foreground, syslog=syslog, logfile=logfile, logfile_only=config.logfile_only)
    if notifier.problem:
        log.error(f"pyldapd: warning: {notifier.problem}")
    service = Service(identity, log, config, args.config_dir, notifier)
    if quickstart:
        load_sample_data(config, log)
    from pyldapd.server.app import run_server

    return run_server(
        config,
        urls,
        log,
        args.cookies,
        config_dir=args.config_dir,
        config_entries=config_entries,
        service=service,
        prebound=prebound,
    )


def convert_into_empty_slapd_d(config_file: str, config_dir: str) -> None:
    """As slapd given both -f and -F (OpenLDAP's test051 starts slapd so): the file's configuration converted
    into the directory, which must exist and be empty, then served from it."""
    from pyldapd.config.slapdd import convert_slapd_conf

    if not os.path.isdir(config_dir):
        raise ValueError(f"invalid config directory {config_dir}")
    if os.listdir(config_dir):
        raise ValueError(f"expected directory {config_dir} to be empty (slapd -f FILE -F DIR converts FILE)")
    convert_slapd_conf(config_file, config_dir)


def cmd_init(args: argparse.Namespace) -> int:
    """A fresh install's slapd.d (cn=config, schema, frontend, config, monitor, the data database as {2}) and the
    suffix entry in its database, as Debian's slapd package leaves them."""
    from pyldapd.config.cnconfig import entries_from_config, write_slapd_d
    from pyldapd.config.slapdd import init_config
    from pyldapd.model.passwords import hash_password
    from pyldapd.protocol.ldap import AddRequest
    from pyldapd.server.app import build_schema
    from pyldapd.server.directory import Directory, Session

    target = os.path.abspath(args.config_dir)
    if os.path.exists(os.path.join(target, "cn=config.ldif")):
        print(f"pyldapd init: {args.config_dir} already holds a configuration", file=sys.stderr)
        return 1
    data = args.directory or os.path.join(os.path.dirname(target), "db")
    os.makedirs(data, exist_ok=True)
    rootpw = hash_password(args.rootpw.encode(), "{SSHA}")
    config = init_config(args.suffix, args.rootdn, rootpw, args.db_type, data)
    write_slapd_d(target, entries_from_config(config))
    directory = Directory(config, build_schema(config))
    try:
        backend = directory.backends[0]
        rdn_attr, _, rdn_value = args.suffix.split(",", 1)[0].partition("=")
        classes = {
            "dc": [b"dcObject", b"organization"],
            "o": [b"organization"],
            "ou": [b"organizationalUnit"],
        }
        attributes = [("objectClass", classes.get(rdn_attr.strip().lower(), [b"organization", b"extensibleObject"])),
                      (rdn_attr.strip(), [rdn_value.strip().encode()])]  # fmt: skip
        if rdn_attr.strip().lower() == "dc":
            attributes.append(("o", [rdn_value.strip().encode()]))
        session = Session(conn_id=0, bind_dn=args.rootdn, bind_ndn=backend.rootdn_ndn)
        with backend.db.read() as txn:
            exists = txn.exists(backend.suffix_ndn)
        if not exists:
            directory.add(session, AddRequest(args.suffix, attributes), [])
    finally:
        directory.close()
    print(f"pyldapd init: wrote {args.config_dir} (database olcDatabase={{2}}{args.db_type} in {data})")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    try:
        config = load_slapd_conf(args.config_file)
        from pyldapd.server.app import StartupError, build_schema

        build_schema(config)
    except (ConfigError, StartupError) as exc:
        print(f"pyldapd: {exc}", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print("config file testing succeeded", file=sys.stderr)
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    return passwd_cli.run(args)


def cmd_compat_links(args: argparse.Namespace) -> int:
    from pyldapd.cli.slapd import make_links

    try:
        for path in make_links(args.directory):
            print(path)
    except OSError as exc:
        print(f"pyldapd compat-links: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "replication_handler", None) is not None:  # status, cluster
        return args.replication_handler(args)
    handlers = {
        "serve": cmd_serve,
        "init": cmd_init,
        "passwd": cmd_passwd,
        "compat-links": cmd_compat_links,
        **args.tool_handlers,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
