"""The widgets' blueprint: its templates and static files, the headers every answer
carries, and the error page a visitor sees."""

from __future__ import annotations

from flask import Blueprint, current_app, g, render_template, request
from flask_babel import gettext

from service.infra.errors import ServiceError, handle_service_error
from service.widgets import display, i18n
from service.widgets.texts import messages

blp = Blueprint(
    "widgets", __name__, template_folder="templates", static_folder="static",
    static_url_path="/widgets/static",
)

# The pages a visitor sees: errors there are an HTML page in their language.
HTML_VIEWS = {"widgets.widget", "widgets.widget_vote", "widgets.widget_change",
              "widgets.share"}


@blp.after_request
def _common_headers(response):
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blp.errorhandler(ServiceError)
def _error_page(error: ServiceError):
    """The pages a visitor sees get an HTML error page in their language; the rest
    (oEmbed, SVG) keep problem+json."""
    if request.endpoint not in HTML_VIEWS:
        return handle_service_error(error)
    if "widget_locale" not in g:
        i18n.use_locale(i18n.choose_locale(request.args.get("lang")))
    lang = g.widget_locale
    message = messages().get(error.code) or gettext("Something went wrong.")
    nonce = display.new_nonce()
    body = render_template("widgets/error.html", lang=lang,
                           direction=i18n.text_direction(lang), message=message, nonce=nonce)
    response = current_app.response_class(body, status=error.status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'"
    )
    response.headers.update(error.headers)
    return response
