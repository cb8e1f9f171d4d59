from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import PasswordField, SubmitField
from wtforms.validators import InputRequired, Length

from idp.http.forms import Form


class LinkByPasswordForm(Form):
    password = PasswordField(_l("Password of the existing account"), validators=[InputRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "current-password"})
    submit = SubmitField(_l("Link and log in"))


class LinkByMailForm(Form):
    send = SubmitField(_l("Send me a confirmation link"))


class ConfirmLinkForm(Form):
    submit = SubmitField(_l("Link the accounts"))
