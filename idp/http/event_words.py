"""Audit events and account facts in plain words, for the person's own page and the helpdesk console."""
from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from idp.core import audit, linking
from idp.models import Account, AuditEvent

#: Identifier kinds in words (Account.identifiers and the policy's login.identifiers).
KIND_LABELS = {"university_email": _l("University e-mail"), "private_email": _l("Private e-mail"),
               "alias": _l("Alias"), "album": _l("Album number")}
ROLE_LABELS = {"student": _l("Student"), "teacher": _l("Teacher"), "staff": _l("Staff")}
#: How a link was proved (UpstreamIdentity.linked_by).
LINKED_BY_LABELS = {"password": _l("with your password"), "mail": _l("by a confirmation e-mail"),
                    "import": _l("from the records (SIS import)"), "helpdesk": _l("by the helpdesk")}
#: Reason codes of login events in plain words; an unknown code is shown as it is.
REASON_LABELS = {
    "wrong_password": _l("wrong password"),
    "no_password": _l("no password set for the account"),
    "unknown_identifier": _l("unknown login"),
    "account_left": _l("account no longer active (left the university)"),
    "locked": _l("account temporarily locked after too many wrong passwords"),
    "locked_wrong_password": _l("account temporarily locked after too many wrong passwords"),
    "not_entitled": _l("no access to this application"),
    "email_not_verified": _l("the provider did not confirm the e-mail address"),
    "not_recognized": _l("account not recognized"),
    "already_exists": _l("an account with this address already exists: it has to be linked first"),
    "linked_elsewhere": _l("that identity is already linked to another account"),
    "link_expired": _l("the linking request had expired"),
    "no_flow": _l("the login request had expired"),
}
#: Login-like events shown under "Recent logins" (action prefixes) and how many.
LOGIN_PREFIXES = ("login.", "upstream.")
RECENT_LOGINS = 20
_SUCCESS = {"succeeded", "success", "ok"}
_FAILURE = {"failed", "failure", "refused", "rejected", "denied", "not_recognized", "error"}
#: Events whose action says more than "logged in" / "refused": action -> (words, succeeded?).
ACTION_LABELS = {"upstream.linked": (_l("Identity linked"), True),
                 "upstream.unlinked": (_l("Identity unlinked"), True),
                 "upstream.login.link_needed": (_l("Linking needed"), None),
                 "upstream.link.failed": (_l("Linking refused"), False),
                 "upstream.link.mailed": (_l("Linking confirmation e-mailed"), None)}


def reason_words(code: str | None) -> str | None:
    if not code:
        return None
    label = REASON_LABELS.get(code)
    return str(label) if label is not None else code


def recent_logins(account: Account, limit: int = RECENT_LOGINS) -> list[dict]:
    """The last login events of the account (password and upstream), newest first, in words."""
    events: list[AuditEvent] = []
    for prefix in LOGIN_PREFIXES:
        events += audit.recent(account_id=account.id, action_prefix=prefix, limit=limit)
    events.sort(key=lambda e: e.id, reverse=True)
    rows = []
    for e in events[:limit]:
        data = e.data or {}
        last = e.action.rsplit(".", 1)[-1]
        reason = reason_words(e.reason)
        if e.action == "upstream.linked":  # its reason is how the link was proved
            reason = str(LINKED_BY_LABELS.get(e.reason, e.reason)) if e.reason else None
        if e.action in ACTION_LABELS:
            label, ok = ACTION_LABELS[e.action]
            outcome = str(label)
        elif last in _FAILURE or (e.reason and last not in _SUCCESS):
            outcome, ok = _("Refused"), False
        elif last in _SUCCESS:
            outcome, ok = _("Logged in"), True
        else:
            outcome, ok = e.action, None
        provider = data.get("provider")
        rows.append({"at": e.at, "ok": ok, "outcome": outcome, "reason": reason,
                     "method": _("via %(provider)s", provider=linking.label(provider)) if provider
                     else (_("with password") if e.action.startswith("login.") else None),
                     "service": data.get("service"), "client_ip": e.client_ip})
    return rows


