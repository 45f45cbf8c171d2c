"""How a poll is embedded: the ready-to-paste snippets, and the widget's themes and
languages (the console offers them, the widget speaks them)."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

IFRAME_DEFAULT_HEIGHT = 360
THEMES = ("light", "dark", "auto")
LOCALES = ("en", "de", "fr", "es")


def snippets(poll, base_url: str) -> dict[str, str]:
    """Ready-to-paste snippets for every way of embedding the poll."""
    widget_url = f"{base_url}/polls/{poll.id}/widget"
    share_url = f"{base_url}/p/{poll.id}"
    title = escape(f"Poll: {poll.question}", quote=True)
    return {
        "widget_url": widget_url,
        "iframe": (
            f'<iframe src="{escape(widget_url)}" title="{title}" width="100%" '
            f'height="{IFRAME_DEFAULT_HEIGHT}" loading="lazy" style="border:0"></iframe>'
        ),
        "script": (
            f'<script async src="{escape(base_url)}/embed.js" data-poll="{poll.id}"></script>'
        ),
        "oembed_url": f"{base_url}/oembed?url={quote(share_url, safe='')}&format=json",
        "svg_url": f"{base_url}/polls/{poll.id}/results.svg",
    }
