from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import PasswordField
from wtforms.validators import EqualTo, InputRequired, Length

from idp.http.forms import Form


class ChangePasswordForm(Form):
    new_password = PasswordField(_l("New password"), validators=[InputRequired(), Length(max=1024)],
                                 render_kw={"autocomplete": "new-password", "autofocus": True})
    confirm = PasswordField(_l("Repeat new password"),
                            validators=[InputRequired(), EqualTo("new_password", _l("The passwords do not match."))],
                            render_kw={"autocomplete": "new-password"})
