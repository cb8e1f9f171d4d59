"""The helpdesk console: find a person, one screen that explains their situation, one audited action per fix.

Every view is behind console_required (a console role and the second factor); destructive actions also
behind fresh_factor_required. An action's URL answers GET with its form (reason included) and POST by
calling idp.core.helpdesk; a refusal, a missing reason or a password the policy refuses comes back as
form errors with status 400, and success as a message on the person's page.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from wtforms.fields.choices import SelectChoice

from idp.core import accounts, assisted_recovery, audit, helpdesk, linking, mfa, pesel, sso
from idp.core.errors import DomainError
from idp.core.helpdesk import ReasonRequired, Refused
from idp.extensions import db
from idp.helpdesk import bp, forms
from idp.helpdesk.access import console_required, fresh_factor_required
from idp.http import event_words, security
from idp.http.event_words import KIND_LABELS, LINKED_BY_LABELS, ROLE_LABELS, STATUS_LABELS
from idp.models import Account, AuditEvent, PendingLink

#: Search results and audit events per page.
PER_PAGE = 20
AUDIT_PER_PAGE = 50
#: The console shows times in the university's zone (the date filters of the audit view are days there).
ZONE = ZoneInfo("Europe/Warsaw")


# --- stricter headers for every console response --------------------------------------------------------

@bp.after_request
def _console_headers(response):
    """Stricter than the rest of the site (idp/http/security.py fills in what is not set here): nothing
    is loaded from or posted to anywhere else, nothing frames the console, nothing is kept by caches."""
    h = response.headers
    h["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self' 'nonce-" + security.csp_nonce() + "'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; object-src 'none'")
    h["X-Frame-Options"] = "DENY"
    h["Cache-Control"] = "no-store"
    h["Pragma"] = "no-cache"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h["Cross-Origin-Resource-Policy"] = "same-origin"
    h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
    h["X-Robots-Tag"] = "noindex, nofollow"
    return response


@bp.context_processor
def _console_globals():
    return {"staff_ctx": g.get("staff"), "console_services": "helpdesk.services" in current_app.view_functions}


# --- helpers ---------------------------------------------------------------------------------------------

def _policy():
    return current_app.extensions["idp.policy"]


def _page_number(name: str = "page") -> int:
    raw = request.args.get(name, "1")
    return max(1, min(int(raw), 100_000)) if raw.isdigit() else 1


def _account(album: str) -> Account:
    account = db.session.scalar(db.select(Account).where(Account.album == album[:32]))
    if account is None:
        account = db.session.scalar(db.select(Account).where(db.func.lower(Account.album) == album[:32].lower()))
    if account is None:
        abort(404)
    return account


def _to_person(account: Account):
    return redirect(url_for("helpdesk.person", album=account.album))


def _status_words(codes: list[str]) -> list[dict]:
    return [{"code": c, "words": str(STATUS_LABELS.get(c, c))} for c in codes]


def _summary(account: Account) -> dict:
    """A person in one line of a list: name, album, role, the identifier people know them by."""
    return {"account": account, "album": account.album, "name": account.display_name,
            "role": str(ROLE_LABELS.get(account.role, account.role)),
            "email": account.identifier("university_email") or account.identifier("private_email"),
            "merged": account.merged_into_id is not None, "left": account.status == "left"}


# --- dashboard and search --------------------------------------------------------------------------------

@bp.route("/", methods=["GET", "POST"])
@console_required
def dashboard():
    """The search box, and what it found: one person → their page; a reference code → the event.

    The box posts (CSRF-checked) and is redirected to GET /helpdesk/?q=… — except a PESEL, which is
    answered from the POST itself, so the number never lands in a URL, a browser history or an access log.
    """
    if request.method == "POST":
        query = (request.form.get("q") or "").strip()[:200]
        if not _looks_like_pesel(query):
            return redirect(url_for("helpdesk.dashboard", q=query or None))
    else:
        query = (request.args.get("q") or "").strip()[:200]
    number = _page_number() if request.method == "GET" else 1
    result = None
    if query:
        result = helpdesk.search(query, pesel_key=current_app.config["PESEL_KEY"], limit=PER_PAGE,
                                 offset=(number - 1) * PER_PAGE)
        if result.kind == "reference":
            return _reference_page(query, result)
        if result.total == 1 and len(result.accounts) == 1 and number == 1:
            return _to_person(result.accounts[0])
    pages = max(1, -(-result.total // PER_PAGE)) if result else 1
    # A PESEL is never shown back, not even in the search box.
    pesel_search = result is not None and result.kind == "pesel" or _looks_like_pesel(query)
    return render_template("helpdesk/dashboard.html", policy=_policy(), query="" if pesel_search else query,
                           searched=bool(query), result=result, pesel_search=pesel_search,
                           rows=[_summary(a) for a in result.accounts] if result else [],
                           number=number, pages=pages, per_page=PER_PAGE,
                           prev_url=url_for("helpdesk.dashboard", q=query, page=number - 1)
                           if number > 1 and not pesel_search else None,
                           next_url=url_for("helpdesk.dashboard", q=query, page=number + 1)
                           if number < pages and not pesel_search else None,
                           title=_("Helpdesk console"))


def _looks_like_pesel(query: str) -> bool:
    """Eleven digits with a valid checksum, spaces forgiven (as core.helpdesk.search reads it): such a
    query never goes into a URL."""
    digits = "".join(query.split())
    return len(digits) == 11 and digits.isdigit() and pesel.problem(digits) is None


def _reference_page(query: str, result):
    event = result.event
    account = result.accounts[0] if result.accounts else None
    return render_template("helpdesk/reference.html", policy=_policy(), query=query, event=event,
                           row=event_words.describe_event(event) if event is not None else None,
                           details=_details(event) if event is not None else [],
                           person=_summary(account) if account is not None else None,
                           title=_("Reference code %(code)s", code=query.strip().upper())), \
        200 if event is not None else 404


def _details(event: AuditEvent) -> list[tuple[str, str]]:
    """An event's data as (key, value) pairs for people (before/after and lists flattened to text)."""
    out = []
    for key, value in sorted((event.data or {}).items()):
        if value is None or value == "" or value == [] or value == {}:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        out.append((key, str(value)))
    return out


# --- the person ------------------------------------------------------------------------------------------

@bp.route("/people/<album>", methods=["GET"])
@console_required
def person(album: str):
    """One screen: who they are, status, identifiers, data migration, entitlements, links, sessions,
    what happened at their last logins, and the actions."""
    account = _account(album)
    policy = _policy()
    ov = helpdesk.overview(account, policy)
    login_kinds = set(policy.data["login"]["identifiers"])
    identifiers = [{"id": i.id, "value": i.value, "kind": str(KIND_LABELS.get(i.kind, i.kind)),
                    "logs_in": i.kind in login_kinds} for i in account.identifiers]
    identities = [{"id": u.id, "provider": linking.label(u.provider), "subject": u.subject, "email": u.email,
                   "linked_by": str(LINKED_BY_LABELS.get(u.linked_by, u.linked_by)), "linked_at": u.linked_at,
                   "last_login_at": u.last_login_at} for u in ov.identities]
    pending = [{"id": p.id, "provider": linking.label(p.provider), "email": p.email, "name": p.name,
                "subject": p.subject, "created_at": p.created_at, "expires_at": p.expires_at,
                "kind": p.kind, "for_this": p.account_id == account.id} for p in ov.pending]
    sessions = [{"sid": s.sid, "auth_time": s.auth_time, "last_used_at": s.last_used_at, "client_ip": s.client_ip,
                 "expires_at": s.expires_at, "apps": sso.apps_summary(parts)} for s, parts in ov.sessions]
    entitlements = [{"name": svc.name, "protocol": svc.protocol, "entitled": ok,
                     "requires": svc.requires_entitlement} for svc, ok in ov.entitlements]
    return render_template(
        "helpdesk/person.html", policy=policy, account=account, ov=ov, status=_status_words(ov.status),
        role=str(ROLE_LABELS.get(account.role, account.role)), staff_roles=sorted(ov.roles),
        album_logs_in="album" in login_kinds, identifiers=identifiers, identities=identities, pending=pending,
        sessions=sessions, entitlements=entitlements, events=event_words.grouped_events(ov.events),
        merged_from=[_summary(a) for a in ov.merged_from],
        merged_into=_summary(ov.merged_into) if ov.merged_into is not None else None,
        upstreams=current_app.config["UPSTREAM"], open_code=assisted_recovery.open_code(account),
        factors=mfa.factors(account),
        live=account.merged_into_id is None, title=account.display_name)


# --- actions ---------------------------------------------------------------------------------------------

def _act(account: Account, form, perform, done, *, title: str, intro: str | None = None, fields=(),
         submit: str, template: str = "helpdesk/action.html", danger: bool = False, **context):
    """GET: the form. POST: validate (CSRF, reason, fields), perform; success → message on the person's
    page; a missing reason, a refusal or a rejected password → the form again with the error, 400."""
    problem = None
    if form.validate_on_submit():
        try:
            outcome = perform()
        except ReasonRequired:
            form.reason.errors = [_("Say why (at least %(n)s characters): the reason is recorded in the audit log.",
                                    n=helpdesk.MIN_REASON)]
        except accounts.PasswordRejected as exc:
            form.password.errors = [str(v.message) for v in exc.violations]
        except Refused as exc:
            problem = str(exc)
        except DomainError as exc:  # a lower layer's refusal the core let through: still the person's answer
            problem = str(exc)
        else:
            message = done(outcome)
            if message is not None:
                flash(message, "success")
                return _to_person(account)
            return outcome  # a page of its own (the recovery code)
        db.session.rollback()
    status = 400 if request.method == "POST" else 200
    return render_template(template, policy=_policy(), account=account, person=_summary(account), form=form,
                           fields=[getattr(form, f) for f in fields], problem=problem, title=title, intro=intro,
                           submit=submit, danger=danger, **context), status


@bp.route("/people/<album>/reset-link", methods=["GET", "POST"])
@console_required
@fresh_factor_required
def send_reset_link(album: str):
    account = _account(album)
    form = forms.SendResetForm()
    addresses = helpdesk.reset_addresses(account)
    form.address.choices = [SelectChoice(a, a) for a in addresses]
    default_lang = _policy().data["login"]["default_language"]
    if not form.is_submitted():
        form.lang.data = default_lang

    def perform():
        return helpdesk.send_reset_link(account, form.address.data, actor=g.staff.actor, reason=form.reason.data,
                                        policy=_policy(), lang=form.lang.data or default_lang)

    return _act(account, form, perform, lambda address: _("A password reset link was sent to %(address)s.",
                                                          address=address),
                title=_("Send a password reset link"),
                intro=_("The person gets the same e-mail and link as from the login page's password reset, at "
                        "the address you choose. Older links stop working."),
                fields=("address", "lang"), submit=_("Send the link"), no_address=not addresses)


@bp.route("/people/<album>/temporary-password", methods=["GET", "POST"])
@console_required
@fresh_factor_required
def set_temporary_password(album: str):
    account = _account(album)
    form = forms.TemporaryPasswordForm()

    def perform():
        helpdesk.set_temporary_password(account, form.password.data, actor=g.staff.actor, reason=form.reason.data,
                                        policy=_policy())

    return _act(account, form, perform,
                lambda _r: _("A temporary password was set. The person must change it at the next login; "
                             "every session of the account was ended."),
                title=_("Set a temporary password"),
                intro=_("Give the password to the person in a safe way (never by e-mail). It must follow the "
                        "password rules; the person chooses their own at the next login."),
                fields=("password", "confirm"), submit=_("Set the temporary password"), danger=True)


@bp.route("/people/<album>/unlock", methods=["GET", "POST"])
@console_required
def unlock(album: str):
    account = _account(album)
    form = forms.ActionForm()

    def perform():
        helpdesk.unlock(account, actor=g.staff.actor, reason=form.reason.data)

    return _act(account, form, perform, lambda _r: _("The account was unlocked."),
                title=_("Unlock the account"),
                intro=_("Wrong passwords are forgotten and the person can log in again at once."),
                submit=_("Unlock"), locked_until=account.locked_until, failed=account.failed_logins,
                permanent=account.locked_permanently)


@bp.route("/people/<album>/second-factor/reset", methods=["GET", "POST"])
@console_required
@fresh_factor_required
def reset_second_factor(album: str):
    account = _account(album)
    form = forms.ActionForm()

    def perform():
        return helpdesk.reset_second_factor(account, actor=g.staff.actor, reason=form.reason.data)

    return _act(account, form, perform,
                lambda _r: _("The second factor was reset. The person sets up a new one at the next login that "
                             "asks for it."),
                title=_("Reset the second factor"),
                intro=_("For a lost phone or security key, after checking the person's identity: the "
                        "authenticator app, security keys and recovery codes are forgotten."),
                submit=_("Reset the second factor"), danger=True)


@bp.route("/people/<album>/identifiers/add", methods=["GET", "POST"])
@console_required
@fresh_factor_required
def add_identifier(album: str):
    account = _account(album)
    form = forms.AddIdentifierForm()

    def perform():
        return helpdesk.add_identifier(account, form.kind.data, form.value.data, actor=g.staff.actor,
                                       reason=form.reason.data)

    return _act(account, form, perform, lambda ident: _("%(value)s was added.", value=ident.value),
                title=_("Add an alias or e-mail address"), fields=("kind", "value"), submit=_("Add"))


@bp.route("/people/<album>/identifiers/<int:identifier_id>/remove", methods=["GET", "POST"])
@console_required
@fresh_factor_required
def remove_identifier(album: str, identifier_id: int):
    account = _account(album)
    ident = next((i for i in account.identifiers if i.id == identifier_id), None)
    if ident is None:
        abort(404)
    form = forms.ActionForm()

    def perform():
        return helpdesk.remove_identifier(account, identifier_id, actor=g.staff.actor, reason=form.reason.data,
                                          policy=_policy())

    return _act(account, form, perform, lambda value: _("%(value)s was removed.", value=value),
                title=_("Remove %(value)s", value=ident.value),
                intro=_("The address can no longer be used to log in or to receive reset links for this account."),
                submit=_("Remove"), danger=True)


@bp.route("/people/<album>/identities/link", methods=["GET", "POST"])
@console_required
@fresh_factor_required
def link_identity(album: str):
    account = _account(album)
    form = forms.LinkIdentityForm()
    form.provider.choices = [SelectChoice(u["name"], u.get("label") or u["name"])
                             for u in current_app.config["UPSTREAM"]]

    def perform():
        return helpdesk.link_identity(account, form.provider.data, form.subject.data.strip(),
                                      (form.email.data or "").strip() or None, actor=g.staff.actor,
                                      reason=form.reason.data)

    return _act(account, form, perform,
                lambda u: _("The %(provider)s identity was linked.", provider=linking.label(u.provider)),
                title=_("Link an identity of another provider"),
                intro=_("After this the person can log in with that provider's account."),
                fields=("provider", "subject", "email"), submit=_("Link"))


@bp.route("/people/<album>/identities/<int:identity_id>/unlink", methods=["GET", "POST"])
@console_required
@fresh_factor_required
def unlink_identity(album: str, identity_id: int):
    account = _account(album)
    identity = next((u for u in linking.identities_of(account) if u.id == identity_id), None)
    if identity is None:
        abort(404)
    form = forms.ActionForm()
    name = f"{linking.label(identity.provider)} {identity.email or identity.subject}"

    def perform():
        helpdesk.unlink_identity(account, identity_id, actor=g.staff.actor, reason=form.reason.data)

    return _act(account, form, perform, lambda _r: _("%(identity)s was unlinked.", identity=name),
                title=_("Unlink %(identity)s", identity=name),
                intro=_("That account of the other provider can no longer be used to log in here."),
                submit=_("Unlink"), danger=True)


@bp.route("/people/<album>/pending/<int:pending_id>", methods=["GET", "POST"])
@console_required
@fresh_factor_required
def resolve_pending(album: str, pending_id: int):
    account = _account(album)
    pending = db.session.get(PendingLink, pending_id)
    if pending is None or not (pending.account_id == account.id
                               or (pending.email and pending.email in {i.value for i in account.identifiers})):
        abort(404)  # decided from the page of the person it waits for (as the person view lists them)
    form = forms.ResolvePendingForm()

    def perform():
        return helpdesk.resolve_pending(pending_id, form.decision.data, actor=g.staff.actor, reason=form.reason.data,
                                        account=account)

    def done(_p):
        return (_("The waiting link was linked to this account.") if form.decision.data == "link"
                else _("The waiting link was rejected."))

    return _act(account, form, perform, done, title=_("Decide a waiting link"),
                intro=_("%(provider)s login of %(who)s, waiting since %(when)s.",
                        provider=linking.label(pending.provider), who=pending.email or pending.subject,
                        when=_when(pending.created_at)),
                fields=("decision",), submit=_("Decide"))


@bp.route("/people/<album>/sessions/end", methods=["GET", "POST"])
@console_required
@fresh_factor_required
def end_sessions(album: str):
    account = _account(album)
    form = forms.EndSessionsForm()
    if not form.is_submitted():
        form.sid.data = (request.args.get("sid") or "")[:64]

    def perform():
        return helpdesk.end_sessions(account, actor=g.staff.actor, reason=form.reason.data,
                                     sid=(form.sid.data or "").strip() or None)

    one = bool(form.sid.data)
    target = None
    if one:
        target = next(({"auth_time": s.auth_time, "client_ip": s.client_ip,
                        "apps": ", ".join(a.service_name for a in sso.apps_summary(sso.participants(s)))}
                       for s in sso.sessions_of(account, _policy()) if s.sid == form.sid.data), None)
    return _act(account, form, perform,
                lambda n: ngettext("%(num)d session was ended.", "%(num)d sessions were ended.", n),
                title=_("End a session") if one else _("End every session"),
                intro=_("The person is logged out of the applications used in the session(s) as well."),
                fields=("sid",), submit=_("End the session") if one else _("End every session"), danger=True,
                target_session=target)


@bp.route("/people/<album>/merge", methods=["GET", "POST"])
@console_required
@fresh_factor_required
def merge(album: str):
    """Two steps: which account goes into this one (GET ?other=…), then both side by side with the reason."""
    survivor = _account(album)
    policy = _policy()
    if request.method == "GET" and not request.args.get("other"):
        return render_template("helpdesk/merge_pick.html", policy=policy, account=survivor,
                               person=_summary(survivor), pick=forms.PickOtherForm(request.args),
                               problem=None, title=_("Merge two accounts"))
    form = forms.MergeForm()
    other_ref = ((form.other.data if form.is_submitted() else request.args.get("other")) or "").strip()[:254]
    other = _find_other(other_ref)
    if other is None:
        pick = forms.PickOtherForm(request.args if request.method == "GET" else None)
        return render_template("helpdesk/merge_pick.html", policy=policy, account=survivor,
                               person=_summary(survivor), pick=pick,
                               problem=_("No account has the album number or address %(value)s.", value=other_ref),
                               title=_("Merge two accounts")), 400 if request.method == "POST" else 404
    if not form.is_submitted():
        form.other.data = other.album

    def perform():
        return helpdesk.merge(survivor, other, actor=g.staff.actor, reason=form.reason.data)

    def done(moved: dict):
        return _("%(other)s (%(other_album)s) was merged into this account.", other=other.display_name,
                 other_album=other.album)

    return _act(survivor, form, perform, done, template="helpdesk/merge.html", title=_("Merge two accounts"),
                submit=_("Merge into %(album)s", album=survivor.album), danger=True,
                sides=[_side(survivor, policy), _side(other, policy)], other=other)


def _find_other(value: str) -> Account | None:
    if not value:
        return None
    found = db.session.scalar(db.select(Account).where(db.func.lower(Account.album) == value.lower()))
    return found or accounts.find_any(value)


def _side(account: Account, policy) -> dict:
    """One column of the merge confirmation."""
    ov = helpdesk.overview(account, policy)
    last_login = next((e for e in ov.events if e.action == "login.succeeded"), None)
    return {"summary": _summary(account), "status": _status_words(ov.status),
            "identifiers": [(str(KIND_LABELS.get(i.kind, i.kind)), i.value) for i in account.identifiers],
            "identities": [f"{linking.label(u.provider)}: {u.email or u.subject}" for u in ov.identities],
            "pending": len(ov.pending), "sessions": len(ov.sessions), "has_password": bool(account.password_hash),
            "created_at": account.created_at, "imported_at": account.imported_at,
            "last_login": last_login.at if last_login else None}


@bp.route("/people/<album>/recovery-code", methods=["GET", "POST"])
@console_required
@fresh_factor_required
def issue_recovery_code(album: str):
    """After an in-person identity check: a one-time code the person uses to set a new password. Shown
    once, on the response to the POST (never stored in a readable form, never shown again)."""
    account = _account(album)
    form = forms.RecoveryCodeForm()
    minutes = _policy().data["helpdesk"]["recovery_code_minutes"]

    def perform():
        issued = assisted_recovery.issue(account, actor=g.staff.actor, reason=form.reason.data, policy=_policy())
        redeem = _redeem_url()
        return render_template("helpdesk/recovery_code.html", policy=_policy(), account=account,
                               person=_summary(account), code=issued.code,
                               expires_at=issued.record.expires_at, redeem_url=redeem,
                               title=_("One-time recovery code"))

    return _act(account, form, perform, lambda _page: None, title=_("Issue a one-time recovery code"),
                intro=_("For a person who cannot reach any of their mailboxes. Check their identity document in "
                        "person first. The code is shown once, works once and for %(minutes)s minutes; with it "
                        "the person sets a new password themselves.", minutes=minutes),
                fields=("id_checked",), submit=_("Issue the code"), danger=True)


def _redeem_url() -> str | None:
    """Where the person types the code (the recovery blueprint's page), as a full URL, if it exists."""
    if "recovery.code" in current_app.view_functions:
        return current_app.config["BASE_URL"] + url_for("recovery.code")
    return None


def _when(moment: dt.datetime | None) -> str:
    from flask_babel import format_datetime

    return format_datetime(moment, "short") if moment else ""


# --- the audit log ---------------------------------------------------------------------------------------

def _local_midnight(day: dt.date) -> dt.datetime:
    """00:00 of a day in Warsaw as naive UTC (how times are stored); the ends of the calendar clamp."""
    day = min(max(day, dt.date(1, 1, 2)), dt.date(9999, 12, 30))
    return dt.datetime.combine(day, dt.time(), tzinfo=ZONE).astimezone(dt.UTC).replace(tzinfo=None)


@bp.route("/audit", methods=["GET"])
@console_required
def audit_log():
    """Every audit event, newest first, filtered by action prefix, person, actor, reason and days."""
    form = forms.AuditFilterForm(request.args)
    problem = None
    result = None
    person = None
    if form.validate():
        account_id = None
        if form.person.data and form.person.data.strip():
            person = _find_other(form.person.data.strip())
            if person is None:
                problem = _("No account has the album number or address %(value)s.", value=form.person.data.strip())
            else:
                account_id = person.id
        if problem is None:
            f = audit.AuditFilter(action=(form.action.data or "").strip() or None, account_id=account_id,
                                  actor=(form.actor.data or "").strip().lower() or None,
                                  reason=(form.reason.data or "").strip() or None,
                                  since=_local_midnight(form.since.data) if form.since.data else None,
                                  until=_local_midnight(min(form.until.data, dt.date(9999, 12, 29))
                                                        + dt.timedelta(days=1)) if form.until.data else None)
            result = audit.page(f, _page_number(), AUDIT_PER_PAGE)
    rows = []
    if result is not None:
        ids = {e.account_id for e in result.items if e.account_id is not None}
        people = {a.id: a for a in db.session.scalars(db.select(Account).where(Account.id.in_(ids)))} if ids else {}
        for e in result.items:
            row = event_words.describe_event(e)
            row["person"] = people.get(e.account_id)
            row["details"] = _details(e)
            rows.append(row)
    args = {k: v for k, v in request.args.items() if k != "page" and v}

    def page_url(n: int) -> str:
        return url_for("helpdesk.audit_log", **args, page=n)

    return render_template("helpdesk/audit.html", policy=_policy(), form=form, problem=problem, result=result,
                           rows=rows, person=person,
                           prev_url=page_url(result.page - 1) if result and result.page > 1 else None,
                           next_url=page_url(result.page + 1) if result and result.page < result.pages else None,
                           action_prefixes=sorted({a.split(".")[0] + "." for a in _known_actions()}),
                           reason_codes=sorted(event_words.REASON_LABELS), title=_("Audit log")), \
        400 if problem is not None or form.errors else 200


def _known_actions() -> list[str]:
    return list(event_words.ACTION_LABELS) + ["login.succeeded", "login.failed", "cas.validate.failed", "import.completed"]


# The admin's service onboarding pages (idp/helpdesk/services.py) are views of this blueprint too.
from idp.helpdesk import services  # noqa: E402,F401
