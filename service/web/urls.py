"""Where the service is reached."""

from __future__ import annotations

from flask import current_app, request

from service.infra.errors import UntrustedHost

# With neither PUBLIC_BASE_URL nor TRUSTED_HOSTS set (the quick start), the Host header
# is believed only for these: anyone can send any Host, and pages and oEmbed answers
# built from it are cached by proxies for others.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def base_url() -> str:
    """The public base URL: `PUBLIC_BASE_URL`, else the one the request came in on when
    that host is trusted (TRUSTED_HOSTS, which Flask checks, or a loopback name)."""
    configured = current_app.config.get("PUBLIC_BASE_URL")
    if configured:
        return configured
    if not current_app.config.get("TRUSTED_HOSTS") and _hostname(request.host) \
            not in LOOPBACK_HOSTS:
        raise UntrustedHost()
    return request.host_url.rstrip("/")


def _hostname(host: str) -> str:
    """`host[:port]` or `[v6][:port]` without the port, lower-cased."""
    host = host.lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host


def own_origin() -> str:
    """The origin this service is reached at (the widget's own pages vote from it), in
    the ASCII form a browser's `Origin` header has: from the request's scheme and Host
    (werkzeug's `host_url` would also decode it to an IRI, a fifteenth of a widget
    read)."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if not base:
        req = request._get_current_object()
        return f"{req.scheme}://{req.host}".lower()
    scheme, _, rest = base.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}".lower()
