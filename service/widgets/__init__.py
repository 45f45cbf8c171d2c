"""Where visitors meet a poll: the widget page, embed.js, the share page, oEmbed and the
results SVG, in the visitor's language (see `i18n`)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from service.widgets import i18n, views

    i18n.init_app(app)
    app.register_blueprint(views.blp)
