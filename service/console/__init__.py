"""The owner console at /console: server-rendered pages for signed-in owners.

Sign-in, the session cookie, CSRF and the security headers live in `auth`; the poll pages
in `polls`; feedback and webhooks in their own modules. Views stay thin: they call the
use cases (service/polls/, tallies/, exports/, ...) for `g.console_owner`.
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)


def init_app(app: Flask) -> None:
    """Register the console: its blueprint and its per-request session cookie."""
    auth.init_app(app)  # the module, imported below with the views
    app.register_blueprint(bp)


from service.console import auth, baseline, feedback, keys, polls, webhooks  # noqa: E402,F401
