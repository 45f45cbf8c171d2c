"""Where visitors meet a poll, in their language (`i18n`):

- `widget`: the widget page for an iframe, and its no-JS form vote;
- `share`: the share page; `oembed`: oEmbed for widget and share URLs;
- `svg`: the results as an SVG image; `assets`: embed.js;
- `blueprint`: the blueprint, its common headers and the visitor's error page;
- `texts`, `display`, `pages`, `tokens`: messages, display options, the rendered pages
  kept per process, and the form's signed tokens.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    # The view modules register their views on the blueprint as they are imported.
    from service.widgets import assets, i18n, oembed, pages, share, svg, widget  # noqa: F401
    from service.widgets.blueprint import blp

    i18n.init_app(app)
    app.extensions[widget.PAGES_EXTENSION] = pages.PageCache()
    app.extensions[widget.VOTER_STATES_EXTENSION] = pages.VoterStates()
    app.extensions[assets.EMBED_JS_EXTENSION] = assets.StaticAsset.load(
        assets.STATIC_DIR / "embed.js", max_age=assets.EMBED_JS_CACHE_SECONDS, cross_origin=True
    )
    app.register_blueprint(blp)
