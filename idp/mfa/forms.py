from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import StringField
from wtforms.validators import InputRequired, Length

from idp.http.forms import Form


class TotpCodeForm(Form):
    """A six-digit code from the authenticator app (enrolment confirmation or verification)."""
    code = StringField(_l("Code from your authenticator app"), validators=[InputRequired(), Length(max=16)],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True,
                                  "autocapitalize": "none", "spellcheck": "false", "size": 8})


class RecoveryCodeForm(Form):
    """One of the single-use recovery codes shown at enrolment."""
    code = StringField(_l("Recovery code"), validators=[InputRequired(), Length(max=32)],
                       render_kw={"autocomplete": "off", "autocapitalize": "none", "spellcheck": "false",
                                  "size": 14})


class ActionForm(Form):
    """A button that changes something (remove a factor, new recovery codes): nothing but the CSRF token."""
