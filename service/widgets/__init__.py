"""Where visitors meet a poll: the widget page, embed.js, the share page, oEmbed and the
results SVG, in the visitor's language (see `i18n`)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from service.widgets import i18n, pages, views

    i18n.init_app(app)
    app.extensions[views.PAGES_EXTENSION] = pages.PageCache()
    app.extensions[views.VOTER_STATES_EXTENSION] = pages.VoterStates()
    app.extensions[views.EMBED_JS_EXTENSION] = views.StaticAsset.load(
        views.STATIC_DIR / "embed.js", max_age=views.EMBED_JS_CACHE_SECONDS, cross_origin=True
    )
    app.register_blueprint(views.blp)
