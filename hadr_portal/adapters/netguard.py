"""The SSRF guard: connections made on an operator's say-so (HTTP and TCP checks, webhooks) never reach the
machine's own or its cloud's internal endpoints.

- Always refused: link-local (169.254.0.0/16, fe80::/10) and cloud metadata addresses (169.254.169.254,
  fd00:ec2::254, 100.100.100.200, 192.0.0.192, 168.63.129.16 …), unspecified (0.0.0.0/8, ::), multicast,
  broadcast and reserved addresses — also when written as IPv4-mapped, 6to4, Teredo or NAT64 IPv6.
- Refused unless `allow_private` (the portal's HADR_ALLOW_PRIVATE_TARGETS): loopback (127.0.0.0/8, ::1,
  `localhost`) and every other non-public network (RFC 1918, 100.64.0.0/10, fc00::/7 …).

Checked twice. When a target is saved, `url_refusal` / `host_refusal` judge literal addresses and well-known
names without any DNS lookup. When connecting, `connect` and `http_client` resolve the name once, check every
address it resolves to (one refused address refuses the name), and connect to a checked address: a name whose
answer changes in between (DNS rebinding) still cannot reach a refused address. TLS is verified against the
name in the URL, as without the guard (SNI and the certificate's host name check are unchanged). The HTTP
client follows no redirects and uses no proxy from the environment: the guard must see the real destination.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Mapping
from socket import getaddrinfo  # looked up at call time: tests map names to addresses through it
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_SETTING = "HADR_ALLOW_PRIVATE_TARGETS"

# Instance metadata and platform endpoints of the clouds; every one of them hands out credentials or config.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Hetzner …
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure platform (wire server)
    )
)
METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


class TargetRefused(Exception):
    """A connection the guard will not make; the message names the address and why, in the operator's words."""


def address_kind(address: IPAddress) -> tuple[str, bool] | None:
    """What kind of non-public address this is, and whether it is refused even with private targets allowed;
    None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_kind(embedded)
    if address in METADATA_ADDRESSES:
        return ("link-local / cloud metadata" if address.is_link_local else "cloud metadata"), True
    if address.is_unspecified or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK):
        return "unspecified", True
    if address.is_link_local:
        return "link-local", True
    if address.is_multicast:
        return "multicast", True
    if address == _BROADCAST:
        return "broadcast", True
    if address.is_loopback:
        return "loopback", False
    if address.is_reserved:
        return "reserved", True
    if not address.is_global:
        return "private network", False
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64, IPv4-compatible), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress, *, allow_private: bool, name: str = "") -> str | None:
    """Why a connection to `address` (which `name` resolved to, if given) is refused, or None."""
    found = address_kind(address)
    if found is None or (allow_private and not found[1]):
        return None
    kind, always = found
    shown = str(address)
    if isinstance(address, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(address)) is not None:
        shown = f"{address} ({embedded})"
    article = "an" if kind[0] in "aeiou" else "a"
    said = f"{name} resolves to {shown}, {article} {kind} address" if name else f"{shown} is {article} {kind} address"
    if always:
        return f"{said}: refused"
    return f"{said}: refused (loopback and private networks are allowed only with {ALLOW_SETTING}=true)"


def host_refusal(host: str, *, allow_private: bool) -> str | None:
    """Why a target host (a name or a literal address, as written in a URL or a TCP check) is refused, or None.
    No DNS lookup: literal addresses (also legacy forms like 2130706433 or 127.1) and well-known names only; the
    connection itself checks what a name resolves to."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if not name:
        return None
    address = _literal(name)
    if address is not None:
        return address_refusal(address, allow_private=allow_private)
    if name in METADATA_NAMES:
        return f"{name} is a cloud metadata host name: refused"
    if not allow_private and (name in LOOPBACK_NAMES or name.endswith(".localhost")):
        return f"{name} is a loopback host name: refused (allowed only with {ALLOW_SETTING}=true)"
    return None


def url_refusal(url: str, *, allow_private: bool) -> str | None:
    """`host_refusal` of a URL's host; None when the URL has no host (its own validation says so)."""
    host = url_host(url)
    return host_refusal(host, allow_private=allow_private) if host else None


def userinfo_refusal(url: str, *, instead: str) -> str | None:
    """Why a URL with a user name or password in it may not be stored (it would be shown and exported with the
    catalog), ending with what to do `instead`; never repeats the credentials. None for a URL without."""
    authority = _authority(url)
    if authority is None or "@" not in authority:
        return None
    host = authority.rpartition("@")[2]
    return f"The URL carries credentials (…@{host}), which would be stored and shown with the catalog: {instead}."


def url_host(url: str) -> str | None:
    """The host of a URL (brackets of an IPv6 address removed), read without urllib: its parser refuses some
    URLs with credentials (brackets in a password) that must still be judged."""
    authority = _authority(url)
    if not authority:
        return None
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host[1:].partition("]")[0] or None
    return host.rpartition(":")[0] if host.count(":") == 1 else host or None


_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")


def _authority(url: str) -> str | None:
    match = _AUTHORITY.match(url.strip()) if isinstance(url, str) else None
    return match.group(1) if match else None


def _literal(name: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    try:  # the forms the C resolver also accepts: 127.1, 0x7f000001, 2130706433
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except (OSError, ValueError):
        return None


# --- connecting ------------------------------------------------------------------------------------


def resolve(host: str, port: int, *, allow_private: bool) -> list[tuple[int, tuple[Any, ...]]]:
    """(family, socket address) for every address `host` resolves to, once; TargetRefused if any of them is
    refused (the resolver, not the portal, would choose which one is used). Raises socket.gaierror when the name
    does not resolve."""
    name = host.strip("[]")
    literal = _literal(name.lower()) is not None
    found: list[tuple[int, tuple[Any, ...]]] = []
    for family, _, _, _, sockaddr in getaddrinfo(name, port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(sockaddr[0])
        refusal = address_refusal(address, allow_private=allow_private, name="" if literal else name)
        if refusal:
            raise TargetRefused(refusal)
        if (family, sockaddr) not in found:
            found.append((family, sockaddr))
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, f"{name} has no address")
    return found


def connect(host: str, port: int, *, timeout: float | None, allow_private: bool) -> socket.socket:
    """A TCP connection to a checked address of `host`, tried in the resolver's order (each within `timeout`)."""
    error: OSError | None = None
    for family, sockaddr in resolve(host, port, allow_private=allow_private):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    assert error is not None  # resolve() returns at least one address
    raise error


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, connecting only to checked addresses of the URL's host. TLS is started by
    httpcore on the returned stream with the URL's host as server name, exactly as without the guard."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve(host, port, allow_private=self.allow_private)
        except (TargetRefused, OSError) as exc:  # as httpx.ConnectError, whose cause says why
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for _, sockaddr in addresses:
            try:
                return super().connect_tcp(sockaddr[0], port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not an outbound target")


def http_client(
    *,
    allow_private: bool,
    timeout: float,
    verify: ssl.SSLContext | bool = True,
    headers: Mapping[str, str] | None = None,
) -> httpx.Client:
    """An httpx client whose every connection goes through the guard. Redirects are not followed (each hop
    would be checked, but a redirect is what the target said, not where the operator pointed); proxies, .netrc
    and certificate paths from the environment are not used."""
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
    transport = httpx.HTTPTransport(verify=context, trust_env=False)
    # httpx takes no network backend; its pool is the one place that opens connections
    transport._pool = httpcore.ConnectionPool(
        ssl_context=context, network_backend=GuardedBackend(allow_private=allow_private)
    )
    return httpx.Client(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False, headers=dict(headers or {})
    )
