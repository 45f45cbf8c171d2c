"""Sending one webhook request safely: the SSRF guard, Standard Webhooks signatures, and a
POST pinned to the address that passed the guard (no DNS rebinding, no redirects)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import secrets
import socket
import ssl
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
RESPONSE_READ_LIMIT = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = "Pollbox-Webhooks/1"
# IPv6 ranges refused whatever IPv4 address they carry: IPv4-compatible (deprecated, RFC
# 4291), Teredo (its client sits behind a NAT; not globally routable, RFC 4380), 6to4
# (deprecated, RFC 7526; newer Pythons call it non-global too) and NAT64 local-use
# (RFC 8215: no fixed place for the IPv4 address to be judged).
REFUSED_IPV6 = tuple(ipaddress.IPv6Network(network) for network in (
    "::/96", "2001::/32", "2002::/16", "64:ff9b:1::/48",
))
# The NAT64 well-known prefix (RFC 6052) reaches the IPv4 address in its last 32 bits,
# as IPv4-mapped addresses do: both are judged as that address alone (DNS64 networks).
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
# ISATAP interface identifiers (RFC 5214): `0:5efe` or `200:5efe`, then an IPv4 address.
ISATAP_MARKERS = (0x00005EFE, 0x02005EFE)
IPV4_BITS = 32
IPV4_MASK = (1 << IPV4_BITS) - 1


class UnsafeUrl(ValueError):
    """The URL may not receive webhooks (scheme, port, or an address that is not public)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def parse_url(url: str, *, allow_private: bool, allowed_ports: Collection[int]) -> Target:
    """Split a webhook URL, refusing any scheme but https, and ports not allowed (both
    relaxed when private addresses are allowed)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeUrl(f"Not a valid URL: {error}.") from None
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise UnsafeUrl("The URL must use https.")
    if not parts.hostname:
        raise UnsafeUrl("The URL needs a host.")
    if parts.username or parts.password:
        raise UnsafeUrl("The URL may not carry credentials; use the signature instead.")
    port = DEFAULT_PORTS[parts.scheme] if port is None else port
    if not allow_private and port not in allowed_ports:
        # A public host's other ports are often admin or database services (SSRF).
        ports = ", ".join(map(str, sorted(allowed_ports)))
        raise UnsafeUrl(f"The URL's port must be one of: {ports}.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path)


def is_public(address: str) -> bool:
    """Whether the address is a public unicast one (not loopback, private, link-local,
    multicast, reserved, shared or unspecified), with any IPv4 address it carries."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _is_public_unicast(ip)
    if ip.ipv4_mapped is not None or ip in NAT64_WELL_KNOWN:
        return _is_public_unicast(_last_ipv4(ip))  # reached as that IPv4 address
    if any(ip in network for network in REFUSED_IPV6):
        return False  # 6to4 and Teredo among them: no need to judge what they carry
    isatap = _isatap_ipv4(ip)
    return _is_public_unicast(ip) and (isatap is None or _is_public_unicast(isatap))


def _is_public_unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified
    )


def _last_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & IPV4_MASK)


def _isatap_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 tunnel end of an ISATAP address, whatever its prefix."""
    if (int(ip) >> IPV4_BITS) & IPV4_MASK in ISATAP_MARKERS:
        return _last_ipv4(ip)
    return None


def resolve(target: Target, *, allow_private: bool) -> list[str]:
    """The host's addresses, all of them public unless private ones are allowed."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeUrl(f"The host {target.host!r} cannot be resolved ({error}).") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        refused = [address for address in addresses if not is_public(address)]
        if refused:
            # Any non-public answer refuses the host: a rebinding name could pick either.
            raise UnsafeUrl(f"The host resolves to a non-public address ({refused[0]}).")
    if not addresses:
        raise UnsafeUrl(f"The host {target.host!r} has no address.")
    return addresses


def check_url(url: str, *, allow_private: bool, allowed_ports: Collection[int]) -> Target:
    """Refuse a URL that may not receive webhooks (creation time and delivery time)."""
    target = parse_url(url, allow_private=allow_private, allowed_ports=allowed_ports)
    resolve(target, allow_private=allow_private)
    return target


def post(url: str, body: bytes, headers: dict[str, str], *, allow_private: bool,
         allowed_ports: Collection[int], timeout: float) -> int:
    """POST the body to the URL, connected to an address that passed the guard; return
    the response status. Raises UnsafeUrl, OSError or http.client.HTTPException."""
    target = parse_url(url, allow_private=allow_private, allowed_ports=allowed_ports)
    address = resolve(target, allow_private=allow_private)[0]
    if target.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)

    def pinned(_address, timeout_, source_address=None):
        # TLS still checks the certificate against the host name (server_hostname).
        return socket.create_connection((address, target.port), timeout_, source_address)

    connection._create_connection = pinned
    try:
        connection.request("POST", target.path, body=body, headers={
            "Content-Type": "application/json", "User-Agent": USER_AGENT, **headers,
        })
        response = connection.getresponse()
        response.read(RESPONSE_READ_LIMIT)
        return response.status
    finally:
        connection.close()
