"""`pyldapd status`: the replication state of a set of servers, and whether their content agrees.

For each server: its server ID (pyldapd's cn=Monitor, else the config's `serverID N URL` lines, else n/a), its
contextCSN (one CSN per server ID), how far it lags behind the most advanced server (per server ID: the time of
the newest CSN any server has for that ID minus the time of this server's), and the state of each of its syncrepl
consumers (cn=Syncrepl,cn=Monitor; n/a for servers without pyldapd's monitor, such as slapd).

Convergence: every server's (entryUUID, entryCSN) pairs are read (a paged search with ManageDsaIT, so glue
entries count too), grouped by subtree (each child of the suffix, and the suffix entry itself), and each group is
digested (SHA-256 of the sorted pairs). Where a digest differs, the entries that differ are listed: DN, and the
entryCSN on each server or `missing`.

Exit code: 0 when every server answered and all contextCSNs and digests agree; 1 otherwise; 2 on usage errors.
`--wait S` polls (every half second) until they agree or S seconds have passed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from pyldapd.model.csn import parse_csn
from pyldapd.model.dn import DNError, normalize_dn, split_rdn
from pyldapd.model.filter import parse_filter
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ldap import Control

MONITOR_DN = "cn=Monitor"
PAGE = 500


def add_parser(commands) -> argparse.ArgumentParser:
    status = commands.add_parser("status", help="replication state and convergence of several servers",
                                 add_help=False)  # fmt: skip
    status.add_argument("--help", action="help", help="show this help and exit")
    status.add_argument("urls", nargs="*", metavar="URL", help="servers (ldap://, ldaps://, ldapi://)")
    status.add_argument(
        "-f", dest="config_file", help="slapd.conf: the server and its syncrepl/serverID peers"
    )
    status.add_argument("-F", dest="config_dir", help="slapd.d directory (as -f)")
    status.add_argument("-h", dest="config_url", help="with -f: this server's own URL, if not in serverID")
    status.add_argument("-D", dest="binddn", default="", help="bind DN (simple bind)")
    status.add_argument("-w", dest="password", default="", help="bind password")
    status.add_argument("-Y", dest="mech", default="", help="SASL mechanism: EXTERNAL")
    status.add_argument(
        "--base", default="", help="the replicated suffix (default: the first naming context)"
    )
    status.add_argument("--json", action="store_true", help="print one JSON document")
    status.add_argument("--timeout", type=float, default=10.0, help="per-server network timeout (seconds)")
    status.add_argument("--wait", type=float, default=0.0, help="poll up to this many seconds for agreement")
    status.add_argument(
        "--conflicts",
        action="store_true",
        help="list each server's journal of replication conflicts (cn=Conflicts in cn=Monitor)",
    )
    status.add_argument(
        "--state",
        metavar="FILE",
        default="",
        help="remember each server's lag in FILE, to show a server that is down with its last known lag",
    )
    return status


@dataclass
class Target:
    url: str
    binddn: str = ""
    password: str = ""
    mech: str = ""
    server_id: int | None = None  # from a config's serverID lines


@dataclass
class NodeState:
    url: str
    error: str = ""
    vendor: str = ""
    server_id: int | None = None
    base: str = ""
    context: dict[int, str] = field(default_factory=dict)
    # a cn=Monitor with consumer states was readable (pyldapd's, or slapd's back-monitor)
    monitor: bool = False
    consumers: list[dict[str, Any]] = field(default_factory=list)
    conflicts_total: int | None = None  # None: the server keeps no conflict journal (slapd)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    last_seen: dict[str, Any] | None = None  # for a server that is down: what --state FILE remembers of it
    entries: dict[str, tuple[str, str]] = field(default_factory=dict)  # entryUUID -> (dn, entryCSN)


class Failure(Exception):
    pass


# -- reading one server -------------------------------------------------------------------------------------


async def search(client, base: str, scope: int, filter_text: str, attrs: list[str], timeout: float,
                 controls: list[Control] | None = None):  # fmt: skip
    """All entries of one search (paged, 500 at a time, when `controls` asks for it); (code, entries)."""
    entries: list[ldap.SearchResultEntry] = []
    cookie = b""
    while True:
        request = ldap.SearchRequest(base, scope, 0, 0, 0, False, parse_filter(filter_text), attrs)
        sent = list(controls or [])
        paged = any(c.oid == ctl.PAGED_RESULTS for c in sent)
        if paged:
            sent = [c for c in sent if c.oid != ctl.PAGED_RESULTS]
            sent.append(Control(ctl.PAGED_RESULTS, False,
                                ctl.encode_paged_results(ctl.PagedResults(PAGE, cookie))))  # fmt: skip
        done = None
        async for message in client.search(request, sent, timeout=timeout):
            if isinstance(message.op, ldap.SearchResultEntry):
                entries.append(message.op)
            elif isinstance(message.op, ldap.SearchResultDone):
                done = message
        if done is None:
            raise Failure("search ended without a result")
        if done.op.result_code != 0:
            return done.op.result_code, entries
        response = ctl.find_control(done.controls, ctl.PAGED_RESULTS) if paged else None
        if response is None:
            return 0, entries
        cookie = ctl.decode_paged_results(response.value).cookie
        if not cookie:
            return 0, entries


def values(entry: ldap.SearchResultEntry, name: str) -> list[str]:
    name = name.lower()
    out: list[str] = []
    for attr, vals in entry.attributes:
        if attr.split(";", 1)[0].lower() == name:
            out += [v.decode("utf-8", "replace") for v in vals]
    return out


def first(entry: ldap.SearchResultEntry, name: str, default: str = "") -> str:
    found = values(entry, name)
    return found[0] if found else default


async def read_node(target: Target, base: str, timeout: float) -> NodeState:
    from pyldapd.replication.client import ClientError, LDAPClient

    state = NodeState(target.url, server_id=target.server_id)
    client = None
    try:
        client = await LDAPClient.connect(target.url, timeout=timeout, tls={"tls_reqcert": "never"})
        if target.mech:
            await client.bind("sasl", mechanism=target.mech, timeout=timeout)
        elif target.binddn:
            await client.bind("simple", target.binddn, target.password, timeout=timeout)
        code, found = await search(client, "", 0, "(objectClass=*)", ["+"], timeout)
        root = found[0] if found else None
        if root is not None:
            name, version = first(root, "vendorName"), first(root, "vendorVersion")
            state.vendor = (
                version if version.lower().startswith(name.lower()) else f"{name} {version}".strip()
            )
        state.base = base or (first(root, "namingContexts") if root is not None else "")
        if not state.base:
            raise Failure("no --base given and the server publishes no naming context")
        code, found = await search(client, state.base, 0, "(objectClass=*)", ["contextCSN"], timeout)
        if code != 0:
            raise Failure(f"{state.base}: result code {code}")
        for csn in values(found[0], "contextCSN") if found else []:
            try:
                state.context[parse_csn(csn).sid] = csn
            except ValueError:
                pass
        code, found = await search(client, MONITOR_DN, 2, "(objectClass=*)", ["*", "+"], timeout)
        if code == 0:
            read_monitor(state, found)
        manage = [Control(ctl.MANAGE_DSA_IT, False, None), Control(ctl.PAGED_RESULTS, False, b"")]
        code, found = await search(client, state.base, 2, "(objectClass=*)", ["entryUUID", "entryCSN"], timeout,
                                   manage)  # fmt: skip
        if code != 0:
            raise Failure(f"content of {state.base}: result code {code}")
        for entry in found:
            key = first(entry, "entryUUID").lower() or "dn:" + entry.dn.lower()
            state.entries[key] = (entry.dn, first(entry, "entryCSN"))
    except (OSError, TimeoutError, ClientError, Failure, ldap.BERError, ValueError) as exc:
        state.error = str(exc) or type(exc).__name__
    finally:
        if client is not None:
            client.close()
    return state


def read_monitor(state: NodeState, found: list[ldap.SearchResultEntry]) -> None:
    """Server ID, consumers and conflict journal from a cn=Monitor tree: pyldapd's own attributes, or those of
    slapd's back-monitor (2.5 and later publish one olmSyncReplInstance entry per consumer, under its database:
    olmSRProviderURIList, olmSRSyncPhase, olmSRLastContact, olmSRLastCookieRcvd/Sent, ...)."""
    sid_from_cookie: int | None = None
    olm_consumers: list[dict] = []  # slapd's entries; pyldapd publishes both kinds, and its own say more
    for entry in found:
        classes = {c.lower() for c in values(entry, "objectClass")}
        if entry.dn.lower() == MONITOR_DN.lower() and not state.vendor and first(entry, "monitoredInfo"):
            # slapd's root DSE names no vendor; its monitor does: "OpenLDAP: slapd 2.5.13+dfsg-5 (...)"
            state.vendor = first(entry, "monitoredInfo").replace(": ", " ", 1).split(" (", 1)[0].strip()
        if entry.dn.lower() == MONITOR_DN.lower() and first(entry, "pyldapdServerID"):
            state.monitor = True
            state.server_id = int(first(entry, "pyldapdServerID"))
        elif first(entry, "pyldapdSyncRid") and first(entry, "pyldapdSyncState"):
            state.monitor = True
            state.consumers.append({
                "rid": int(first(entry, "pyldapdSyncRid")), "provider": first(entry, "labeledURI"),
                "searchbase": first(entry, "namingContexts"), "state": first(entry, "pyldapdSyncState"),
                "last_error": first(entry, "pyldapdLastError"),
                "conflicts": int(first(entry, "pyldapdConflicts", "0")),
            })  # fmt: skip
        elif "olmsyncreplinstance" in classes or first(entry, "olmSRSyncPhase"):
            state.monitor = True
            name = first(entry, "cn")  # "Consumer 001": slapd names the entry after the rid
            digits = "".join(ch for ch in name if ch.isdigit())
            sent = first(entry, "olmSRLastCookieSent")
            cookie_sid = cookie_field(sent, "sid")
            if cookie_sid is not None:
                sid_from_cookie = cookie_sid
            olm_consumers.append({
                "rid": int(digits) if digits else 0,
                "provider": " ".join(values(entry, "olmSRProviderURIList")),
                "searchbase": "", "state": first(entry, "olmSRSyncPhase").lower(),
                "last_error": first(entry, "olmSRLastError"),  # not in 2.5; harmless when absent
                "conflicts": None,
                "last_contact": first(entry, "olmSRLastContact"),
                "last_cookie": first(entry, "olmSRLastCookieRcvd"),
            })  # fmt: skip
        elif first(entry, "pyldapdConflictKind"):
            state.conflicts.append({
                "number": int("0" + "".join(ch for ch in first(entry, "cn") if ch.isdigit())),
                "kind": first(entry, "pyldapdConflictKind"), "dn": first(entry, "pyldapdConflictDN"),
                "winner_csn": first(entry, "pyldapdWinnerCSN"), "loser_csn": first(entry, "pyldapdLoserCSN"),
                "winner_sid": int(first(entry, "pyldapdWinnerServerID", "-1")),
                "loser_sid": int(first(entry, "pyldapdLoserServerID", "-1")),
                "rid": int(first(entry, "pyldapdSyncRid", "0")), "time": first(entry, "createTimestamp"),
                "resolution": first(entry, "description"),
            })  # fmt: skip
        elif entry.dn.lower().startswith("cn=conflicts,") and first(entry, "monitorCounter"):
            state.conflicts_total = (state.conflicts_total or 0) + int(first(entry, "monitorCounter"))
    if not state.consumers:
        state.consumers = olm_consumers
    for conflict in state.conflicts:
        for key in ("winner_sid", "loser_sid"):
            if conflict[key] < 0:
                conflict[key] = None
    if state.conflicts and state.conflicts_total is None:
        state.conflicts_total = len(state.conflicts)
    state.conflicts.sort(key=lambda c: (c["time"], c["number"]))
    state.consumers.sort(key=lambda c: c["rid"])
    if state.server_id is None and sid_from_cookie is not None:
        # a multi-provider slapd consumer sends its own server ID in its cookie (rid=001,sid=002,...)
        state.server_id = sid_from_cookie


def cookie_field(cookie: str, name: str) -> int | None:
    for part in cookie.split(","):
        key, _, value = part.partition("=")
        if key.strip() == name:
            try:
                return int(value.strip(), 16 if name == "sid" else 10)
            except ValueError:
                return None
    return None


# -- comparing ----------------------------------------------------------------------------------------------


def subtree_of(dn: str, base_ndn: str, schema) -> str:
    """The DN of the child of the suffix an entry is in (as the entry's DN writes it); "" for the suffix."""
    try:
        if normalize_dn(dn, schema) == base_ndn:
            return ""
        current = dn
        while True:
            _, parent = split_rdn(current)
            if not parent:
                return dn  # not under the suffix at all
            if normalize_dn(parent, schema) == base_ndn:
                return current
            current = parent
    except (DNError, ValueError):
        return dn


def csn_seconds(csn: str) -> float:
    return parse_csn(csn).time_us / 1_000_000


def compare(nodes: list[NodeState], base: str) -> dict[str, Any]:
    from pyldapd.model.schema import Schema

    schema = Schema.default()
    base_ndn = normalize_dn(base, schema) if base else ""
    live = [n for n in nodes if not n.error]
    newest: dict[int, str] = {}
    for node in live:
        for sid, csn in node.context.items():
            if csn > newest.get(sid, ""):
                newest[sid] = csn
    lag: dict[str, Any] = {}
    for node in live:
        per_sid: dict[str, float | None] = {}
        for sid, csn in sorted(newest.items()):
            own = node.context.get(sid)
            per_sid[f"{sid:03x}"] = None if own is None else round(csn_seconds(csn) - csn_seconds(own), 6)
        lag[node.url] = per_sid
    groups: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for node in live:
        for key, (dn, csn) in node.entries.items():
            groups.setdefault(subtree_of(dn, base_ndn, schema), {}).setdefault(node.url, []).append(
                (key, csn)
            )
    subtrees = []
    differing_keys: set[str] = set()
    for name in sorted(groups):
        digests = {}
        for node in live:
            pairs = sorted(groups[name].get(node.url, []))
            text = "\n".join(f"{k} {c}" for k, c in pairs)
            digests[node.url] = hashlib.sha256(text.encode()).hexdigest()[:16]
        agree = len(set(digests.values())) == 1
        subtrees.append({"subtree": name or "(suffix entry)", "digests": digests, "agree": agree,
                         "entries": {u: len(groups[name].get(u, [])) for u in digests}})  # fmt: skip
        if not agree:
            for node in live:
                differing_keys.update(k for k, _ in groups[name].get(node.url, []))
    differences = []
    for key in sorted(differing_keys):
        seen = {n.url: n.entries.get(key) for n in live}
        csns = {url: (e[1] if e else None) for url, e in seen.items()}
        if len(set(csns.values())) == 1:
            continue
        dns = sorted({e[0] for e in seen.values() if e})
        differences.append({"dn": dns[0] if dns else key, "entryUUID": key, "entryCSN": csns,
                            "dns": dns if len(dns) > 1 else None})  # fmt: skip
    differences.sort(key=lambda d: d["dn"].lower())
    contexts_agree = len({tuple(sorted(n.context.items())) for n in live}) <= 1
    # a server that is down: how old is the newest change of its server ID that the others hold (no state needed)
    down: dict[str, Any] = {}
    overall = max(newest.values(), default="")
    for node in nodes:
        if node.error and node.server_id is not None and node.server_id in newest and overall:
            csn = newest[node.server_id]
            down[node.url] = {"server_id": node.server_id, "csn": csn,
                              "behind": round(csn_seconds(overall) - csn_seconds(csn), 6)}  # fmt: skip
    agree = (not [n for n in nodes if n.error] and contexts_agree and all(s["agree"] for s in subtrees)
             and not differences)  # fmt: skip
    return {"newest": {f"{s:03x}": c for s, c in sorted(newest.items())}, "lag": lag, "subtrees": subtrees,
            "differences": differences, "contexts_agree": contexts_agree, "agree": agree,
            "down": down}  # fmt: skip


# -- output -------------------------------------------------------------------------------------------------


def report(nodes: list[NodeState], result: dict[str, Any]) -> dict[str, Any]:
    return {
        "agree": result["agree"],
        "servers": [
            {
                "url": n.url,
                "error": n.error or None,
                "vendor": n.vendor,
                "server_id": n.server_id,
                "base": n.base,
                "contextCSN": {f"{s:03x}": c for s, c in sorted(n.context.items())},
                "lag": result["lag"].get(n.url),
                "consumers": n.consumers if n.monitor else None,
                "entries": len(n.entries),
                "conflicts_total": n.conflicts_total,
                "conflicts": n.conflicts if n.conflicts_total is not None else None,
                "last_seen": n.last_seen,
                "last_change_seen_by_others": result.get("down", {}).get(n.url),
            }
            for n in nodes
        ],  # fmt: skip
        "newest": result["newest"],
        "contexts_agree": result["contexts_agree"],
        "subtrees": result["subtrees"],
        "differences": result["differences"],
    }


def conflict_line(c: dict[str, Any]) -> str:
    def side(csn: str, sid: int | None) -> str:
        return f"{csn or 'unknown'}" + (f" (sid {sid:03x})" if sid is not None else "")

    return (f"#{c['number']} {c['time']} {c['kind']} {c['dn']}: winner {side(c['winner_csn'], c['winner_sid'])}, "
            f"loser {side(c['loser_csn'], c['loser_sid'])}: {c['resolution']}")  # fmt: skip


def print_down(node: NodeState, result: dict[str, Any], out) -> None:
    """What is known of a server that did not answer: its last state from --state, and the others' view."""
    if node.last_seen:
        lag = node.last_seen.get("lag")
        text = "n/a" if lag is None else f"{lag:.3f} s"
        print(f"  last seen {node.last_seen.get('time', '?')}: lag {text}, contextCSN "
              f"{' '.join(node.last_seen.get('contextCSN', {}).values()) or '(none)'}", file=out)  # fmt: skip
    seen = result.get("down", {}).get(node.url)
    if seen:
        print(f"  newest change from server ID {seen['server_id']:03x} held by the others: {seen['csn']} "
              f"({seen['behind']:.3f} s before the newest change of the cluster)", file=out)  # fmt: skip


def print_text(nodes: list[NodeState], result: dict[str, Any], out, show_conflicts: bool = False) -> None:
    for node in nodes:
        sid = "n/a" if node.server_id is None else str(node.server_id)
        print(f"server {node.url}", file=out)
        if node.error:
            print(f"  UNREACHABLE: {node.error}", file=out)
            print_down(node, result, out)
            continue
        print(f"  serverID {sid}  {node.vendor}  {len(node.entries)} entries under {node.base}", file=out)
        lags = result["lag"].get(node.url, {})
        if not node.context:
            print("  contextCSN: (none)", file=out)
        for key in result["newest"]:
            own = node.context.get(int(key, 16))
            behind = lags.get(key)
            text = "missing" if behind is None else ("up to date" if behind == 0 else f"lag {behind:.3f} s")
            print(f"  contextCSN sid {key}: {own or '-'}  {text}", file=out)
        worst = list(lags.values())
        overall = "n/a" if not worst else ("missing sids" if None in worst else f"{max(worst):.3f} s")
        print(f"  lag behind the most advanced server: {overall}", file=out)
        if not node.monitor:
            print("  syncrepl: n/a (cn=Monitor not readable: slapd needs `database monitor`)", file=out)
        elif not node.consumers:
            print("  syncrepl: no consumers", file=out)
        for c in node.consumers:
            error = f"  (last error: {c['last_error']})" if c["last_error"] else ""
            if c["conflicts"] is None:  # slapd: phase, last contact and cookie from its back-monitor
                contact = f" last contact {c['last_contact']}" if c.get("last_contact") else ""
                cookie = f" cookie {c['last_cookie']}" if c.get("last_cookie") else ""
                print(
                    f"  syncrepl rid={c['rid']:03d} {c['provider']} {c['state']}{contact}{cookie}{error}",
                    file=out,
                )
            else:
                print(f"  syncrepl rid={c['rid']:03d} {c['provider']} {c['state']} conflicts={c['conflicts']}{error}",
                      file=out)  # fmt: skip
        if node.conflicts_total is None:
            if node.monitor:
                print("  conflicts: not counted (no conflict journal in its cn=Monitor)", file=out)
        else:
            kept = f", the last {len(node.conflicts)} listed" if show_conflicts and node.conflicts else ""
            print(f"  conflicts: {node.conflicts_total} recorded since start{kept}", file=out)
            for c in node.conflicts if show_conflicts else []:
                print("    " + conflict_line(c), file=out)
    print("convergence (digest of entryUUID and entryCSN per subtree):", file=out)
    for subtree in result["subtrees"]:
        digests = subtree["digests"]
        if subtree["agree"]:
            some = next(iter(digests.values()), "")
            count = next(iter(subtree["entries"].values()), 0)
            print(f"  {subtree['subtree']}: {count} entries, digest {some}  agree", file=out)
        else:
            shown = ", ".join(f"{u} {d} ({subtree['entries'][u]})" for u, d in digests.items())
            print(f"  {subtree['subtree']}: DIFFER  {shown}", file=out)
    if not result["contexts_agree"]:
        print("  contextCSN differs between servers", file=out)
    if result["differences"]:
        print("entries that differ:", file=out)
        for diff in result["differences"]:
            where = ", ".join(f"{url} {csn or 'missing'}" for url, csn in diff["entryCSN"].items())
            print(f"  {diff['dn']}: {where}", file=out)
    unreachable = [n.url for n in nodes if n.error]
    if result["agree"]:
        print(f"all {len(nodes)} servers agree", file=out)
    elif unreachable:
        print(f"NOT CONVERGED ({len(unreachable)} unreachable)", file=out)
    else:
        print("NOT CONVERGED", file=out)


# -- targets and the command --------------------------------------------------------------------------------


def targets_from_args(args: argparse.Namespace) -> tuple[list[Target], str]:
    """The URLs given, plus those of a config (serverID URLs, syncrepl providers, -h); and the suffix."""
    targets: list[Target] = []
    base = args.base
    seen: set[str] = set()

    def add(url: str, **kw) -> None:
        key = url.lower().rstrip("/")
        if key in seen:
            for t in targets:
                if t.url.lower().rstrip("/") == key and kw.get("server_id") is not None:
                    t.server_id = kw["server_id"]
            return
        seen.add(key)
        targets.append(Target(url, **kw))

    for url in args.urls:
        add(url, binddn=args.binddn, password=args.password, mech=args.mech)
    if args.config_file or args.config_dir:
        config = load_config(args)
        ids = {url.lower().rstrip("/"): sid for sid, url in config.server_ids if url}
        binddn, password, mech = args.binddn, args.password, args.mech
        from pyldapd.replication.spec import parse_syncrepl

        dbs = config.data_databases()
        if dbs and not base:
            base = dbs[0].suffix
        specs = [parse_syncrepl(text) for db in dbs for text in db.syncrepl]
        if not (binddn or mech) and specs:  # the consumer's own credentials, already in the config
            spec = specs[0]
            if spec.bindmethod == "sasl":
                mech = spec.saslmech
            else:
                binddn, password = spec.binddn, spec.credentials
        own = [args.config_url] if args.config_url else []
        urls = own + [url for _, url in config.server_ids if url] + [s.provider for s in specs]
        for url in urls:
            add(url, binddn=binddn, password=password, mech=mech, server_id=ids.get(url.lower().rstrip("/")))
    return targets, base


def load_config(args: argparse.Namespace):
    if args.config_file:
        from pyldapd.config.slapdconf import load_slapd_conf

        return load_slapd_conf(args.config_file)
    try:  # slapd.d, when this version has a reader for it
        from pyldapd.config import slapdd  # type: ignore[attr-defined]
    except ImportError:
        raise SystemExit("pyldapd status: -F (slapd.d) is not supported by this version; use -f") from None
    return slapdd.load_slapd_d(args.config_dir)


async def gather(targets: list[Target], base: str, timeout: float) -> list[NodeState]:
    return list(await asyncio.gather(*(read_node(t, base, timeout) for t in targets)))


def run(args: argparse.Namespace, out=None) -> int:
    out = out or sys.stdout
    try:
        targets, base = targets_from_args(args)
    except Exception as exc:  # a config error, a bad syncrepl line
        print(f"pyldapd status: {exc}", file=sys.stderr)
        return 2
    if not targets:
        print("pyldapd status: give server URLs, or -f slapd.conf", file=sys.stderr)
        return 2
    deadline = time.monotonic() + max(args.wait, 0.0)
    while True:
        nodes = asyncio.run(gather(targets, base, args.timeout))
        if args.state:
            recall(args.state, nodes)
        common = base or next((n.base for n in nodes if n.base), "")
        result = compare(nodes, common)
        if result["agree"] or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if args.state:
        remember(args.state, nodes, result)
    if args.json:
        json.dump(report(nodes, result), out, indent=2)
        out.write("\n")
    else:
        print_text(nodes, result, out, show_conflicts=args.conflicts)
    return 0 if result["agree"] else 1


# -- the state file (--state): a server that is down is shown with its last known lag --------------------------


def load_state(path: str) -> dict[str, Any]:
    try:
        with open(path) as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def recall(path: str, nodes: list[NodeState]) -> None:
    known = load_state(path)
    for node in nodes:
        seen = known.get(node.url)
        if node.error and isinstance(seen, dict):
            node.last_seen = seen
            if node.server_id is None and isinstance(seen.get("server_id"), int):
                node.server_id = seen["server_id"]


def remember(path: str, nodes: list[NodeState], result: dict[str, Any]) -> None:
    """Each answering server's lag and state, written atomically; servers that are down keep their entry."""
    known = load_state(path)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for node in nodes:
        if node.error:
            continue
        lags = [v for v in (result["lag"].get(node.url) or {}).values() if v is not None]
        known[node.url] = {"time": now, "server_id": node.server_id, "lag": max(lags) if lags else None,
                           "contextCSN": {f"{s:03x}": c for s, c in sorted(node.context.items())}}  # fmt: skip
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        with open(temporary, "w") as handle:
            json.dump(known, handle, indent=2)
        os.replace(temporary, path)
    except OSError as exc:
        print(f"pyldapd status: cannot write {path}: {exc}", file=sys.stderr)
