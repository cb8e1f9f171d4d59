"""The admin API's routes: the console's search, person view and actions for scripts (JSON in, JSON out).

Every action takes a JSON body with a "reason", acts as the token's owner through the same core functions
as the console (idp/core/helpdesk.py) with `via="api"`, and answers with the audit event it recorded.
The OpenAPI document (idp/api/openapi.py) describes every route here; tests/api/test_openapi.py checks both
ways.
"""
from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, request
from flask_babel import gettext as _

from idp.api import bp, openapi
from idp.api import render as out
from idp.api.auth import caller, rate_key, token_required
from idp.api.errors import ApiError, error_response
from idp.api.errors import init as init_errors
from idp.api.params import action_body, body, int_arg, moment, text
from idp.core import accounts, assisted_recovery, audit, helpdesk
from idp.core.errors import DomainError
from idp.extensions import client_address_key, db, limiter
from idp.models import Account, AuditEvent, Service

#: Every route, per token (or per client address without one).
LIMIT_PER_CALLER = "120 per minute;3000 per hour"
#: Every route, per client address: tokens are not guessable, but nobody should try at this rate either.
LIMIT_PER_ADDRESS = "300 per minute"
#: Actions (POST, DELETE) per token, on top of the above: a runaway script cannot rewrite everyone at once.
LIMIT_ACTIONS = "30 per minute;600 per hour"
PER_PAGE = 25
MAX_PER_PAGE = 100

init_errors(bp, bp.url_prefix)


def _public() -> bool:
    """The OpenAPI document is public and static: no limit (tools fetch it often)."""
    return request.endpoint == "api.openapi_document"


limiter.shared_limit(LIMIT_PER_CALLER, scope="api", key_func=rate_key, exempt_when=_public)(bp)
limiter.shared_limit(LIMIT_PER_ADDRESS, scope="api-address",
                     key_func=lambda: "api-" + client_address_key(), exempt_when=_public)(bp)
_action_limit = limiter.shared_limit(LIMIT_ACTIONS, scope="api-actions", key_func=rate_key,
                                     override_defaults=False)


def _policy():
    return current_app.extensions["idp.policy"]


def _login_kinds() -> set[str]:
    return set(_policy().data["login"]["identifiers"])


# --- lookups -----------------------------------------------------------------------------------------------

def _person(album: str) -> Account:
    account = db.session.scalar(db.select(Account).where(db.func.lower(Account.album) == album.strip().lower()))
    if account is None:
        raise ApiError(404, "unknown_person", _("There is no person with the album number %(album)s.",
                                                album=album[:32]))
    return account


def _event_since(before: int) -> AuditEvent | None:
    """The helpdesk event the action just recorded (the first one by this actor after `before`)."""
    query = (db.select(AuditEvent).where(AuditEvent.id > before, AuditEvent.action.startswith("helpdesk."),
                                         AuditEvent.actor == caller().actor.name)
             .order_by(AuditEvent.id).limit(1))
    return db.session.scalar(query)


def _last_event_id() -> int:
    return db.session.scalar(db.select(db.func.max(AuditEvent.id))) or 0


def _done(before: int, status: int = 200, **fields: Any):
    """The answer of an action: what it returned, and the audit event it recorded."""
    recorded = _event_since(before)
    body = {**fields, "event": out.event(recorded) if recorded is not None else None}
    response = jsonify(body)
    response.status_code = status
    return response


# --- errors of the core, as API errors -----------------------------------------------------------------------

#: Refusals that are about the request rather than the state of the account.
_REFUSAL_STATUS = {"not_found": 404, "bad_kind": 400, "bad_address": 400, "bad_decision": 400,
                   "bad_subject": 400}


@bp.errorhandler(helpdesk.ReasonRequired)
def _reason_required(exc: helpdesk.ReasonRequired):
    return error_response(400, "reason_required", str(exc), field="reason")


@bp.errorhandler(accounts.PasswordRejected)
def _password_rejected(exc: accounts.PasswordRejected):
    return error_response(422, "password_rejected", _("The password policy refuses this password."),
                          violations=[{"code": v.code, "message": str(v.message)} for v in exc.violations])


@bp.errorhandler(DomainError)
def _refused(exc: DomainError):
    """Refused (and the linking errors below it): the action cannot be done; the message says why."""
    code = exc.code if exc.code != "error" else "refused"
    return error_response(_REFUSAL_STATUS.get(code, 409), code, str(exc))


# --- routes ------------------------------------------------------------------------------------------------

@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 description of this API (no token needed)."""
    response = jsonify(openapi.document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/me")
@token_required()
def me():
    """Whom the token acts as: the audit actor and the roles."""
    who = caller()
    return jsonify({"actor": who.actor.name, "album": who.account.album, "name": who.account.display_name,
                    "roles": sorted(who.roles)})


@bp.get("/people")
@token_required()
def search_people():
    """Find people: album number, any address or alias, name, PESEL (11 digits) or reference code (E123)."""
    return _search((request.args.get("q") or "").strip()[:200])


@bp.post("/people/search")
@token_required()
def search_people_post():
    """The same search with the query in the body: a PESEL then stays out of URLs and access logs."""
    data = body()
    query = data.get("q")
    if not isinstance(query, str):
        raise ApiError(400, "invalid_request", _("The field %(name)s is required.", name="q"), field="q")
    return _search(query.strip()[:200])


def _search(query: str):
    per_page = int_arg("per_page", PER_PAGE, high=MAX_PER_PAGE)
    page = int_arg("page", 1, high=100_000)
    result = helpdesk.search(query, pesel_key=current_app.config["PESEL_KEY"], limit=per_page,
                             offset=(page - 1) * per_page)
    return jsonify({"kind": result.kind, "total": result.total, "page": page, "per_page": per_page,
                    "pages": max(1, -(-result.total // per_page)),
                    "items": [out.person_summary(a) for a in result.accounts],
                    "event": out.event(result.event) if result.event is not None else None})


@bp.get("/people/<album>")
@token_required()
def person(album: str):
    """One person's situation: identifiers, status, entitlements, links, sessions, recent events."""
    view = helpdesk.overview(_person(album), _policy())
    return jsonify(out.overview(view, _login_kinds()))


@bp.post("/people/<album>/reset-link")
@token_required()
@_action_limit
def send_reset_link(album: str):
    account = _person(album)
    data, reason = action_body()
    address = text(data, "address", required=False)
    if address is None:
        addresses = helpdesk.reset_addresses(account)
        address = addresses[0] if addresses else ""
    lang = text(data, "lang", required=False, max_length=8) or _policy().data["login"]["default_language"]
    if lang not in ("pl", "en"):
        raise ApiError(400, "invalid_request", _("The field %(name)s must be pl or en.", name="lang"),
                       field="lang")
    before = _last_event_id()
    sent_to = helpdesk.send_reset_link(account, address, actor=caller().actor, reason=reason, policy=_policy(),
                                       lang=lang)
    return _done(before, sent_to=sent_to)


@bp.post("/people/<album>/temporary-password")
@token_required()
@_action_limit
def set_temporary_password(album: str):
    account = _person(album)
    data, reason = action_body()
    password = data.get("password")
    if not isinstance(password, str) or not password:
        raise ApiError(400, "invalid_request", _("The field %(name)s is required.", name="password"),
                       field="password")
    before = _last_event_id()
    helpdesk.set_temporary_password(account, password, actor=caller().actor, reason=reason, policy=_policy())
    return _done(before, temporary=True)


@bp.post("/people/<album>/unlock")
@token_required()
@_action_limit
def unlock(album: str):
    account = _person(album)
    _data, reason = action_body()
    before = _last_event_id()
    helpdesk.unlock(account, actor=caller().actor, reason=reason)
    return _done(before, unlocked=True)


@bp.post("/people/<album>/second-factor/reset")
@token_required()
@_action_limit
def reset_second_factor(album: str):
    account = _person(album)
    _data, reason = action_body()
    before = _last_event_id()
    removed = helpdesk.reset_second_factor(account, actor=caller().actor, reason=reason)
    return _done(before, removed=removed)


@bp.post("/people/<album>/identifiers")
@token_required()
@_action_limit
def add_identifier(album: str):
    account = _person(album)
    data, reason = action_body()
    kind = text(data, "kind", max_length=32)
    value = text(data, "value")
    before = _last_event_id()
    ident = helpdesk.add_identifier(account, kind, value, actor=caller().actor, reason=reason)
    return _done(before, 201, identifier=out.identifier(ident, _login_kinds()))


@bp.delete("/people/<album>/identifiers/<int:identifier_id>")
@token_required()
@_action_limit
def remove_identifier(album: str, identifier_id: int):
    account = _person(album)
    _data, reason = action_body()
    before = _last_event_id()
    removed = helpdesk.remove_identifier(account, identifier_id, actor=caller().actor, reason=reason,
                                         policy=_policy())
    return _done(before, removed=removed)


@bp.post("/people/<album>/identities")
@token_required()
@_action_limit
def link_identity(album: str):
    account = _person(album)
    data, reason = action_body()
    provider = text(data, "provider", max_length=64)
    subject = text(data, "subject", max_length=255)
    email = text(data, "email", required=False)
    before = _last_event_id()
    linked = helpdesk.link_identity(account, provider, subject, email, actor=caller().actor, reason=reason)
    return _done(before, 201, identity=out.identity(linked))


@bp.delete("/people/<album>/identities/<int:identity_id>")
@token_required()
@_action_limit
def unlink_identity(album: str, identity_id: int):
    account = _person(album)
    _data, reason = action_body()
    before = _last_event_id()
    helpdesk.unlink_identity(account, identity_id, actor=caller().actor, reason=reason)
    return _done(before, unlinked=identity_id)


@bp.post("/pending-links/<int:pending_id>/resolve")
@token_required()
@_action_limit
def resolve_pending(pending_id: int):
    data, reason = action_body()
    decision = text(data, "decision", max_length=16)
    album = text(data, "album", required=False, max_length=32)
    target = _person(album) if album else None
    before = _last_event_id()
    pending = helpdesk.resolve_pending(pending_id, decision, actor=caller().actor, reason=reason, account=target)
    linked_to = db.session.get(Account, pending.account_id) if pending.account_id else target
    return _done(before, pending_link=out.pending_link(pending, linked_to))


@bp.post("/people/<album>/merge")
@token_required()
@_action_limit
def merge(album: str):
    survivor = _person(album)
    data, reason = action_body()
    other = _person(text(data, "duplicate", max_length=32))
    before = _last_event_id()
    moved = helpdesk.merge(survivor, other, actor=caller().actor, reason=reason)
    return _done(before, survivor=out.person_ref(survivor), merged=out.person_ref(other), moved=moved)


@bp.post("/people/<album>/sessions/end")
@token_required()
@_action_limit
def end_sessions(album: str):
    account = _person(album)
    data, reason = action_body()
    sid = text(data, "sid", required=False, max_length=64)
    before = _last_event_id()
    ended = helpdesk.end_sessions(account, actor=caller().actor, reason=reason, sid=sid)
    return _done(before, ended=ended)


@bp.post("/people/<album>/recovery-code")
@token_required()
@_action_limit
def issue_recovery_code(album: str):
    """A one-time recovery code after an in-person ID check: returned once, never again."""
    account = _person(album)
    _data, reason = action_body()
    before = _last_event_id()
    issued = assisted_recovery.issue(account, actor=caller().actor, reason=reason, policy=_policy())
    return _done(before, 201, code=issued.code, expires_at=out.when(issued.record.expires_at))


@bp.get("/audit")
@token_required()
def audit_log():
    """The audit log, newest first, filtered (action prefix, person, actor, reason code, time)."""
    account_id = None
    wanted = (request.args.get("account") or "").strip()
    if wanted:
        found = accounts.find_any(wanted)
        if found is None:
            raise ApiError(404, "unknown_person", _("There is no person with the identifier %(identifier)s.",
                                                    identifier=wanted[:254]))
        account_id = found.id
    filters = audit.AuditFilter(action=(request.args.get("action") or "").strip()[:64] or None,
                                account_id=account_id,
                                actor=(request.args.get("actor") or "").strip()[:254] or None,
                                reason=(request.args.get("reason") or "").strip()[:64] or None,
                                since=moment("since"), until=moment("until", end=True))
    result = audit.page(filters, int_arg("page", 1, high=1_000_000),
                        int_arg("per_page", 50, high=500))
    return jsonify({"total": result.total, "page": result.page, "per_page": result.per_page,
                    "pages": result.pages, "items": [out.event(e) for e in result.items]})


@bp.get("/services")
@token_required("admin")
def services():
    """The service registry (CAS services and OIDC clients), without client secrets."""
    rows = db.session.scalars(db.select(Service).order_by(Service.name))
    return jsonify({"items": [out.service(s) for s in rows]})

