from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import PasswordField, StringField
from wtforms.validators import EqualTo, InputRequired, Length

from idp.http.forms import Form


class ResetRequestForm(Form):
    identifier = StringField(_l("E-mail address"), validators=[InputRequired(), Length(max=254)],
                             render_kw={"autocomplete": "username", "autofocus": True, "spellcheck": "false",
                                        "autocapitalize": "none"})


class ResetForm(Form):
    #: PESEL, or the date of birth for people without one (the label says which).
    answer = StringField(_l("Security question"), validators=[Length(max=32)],
                         render_kw={"autocomplete": "off", "inputmode": "numeric"})
    new_password = PasswordField(_l("New password"), validators=[InputRequired(), Length(max=1024)],
                                 render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(_l("Repeat new password"),
                            validators=[InputRequired(), EqualTo("new_password", _l("The passwords do not match."))],
                            render_kw={"autocomplete": "new-password"})


class CodeForm(Form):
    """Assisted recovery: the login and the one-time code the dean's office handed over."""
    identifier = StringField(_l("Login"), validators=[InputRequired(), Length(max=254)],
                             render_kw={"autocomplete": "username", "autofocus": True, "spellcheck": "false",
                                        "autocapitalize": "none"})
    code = StringField(_l("Recovery code"), validators=[InputRequired(), Length(max=64)],
                       render_kw={"autocomplete": "one-time-code", "spellcheck": "false", "autocapitalize": "characters",
                                  "placeholder": "XXXX-XXXX-XXXX"})


class CodePasswordForm(Form):
    new_password = PasswordField(_l("New password"), validators=[InputRequired(), Length(max=1024)],
                                 render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(_l("Repeat new password"),
                            validators=[InputRequired(), EqualTo("new_password", _l("The passwords do not match."))],
                            render_kw={"autocomplete": "new-password"})
