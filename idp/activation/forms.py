from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import EqualTo, InputRequired, Length

from idp.http.forms import Form


class ActivationForm(Form):
    """Step 1: the data the student records system (USOS) holds about the person."""

    album = StringField(_l("Album number"), validators=[InputRequired(), Length(max=32)],
                        render_kw={"autocomplete": "off", "autofocus": True, "spellcheck": "false",
                                   "autocapitalize": "none"})
    #: A PESEL, or the date of birth for people without one (core.activation.read_secret tells which).
    secret = StringField(_l("PESEL number"), validators=[InputRequired(), Length(max=32)],
                         render_kw={"autocomplete": "off", "spellcheck": "false"})
    surname = StringField(_l("Surname"), validators=[InputRequired(), Length(max=100)],
                          render_kw={"autocomplete": "family-name", "spellcheck": "false"})
    #: The proof-of-work challenge (after several failed attempts) and the browser's solution.
    challenge = HiddenField()
    solution = HiddenField()


class ActivationPasswordForm(Form):
    """Step 2: the first password, twice."""

    new_password = PasswordField(_l("New password"), validators=[InputRequired(), Length(max=1024)],
                                 render_kw={"autocomplete": "new-password", "autofocus": True})
    confirm = PasswordField(_l("Repeat new password"),
                            validators=[InputRequired(), EqualTo("new_password", _l("The passwords do not match."))],
                            render_kw={"autocomplete": "new-password"})
