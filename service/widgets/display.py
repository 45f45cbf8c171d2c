"""How a widget is shown: theme, language, context, the embedding page's origin and the
owner's colours, read from the query string and carried through the no-JS round trip."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from service.polls.embed import THEMES
from service.tallies.schemas import CONTEXT_MAX

DEFAULT_THEME = "auto"
LANG_TAG = re.compile(r"^[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*$")
LANG_MAX = 35
ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(?::\d{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")
COLOUR = re.compile(r"^#(?:[0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})$")
# Query parameter -> the CSS custom property it overrides (owners may set these on the
# script tag as data-accent, data-bg, data-fg).
COLOUR_PROPERTIES = {"accent": "--pb-accent", "bg": "--pb-bg", "fg": "--pb-fg"}
NONCE_BYTES = 16


@dataclass(frozen=True)
class Display:
    theme: str = DEFAULT_THEME
    lang: str | None = None
    context: str | None = None
    origin: str | None = None
    colours: dict[str, str] = field(default_factory=dict)

    def query(self) -> dict[str, str]:
        """The query parameters that reproduce this display."""
        params = {"theme": self.theme} if self.theme != DEFAULT_THEME else {}
        for name in ("lang", "context", "origin"):
            value = getattr(self, name)
            if value:
                params[name] = value
        params.update(self.colours)
        return params

    def css_overrides(self) -> dict[str, str]:
        return {COLOUR_PROPERTIES[name]: value for name, value in self.colours.items()}


def allowed_parent(origin: str | None, poll, own_origin: str) -> str | None:
    """The embedding page's origin, when well-formed and allowed to embed the poll: the
    widget posts its size only there."""
    if not origin or not ORIGIN.match(origin):
        return None
    origin = origin.lower()
    if poll.allowed_origins and origin != own_origin and origin not in {
        allowed.lower() for allowed in poll.allowed_origins
    }:
        return None
    return origin


def read_display(args: Mapping[str, str], poll, own_origin: str) -> Display:
    """Read the display parameters, dropping any that are malformed."""
    theme = args.get("theme", DEFAULT_THEME)
    lang = args.get("lang") or None
    context = args.get("context") or None
    return Display(
        theme=theme if theme in THEMES else DEFAULT_THEME,
        lang=lang if lang and len(lang) <= LANG_MAX and LANG_TAG.match(lang) else None,
        context=context if context and len(context) <= CONTEXT_MAX else None,
        origin=allowed_parent(args.get("origin"), poll, own_origin),
        colours={name: args[name] for name in COLOUR_PROPERTIES
                 if COLOUR.match(args.get(name, ""))},
    )


def new_nonce() -> str:
    return secrets.token_urlsafe(NONCE_BYTES)


def frame_ancestors(poll) -> str:
    """The poll's `allowed_origins` (and this service, for its share page), or `*`."""
    if not poll.allowed_origins:
        return "*"
    listed = [origin for origin in poll.allowed_origins if ORIGIN.match(origin)]
    return " ".join(["'self'", *listed])


def widget_policy(poll, nonce: str) -> str:
    """The widget's Content-Security-Policy: its own script file only, its one styled
    block, requests to itself, embeddable by the poll's allowed origins."""
    return "; ".join((
        "default-src 'none'",
        "script-src 'self'",
        f"style-src 'nonce-{nonce}'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "require-trusted-types-for 'script'",
        f"frame-ancestors {frame_ancestors(poll)}",
    ))


def share_policy(nonce: str) -> str:
    return "; ".join((
        "default-src 'none'",
        "script-src 'self'",
        f"style-src 'nonce-{nonce}'",
        "img-src 'self'",
        "frame-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'self'",
    ))


SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
