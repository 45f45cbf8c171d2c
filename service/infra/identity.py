"""Client addresses and the per-poll keyed hashes that stand in for voters.

Everything stored or logged about a voter is an HMAC keyed with the app secret and the
poll id, so two polls' voters cannot be joined and a leaked table does not reveal who
voted. Raw addresses and cookie ids are only ever hashed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

IPV6_GROUP_PREFIX = 64
HASH_HEX_CHARS = 32


@dataclass(frozen=True)
class Voter:
    """The identities a request offers for duplicate checks (raw; hash before use)."""

    cookie_id: str
    cookie_is_new: bool
    address: str


def _host_only(value: str) -> str:
    """`[v6]:port`, `[v6]` and `v4:port`, as some proxies write X-Forwarded-For -> host."""
    value = value.strip()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value


def client_address(remote_addr: str | None) -> str:
    """Return the client's address, IPv6 grouped to its /64 network."""
    if not remote_addr:
        return "unknown"
    try:
        # Proxies may add brackets or a port; unparsable addresses share one "unknown".
        address = ipaddress.ip_address(_host_only(remote_addr))
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network(f"{address}/{IPV6_GROUP_PREFIX}", strict=False)
        return str(network)
    return str(address)


def keyed_hash(secret: str, poll_id: str, kind: str, value: str) -> str:
    """Return the per-poll keyed hash of one voter identity."""
    message = f"{poll_id}\x00{kind}\x00{value}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return digest[:HASH_HEX_CHARS]
