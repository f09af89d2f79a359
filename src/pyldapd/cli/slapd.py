"""A `slapd`-compatible entry point: one program that acts by its name or its `-T` flag, as OpenLDAP's slapd does.

OpenLDAP ships slapadd, slapcat, slapindex, slapmodify, slaptest and slappasswd as links to slapd, which looks at
the name it was run under (`argv[0]`) and at `-T add|cat|index|modify|test|passwd` to pick the tool. Test suites written for slapd
(python-ldap's slapdtest among them) run `slapd -Ttest`, `slapadd -n0 -F DIR` and `slapd -F DIR -h URLS -d 0`.
This module gives pyldapd the same shape: installed as `pyldapd-slapd` (a name that cannot clash with Debian's
binaries), and under slapd's own names through links made by `pyldapd compat-links DIR`.
"""

from __future__ import annotations

import os
import shutil
import sys

# slapd's tool names (slapd's own table: the name after "slap" is the -T value)
TOOLS = {"add": "add", "cat": "cat", "index": "index", "modify": "modify", "test": "test", "passwd": "passwd"}
# slapd's other tools, which pyldapd does not have: refused by name rather than run as a server
MISSING_TOOLS = ("acl", "auth", "dn", "schema")
LINK_NAMES = ("slapd", "slapadd", "slapcat", "slapindex", "slapmodify", "slaptest", "slappasswd")
DISPATCHER = "pyldapd-slapd"


def tool_of(argv0: str, args: list[str]) -> tuple[str | None, list[str]]:
    """(tool or None for the server, remaining args) from the program name and a leading or embedded -T."""
    name = os.path.basename(argv0)
    if name.startswith("slap") and name != "slapd":
        return name[4:], args
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        # the first -T names the tool; what follows is the tool's own (slappasswd's `-T file`, as test043 runs it)
        if arg == "-T" and i + 1 < len(args):
            return resolve_tool(args[i + 1]), rest + args[i + 2 :]
        if arg.startswith("-T") and len(arg) > 2:
            return resolve_tool(arg[2:]), rest + args[i + 1 :]
        rest.append(arg)
        i += 1
    return None, rest


# slapd's table of tools, in its order: `-T` takes a tool's full name after "slap", else the first tool whose name
# starts with what was given (`-Ta` is slapadd, `-Tc` slapcat, `-Tp` slappasswd), as OpenLDAP's test scripts run them
TOOL_ORDER = ("add", "cat", "dn", "index", "modify", "passwd", "schema", "test", "auth", "acl")


def resolve_tool(tool: str) -> str:
    if tool in TOOL_ORDER or not tool:
        return tool
    return next((name for name in TOOL_ORDER if name.startswith(tool)), tool)


def server_args(args: list[str]) -> list[str]:
    """slapd's server flags as `pyldapd serve` takes them. `-d` with a level keeps slapd in the foreground, which
    pyldapd always is; slapd's remaining flags (user, group, chroot, syslog) are refused by `serve` by name."""
    return ["serve", *args]


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    from pyldapd.cli.main import main as pyldapd_main

    argv0 = prog or sys.argv[0]
    args = list(sys.argv[1:] if argv is None else argv)
    tool, rest = tool_of(argv0, args)
    if tool is None:
        return pyldapd_main(server_args(rest))
    if tool in MISSING_TOOLS:
        print(f"slap{tool}: not provided by pyldapd", file=sys.stderr)
        return 1
    if tool not in TOOLS:
        print(f'program name "slap{tool}" unrecognized; aborting...', file=sys.stderr)  # slapd's words
        return 1
    return pyldapd_main([TOOLS[tool], *rest])


def dispatcher_path() -> str | None:
    """The installed `pyldapd-slapd` script: beside the running `pyldapd`, beside the interpreter, or on PATH."""
    for folder in (os.path.dirname(os.path.abspath(sys.argv[0])), os.path.dirname(sys.executable)):
        candidate = os.path.join(folder, DISPATCHER)
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(DISPATCHER)


def make_links(directory: str, target: str | None = None) -> list[str]:
    """Links named slapd, slapadd, ... in `directory` to the dispatcher (existing links of those names are
    replaced; any other file of those names is left alone and reported)."""
    target = target or dispatcher_path()
    if target is None:
        raise FileNotFoundError(f"{DISPATCHER} is not installed (pip install pyldapd provides it)")
    os.makedirs(directory, exist_ok=True)
    made = []
    for name in LINK_NAMES:
        path = os.path.join(directory, name)
        if os.path.lexists(path):
            if not os.path.islink(path):
                raise FileExistsError(f"{path} exists and is not a link: not replaced")
            os.unlink(path)
        os.symlink(target, path)
        made.append(path)
    return made


if __name__ == "__main__":
    sys.exit(main())
