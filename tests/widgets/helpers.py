"""Helpers shared by the widget tests: reading pages the way a browser would."""

from __future__ import annotations

import re
from html.parser import HTMLParser

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
# Payloads that would run script or change markup if any poll text reached a page raw.
XSS_CORPUS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "'><svg onload=alert(3)>",
    "</title><script>alert(4)</script>",
    "</style><script>alert(5)</script>",
    "</script><script>alert(6)</script>",
    "]]></text><script>alert(7)</script>",
    "javascript:alert(8)",
    "{{ 7*7 }} ${7*7} <%= 7*7 %>",
    "&lt;b&gt;&amp; \u2028\u2029 \x01\x0b",
)


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside <script> elements."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_texts: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.script_texts.append("")

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_texts[-1] += data

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def event_handlers(self) -> list[str]:
        return [f"{tag} {name}" for tag, attrs in self.tags for name in attrs
                if name.lower().startswith("on")]


def csrf_token(html: str) -> str:
    return CSRF_FIELD.search(html).group(1)
