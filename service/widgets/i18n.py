"""The widget's languages (Flask-Babel).

The catalogs are committed as `.po` files under `service/translations`; the factory
compiles each into the instance folder when its `.mo` is missing or older, so a fresh
clone works after `pip install -e .` without a build step, and a changed `.po` is picked
up at the next start. Edit strings with `pybabel extract -F babel.cfg -o messages.pot .`
then `pybabel update -i messages.pot -d service/translations`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, g
from flask_babel import Babel, format_decimal, get_translations

from service.polls.embed import LOCALES as SUPPORTED_LOCALES

DEFAULT_LOCALE = "en"
SOURCE_DIR = Path(__file__).resolve().parent.parent / "translations"
DOMAIN = "messages"

babel = Babel()


def choose_locale(*candidates: str | None) -> str:
    """The first shipped language among `lang=`, the poll's locale, ...; else English."""
    for tag in candidates:
        if not tag:
            continue
        primary = tag.replace("_", "-").split("-", 1)[0].lower()
        if primary in SUPPORTED_LOCALES:
            return primary
    return DEFAULT_LOCALE


def use_locale(tag: str) -> None:
    """Render the rest of this request in `tag` (one of SUPPORTED_LOCALES)."""
    g.widget_locale = tag


def text_direction(tag: str) -> str:
    return "rtl" if Locale.parse(tag).character_order == "right-to-left" else "ltr"


def counted(singular: str, plural: str, n: int, *, shown: str | None = None,
            **values: str) -> str:
    """The plural form for `n`, its `%(num)s` the number in the locale's digits and its
    other placeholders `values` (extracted as a plural message: `pybabel extract -k
    counted:1,2`)."""
    text = get_translations().ungettext(singular, plural, n)
    return text % {"num": format_decimal(n) if shown is None else shown, **values}


def plural_forms(singular: str, plural: str, **values: str) -> dict[str, str]:
    """A counted message per CLDR plural category, `{n}` standing for the number (and
    `values` for the other placeholders); the widget's script picks one with
    `Intl.PluralRules`."""
    return {"one": counted(singular, plural, 1, shown="{n}", **values),
            "other": counted(singular, plural, 2, shown="{n}", **values)}


def _select_locale() -> str:
    return g.get("widget_locale") or DEFAULT_LOCALE


def compile_catalogs(target: Path) -> None:
    """Compile each `.po` into `target` when its `.mo` is missing or older (atomic
    rename: several workers may start at once)."""
    for po_path in SOURCE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"):
        language = po_path.parent.parent.name
        mo_path = target / language / "LC_MESSAGES" / f"{DOMAIN}.mo"
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        with po_path.open("rb") as source:
            catalog = read_po(source, locale=language, domain=DOMAIN)
        fd, temporary = tempfile.mkstemp(dir=mo_path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                write_mo(out, catalog, use_fuzzy=False)
            os.replace(temporary, mo_path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def init_app(app: Flask) -> None:
    target = Path(app.instance_path) / "translations"
    compile_catalogs(target)
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(target)
    babel.init_app(app, locale_selector=_select_locale)
