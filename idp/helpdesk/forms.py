"""Console forms. Every form that changes something asks for a reason: it goes into the audit event."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, DateField, HiddenField, PasswordField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, Optional

from idp.http.forms import Form

#: Longest reason kept (audit data); the core refuses blank ones and ones shorter than three characters.
REASON_MAX = 500

IDENTIFIER_KINDS = [SelectChoice("alias", _l("Alias")), SelectChoice("private_email", _l("Private e-mail")),
                    SelectChoice("university_email", _l("University e-mail"))]


class ActionForm(Form):
    """An audited action: the CSRF token and the reason."""

    reason = StringField(_l("Reason"), validators=[InputRequired(_l("Say why: the reason is recorded in the audit log.")),
                                                   Length(max=REASON_MAX)],
                         render_kw={"autocomplete": "off", "maxlength": REASON_MAX})


class SendResetForm(ActionForm):
    address = SelectField(_l("Send the link to"), choices=[], validate_choice=True)
    lang = SelectField(_l("Language of the e-mail"), choices=[SelectChoice("pl", "Polski"), SelectChoice("en", "English")])


class TemporaryPasswordForm(ActionForm):
    password = PasswordField(_l("Temporary password"), validators=[InputRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(_l("Repeat the temporary password"),
                            validators=[InputRequired(), EqualTo("password", _l("The passwords do not match."))],
                            render_kw={"autocomplete": "new-password"})


class AddIdentifierForm(ActionForm):
    kind = SelectField(_l("Kind"), choices=IDENTIFIER_KINDS, default="alias")
    value = StringField(_l("Address"), validators=[InputRequired(), Length(max=254)],
                        render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"})


class LinkIdentityForm(ActionForm):
    provider = SelectField(_l("Provider"), choices=[])
    subject = StringField(_l("Subject (the provider's user id)"), validators=[InputRequired(), Length(max=255)],
                          render_kw={"autocomplete": "off", "spellcheck": "false"})
    email = StringField(_l("E-mail at the provider (optional)"), validators=[Optional(), Length(max=254)],
                        render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"})


class ResolvePendingForm(ActionForm):
    decision = RadioField(_l("Decision"), choices=[SelectChoice("link", _l("Link it to this account")),
                                                    SelectChoice("reject", _l("Reject it"))],
                          validators=[InputRequired(_l("Choose what to do with the request."))])


class EndSessionsForm(ActionForm):
    #: One session's public id; empty: every session of the person.
    sid = HiddenField()


class MergeForm(ActionForm):
    other = HiddenField(validators=[InputRequired(), Length(max=32)])


class RecoveryCodeForm(ActionForm):
    id_checked = BooleanField(_l("I have checked the person's identity document in person"),
                              validators=[DataRequired(_l("A recovery code is issued only after an in-person "
                                                          "identity check."))])


class PickOtherForm(Form):
    """The first step of a merge: which account goes into this one (a GET form, nothing changes)."""

    class Meta:
        csrf = False

    other = StringField(_l("Album number of the other account"), validators=[InputRequired(), Length(max=32)],
                        render_kw={"autocomplete": "off", "spellcheck": "false", "inputmode": "text"})


class AuditFilterForm(Form):
    """The audit view's filters (GET)."""

    class Meta:
        csrf = False

    action = StringField(_l("Action (beginning)"), validators=[Optional(), Length(max=64)],
                         render_kw={"placeholder": "helpdesk.", "spellcheck": "false", "autocapitalize": "none"})
    person = StringField(_l("Person (album number)"), validators=[Optional(), Length(max=32)],
                         render_kw={"spellcheck": "false"})
    actor = StringField(_l("Actor"), validators=[Optional(), Length(max=254)],
                        render_kw={"spellcheck": "false", "autocapitalize": "none"})
    reason = StringField(_l("Reason code"), validators=[Optional(), Length(max=64)],
                         render_kw={"spellcheck": "false", "autocapitalize": "none"})
    since = DateField(_l("From (day)"), validators=[Optional()])
    until = DateField(_l("To (day, inclusive)"), validators=[Optional()])
