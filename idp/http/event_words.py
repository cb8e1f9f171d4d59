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
    "locked": _l("right password, but the account is temporarily locked after too many wrong passwords"),
    "locked_wrong_password": _l("account temporarily locked after too many wrong passwords"),
    "locked_permanently": _l("right password, but the account is locked until the helpdesk unlocks it"),
    "locked_unchecked": _l("password not checked: the account is locked after too many wrong passwords"),
    "throttled": _l("too many wrong passwords: asked to wait before trying again"),
    "address_blocked": _l("too many wrong passwords from this network: asked to wait"),
    "too_many_lockouts": _l("locked too many times in a row: locked until the helpdesk unlocks it"),
    "not_entitled": _l("no access to this application"),
    "email_not_verified": _l("the provider did not confirm the e-mail address"),
    "not_recognized": _l("account not recognized"),
    "already_exists": _l("an account with this address already exists: it has to be linked first"),
    "linked_elsewhere": _l("that identity is already linked to another account"),
    "link_expired": _l("the linking request had expired"),
    "no_flow": _l("the login request had expired"),
    # password reset, activation and the rest of an account's history (the helpdesk's person view)
    "wrong_security_answer": _l("wrong PESEL (or date of birth) answer"),
    "too_many_wrong_passwords": _l("too many wrong passwords"),
    "no_address": _l("no address to send the link to"),
    "expired": _l("expired"),
    "killed": _l("ended after too many wrong answers"),
    "superseded": _l("replaced by a newer one"),
    "temporary": _l("temporary password"),
    "password_changed": _l("the password was changed"),
    "wrong_current_password": _l("wrong current password"),
    "ended_by_user": _l("ended by the person"),
    "ended_by_helpdesk": _l("ended by the helpdesk"),
    "logout": _l("logged out"),
    "replaced": _l("replaced by a new login"),
    "account_inactive": _l("account not active"),
    "unregistered_service": _l("application not registered"),
    "no_role": _l("no console role"),
    # assisted recovery (idp/core/assisted_recovery.py): the person typing the dean's office's code
    "no_recovery_code": _l("no recovery code issued for this account"),
    "wrong_recovery_code": _l("wrong recovery code"),
    "too_many_wrong_codes": _l("wrong recovery code; too many tries, so the code ended"),
    "recovery_code_expired": _l("the recovery code had expired"),
    "recovery_code_used": _l("the recovery code was already used"),
    "recovery_code_ended": _l("the recovery code had ended (a newer one, or too many wrong tries)"),
    "address_throttled": _l("too many attempts from this network"),
    "lifted_by_operator": _l("lifted by an operator"),
    # mail logins (idp/core/mail_login.py): refused after a correct password
    "password_expired": _l("the password has expired and must be changed on the web"),
    "second_factor_required": _l("a second factor is required: a password alone is not enough"),
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
                 "upstream.link.mailed": (_l("Linking confirmation e-mailed"), None),
                 # not login events: the helpdesk's person view and audit log (see describe_event)
                 "account.locked": (_l("Account locked"), False),
                 "address.blocked": (_l("Network address blocked for a while"), False),
                 "login.rate_limited": (_l("Too many login attempts from one network address: asked to wait"),
                                        False),
                 "address.unblocked": (_l("Network address block lifted"), None),
                 "reset.requested": (_l("Password reset link requested"), None),
                 "reset.wrong_answer": (_l("Password reset: wrong answer"), False),
                 "reset.link_killed": (_l("Password reset link ended"), False),
                 "reset.completed": (_l("Password changed with a reset link"), True),
                 "password.set": (_l("Password set"), True),
                 "password.rejected": (_l("Password refused by the rules"), False),
                 "password.change.failed": (_l("Password change refused"), False),
                 "activation.failed": (_l("Activation refused"), False),
                 "activation.verified": (_l("Activation data confirmed"), True),
                 "activation.completed": (_l("Account activated"), True),
                 "cas.login.not_provisioned": (_l("Refused"), False),
                 "oidc.authorize.not_provisioned": (_l("Refused"), False),
                 "mail.login.refused": (_l("Mail login refused"), False),
                 "sso.started": (_l("Session started"), True),
                 "sso.ended": (_l("Session ended"), None),
                 "staff.role.granted": (_l("Console role granted"), None),
                 "staff.role.revoked": (_l("Console role taken away"), None),
                 "helpdesk.access.denied": (_l("Helpdesk console refused"), False),
                 "helpdesk.send_reset_link": (_l("Helpdesk sent a reset link"), None),
                 "helpdesk.set_temporary_password": (_l("Helpdesk set a temporary password"), None),
                 "helpdesk.unlock": (_l("Helpdesk unlocked the account"), None),
                 "helpdesk.add_identifier": (_l("Helpdesk added an identifier"), None),
                 "helpdesk.remove_identifier": (_l("Helpdesk removed an identifier"), None),
                 "helpdesk.link_identity": (_l("Helpdesk linked an identity"), None),
                 "helpdesk.unlink_identity": (_l("Helpdesk unlinked an identity"), None),
                 "helpdesk.resolve_pending": (_l("Helpdesk decided a waiting link"), None),
                 "helpdesk.merge": (_l("Helpdesk merged accounts"), None),
                 "helpdesk.end_sessions": (_l("Helpdesk ended sessions"), None),
                 "helpdesk.recovery_code": (_l("Helpdesk issued a recovery code"), None),
                 "reset.code.accepted": (_l("Recovery code accepted"), True),
                 "reset.code.failed": (_l("Recovery code refused"), False),
                 "reset.code.used": (_l("Password changed with a recovery code"), True),
                 "helpdesk.service_preview": (_l("Admin previewed what a service receives"), None),
                 "helpdesk.service_self_test": (_l("Admin ran a service self-test"), None)}
#: Account status codes (core.helpdesk.STATUS_CODES) in words.
STATUS_LABELS = {"active": _l("active"), "temporary_password": _l("temporary password (to be changed at login)"),
                 "locked": _l("locked"), "left": _l("left the university"),
                 "left_grace": _l("left the university (can still log in for a while)"),
                 "merged": _l("merged into another account"), "no_password": _l("no password set"),
                 "password_expired": _l("password expired")}


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




def reason_of(event: AuditEvent) -> str | None:
    """An event's reason in words; "not provisioned for USOSweb" when the service is known."""
    service = (event.data or {}).get("service")
    if event.reason == "not_entitled" and service:
        return _("not provisioned for %(service)s", service=service)
    if event.action == "upstream.linked" and event.reason:
        return str(LINKED_BY_LABELS.get(event.reason, event.reason))
    return reason_words(event.reason)


def describe_event(event: AuditEvent) -> dict:
    """One audit event in words: what happened, why, where, by whom (the helpdesk's views)."""
    data = event.data or {}
    last = event.action.rsplit(".", 1)[-1]
    if event.action in ACTION_LABELS:
        label, ok = ACTION_LABELS[event.action]
        outcome = str(label)
    elif event.action.startswith(LOGIN_PREFIXES) and (last in _FAILURE or (event.reason and last not in _SUCCESS)):
        outcome, ok = _("Login refused"), False
    elif event.action.startswith(LOGIN_PREFIXES) and last in _SUCCESS:
        outcome, ok = _("Logged in"), True
    elif last in _FAILURE:
        outcome, ok = event.action, False
    else:
        outcome, ok = event.action, None
    provider = data.get("provider")
    return {"id": event.id, "ref": audit.reference(event), "at": event.at, "first_at": event.at,
            "action": event.action, "outcome": outcome, "ok": ok, "reason": reason_of(event),
            "reason_code": event.reason, "service": data.get("service"), "client_ip": event.client_ip,
            "actor": event.actor, "why": data.get("why") if event.action.startswith("helpdesk.") else None,
            "provider": linking.label(provider) if provider else None, "count": 1}


def grouped_events(events: list[AuditEvent]) -> list[dict]:
    """Events in words, newest first, consecutive identical failures folded into one row with a count
    and a time span ("wrong password ×3")."""
    events = list(events)
    for n in range(1, len(events)):
        # The wrong password that locks an account is recorded after its lock (same moment): show the lock
        # above it, so the run of wrong passwords reads as one row ("wrong password ×10").
        lock, attempt = events[n], events[n - 1]
        if (lock.action == "account.locked" and attempt.action == "login.failed" and attempt.at == lock.at
                and attempt.account_id == lock.account_id):
            events[n - 1], events[n] = lock, attempt
    rows: list[dict] = []
    for event in events:
        row = describe_event(event)
        prev = rows[-1] if rows else None
        if (prev is not None and row["ok"] is False and prev["ok"] is False
                and (prev["action"], prev["reason_code"], prev["service"])
                == (row["action"], row["reason_code"], row["service"])):
            prev["count"] += 1
            prev["first_at"] = row["at"]
            continue
        rows.append(row)
    return rows
