"""The base of every form: Flask-WTF's CSRF protection, with WTForms' own messages in the page's language."""
from __future__ import annotations

from functools import lru_cache

from babel import support
from flask_babel import get_locale
from flask_wtf import FlaskForm
from wtforms.i18n import messages_path


@lru_cache(maxsize=8)
def _wtforms_catalogue(locale: str) -> support.Translations:
    """WTForms' catalogue for one language, read once per process (Flask-WTF reads it from disk on every
    request that builds a form)."""
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


class Form(FlaskForm):
    class Meta(FlaskForm.Meta):
        def get_translations(self, form):
            return _wtforms_catalogue(str(get_locale() or "pl"))
