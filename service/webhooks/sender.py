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
from dataclasses import dataclass
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
RESPONSE_READ_LIMIT = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = "Pollbox-Webhooks/1"


class UnsafeUrl(ValueError):
    """The URL may not receive webhooks (scheme, or an address that is not public)."""


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


def parse_url(url: str, *, allow_private: bool) -> Target:
    """Split a webhook URL, refusing schemes other than https (http only when allowed)."""
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
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], path)


def is_public(address: str) -> bool:
    """Whether the address is a public unicast one (not loopback, private, link-local,
    multicast, reserved, shared or unspecified; IPv4-mapped IPv6 judged as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified
    )


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


def check_url(url: str, *, allow_private: bool) -> Target:
    """Refuse a URL that may not receive webhooks (creation time and delivery time)."""
    target = parse_url(url, allow_private=allow_private)
    resolve(target, allow_private=allow_private)
    return target


def post(url: str, body: bytes, headers: dict[str, str], *, allow_private: bool,
         timeout: float) -> int:
    """POST the body to the URL, connected to an address that passed the guard; return
    the response status. Raises UnsafeUrl, OSError or http.client.HTTPException."""
    target = parse_url(url, allow_private=allow_private)
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
