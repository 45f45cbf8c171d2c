"""The Keys page (admin keys only): the owner's keys, a form that makes one (shown once)
and a button that revokes one."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

from service import owners
from service.console import bp
from service.console.auth import owner_required, scope_required, signed_in_key
from service.infra.clock import now
from service.infra.db import db
from service.infra.errors import NotFound

SCOPE_LABELS = {
    "read": "Read: results, exports, integrity, comments; changes nothing",
    "write": "Write: also polls, comments and webhooks",
    "admin": "Admin: everything, keys too",
}


def _page(*, form: dict, errors: dict[str, list[str]], status: int = 200):
    keys = owners.list_keys(session=db.session, owner=g.console_owner)
    page = render_template("console/keys.html", keys=keys, form=form, errors=errors,
                           scopes=SCOPE_LABELS, current=signed_in_key())
    return page, status


@bp.get("/keys")
@owner_required
@scope_required("admin")
def keys_index():
    """The owner's keys and the form that makes one."""
    return _page(form={"name": "", "scope": "read"}, errors={})


@bp.post("/keys")
@owner_required
@scope_required("admin")
def key_new():
    """Make a key; the page that answers shows it, once."""
    form = {"name": request.form.get("name", "").strip(),
            "scope": request.form.get("scope", "")}
    errors: dict[str, list[str]] = {}
    if form["scope"] not in owners.SCOPES:
        errors["scope"] = ["Choose a scope."]
    if not 1 <= len(form["name"]) <= owners.KEY_NAME_MAX:
        errors["name"] = [f"Give the key a name of 1 to {owners.KEY_NAME_MAX} characters."]
    if errors:
        return _page(form=form, errors=errors, status=422)
    record, key = owners.create_key(session=db.session, owner=g.console_owner,
                                    name=form["name"], scope=form["scope"])
    # Rendered, not redirected: the key is never kept to be shown again.
    page = render_template("console/key_created.html", record=record, key=key,
                           scopes=SCOPE_LABELS)
    return page, 201, {"Location": url_for("console.keys_index")}


@bp.post("/keys/<int:key_id>/revoke")
@owner_required
@scope_required("admin")
def key_revoke(key_id: int):
    """Revoke a key at once (and its console sessions: revoking one's own signs out)."""
    key = owners.get_owned_key(session=db.session, owner=g.console_owner, key_id=key_id)
    if key is None:
        raise NotFound("No such key.")
    name = key.name
    try:
        owners.revoke_key(session=db.session, key=key, moment=now())
    except owners.LastAdminKey as error:
        flash(str(error), "error")
    else:
        flash(f"The key “{name}” is revoked: it no longer opens the API or the console.",
              "success")
    return redirect(url_for("console.keys_index"))
