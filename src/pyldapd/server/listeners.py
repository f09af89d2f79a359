"""Listener URLs as slapd's -h takes them: ldap://host:port/, ldaps://..., ldapi://%2Fpath%2Fto%2Fsocket/,
and pyldapd's http://host:port/ for metrics and health checks (server/metrics.py)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

DEFAULT_LDAPI_PATH = "/var/run/slapd/ldapi"  # where Debian's libldap looks for ldapi:///


@dataclass(frozen=True)
class ListenerURL:
    scheme: str  # ldap, ldaps, ldapi, http
    host: str
    port: int
    path: str  # ldapi socket path
    text: str

    @property
    def is_local(self) -> bool:
        return self.scheme == "ldapi"


def parse_listener_url(text: str) -> ListenerURL:
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("ldap", "ldaps", "ldapi", "http"):
        raise ValueError(f"invalid listener URL {text!r} (expected ldap://, ldaps://, ldapi:// or http://)")
    hostport = rest.split("/", 1)[0]
    if scheme == "ldapi":
        path = unquote(hostport) if hostport else DEFAULT_LDAPI_PATH
        return ListenerURL(scheme, "", 0, path, text)
    if scheme == "http" and rest.split("/", 1)[1:] not in ([], [""]):
        raise ValueError(f"invalid listener URL {text!r}: the metrics listener takes no path")
    default_port = {"ldaps": 636, "http": 80}.get(scheme, 389)
    host, port = hostport, default_port
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError(f"invalid listener URL {text!r}: unbalanced [")
        host = hostport[1:end]
        if hostport[end + 1 : end + 2] == ":":
            port = parse_port(hostport[end + 2 :], text)
    elif ":" in hostport:
        host, _, port_text = hostport.rpartition(":")
        port = parse_port(port_text, text)
    return ListenerURL(scheme, host, port, "", text)


def parse_port(text: str, url: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"invalid port in listener URL {url!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"invalid port in listener URL {url!r}")
    return port


def parse_listener_urls(text: str) -> list[ListenerURL]:
    return [parse_listener_url(word) for word in text.split()]
