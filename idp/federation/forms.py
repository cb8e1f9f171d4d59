from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, SubmitField
from wtforms.validators import InputRequired, Length


class LinkByPasswordForm(FlaskForm):
    password = PasswordField(_l("Password of the existing account"), validators=[InputRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "current-password"})
    submit = SubmitField(_l("Link and log in"))


class LinkByMailForm(FlaskForm):
    send = SubmitField(_l("Send me a confirmation link"))


class ConfirmLinkForm(FlaskForm):
    submit = SubmitField(_l("Link the accounts"))
