"""`POST /mail/verify-password`: a registered mail service asks whether a person's password is right.

The caller authenticates with HTTP Basic and its OIDC client credentials (RFC 6749 §2.3.1 encoding); its
registry entry must list the grant type `password_verification`. The body (form or JSON) carries
`username`, `password`, `client_ip` (the IMAP client's address, Dovecot's %{rip}: required, so the
per-address rules apply) and optionally `protocol` (imap, pop3, submission — recorded with refusals
after a correct password). Answers are JSON (docs/mail.md):

- 200 `{"ok": true, "username": …}` — the canonical username the mailbox belongs to;
- 403 `{"ok": false, "reason": …, "message": …}` — "invalid_credentials" for every wrong password or
  unknown login, or a reason told only after a correct password (core/mail_login.AFTER_CORRECT_PASSWORD)
  with a `reference` code for the helpdesk;
- 429 `{"ok": false, "reason": "throttled", "retry_after": …}` with `Retry-After`;
- 400 / 401 / 403 / 503 `{"error": …}` — the request, not the person, was refused (the mail server should
  answer "try again later" and log it): a malformed body, unknown client credentials, a client that is not a
  mail service, the shared state (Redis) down.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import time
from urllib.parse import unquote_plus

from flask import current_app, jsonify, request, url_for
from flask_babel import gettext as _
from limits import parse_many
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from idp.core import audit, mail_login
from idp.core.errors import SharedStateUnavailable
from idp.extensions import csrf, limiter
from idp.http import authflow
from idp.http.security import client_ip as peer_address
from idp.mailauth import bp

log = logging.getLogger("idp.mailauth")

_FIELDS = ("username", "password", "client_ip", "protocol")


def _policy():
    return current_app.extensions["idp.policy"]


def _error(status: int, code: str, description: str):
    response = jsonify({"error": code, "error_description": description})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="mail", charset="UTF-8"'
    return response


def _body() -> dict[str, str] | None:
    """The request's fields, from JSON or a form; None when malformed."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return None
    else:
        data = request.form.to_dict()
    out = {}
    for name in _FIELDS:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            return None
        out[name] = value or ""
    return out


def _address(value: str) -> str | None:
    """The IMAP client's address as reported, normalised; None when not given. ValueError: not an address."""
    return str(ipaddress.ip_address(value.strip())) if value else None


#: Refused client authentications one caller address may make before the endpoint stops answering it for
#: the rest of the minute — and stops writing an audit event for each: wrong secrets must not flood the log.
REFUSED_CLIENTS_LIMIT = "20/minute"


def _client_refusals(*, count: bool) -> int | None:
    """Seconds the caller must wait after too many refused client authentications (None: it may try).
    With count=True, one more refusal is counted."""
    if not limiter.enabled:
        return None
    item = parse_many(REFUSED_CLIENTS_LIMIT)[0]
    ids = (current_app.config.get("RATELIMIT_KEY_PREFIX") or "", "mail-client-refused", peer_address() or "-")
    try:
        if count:
            limiter.limiter.hit(item, *ids)
            return None
        if limiter.limiter.test(item, *ids):
            return None
        reset = limiter.limiter.get_window_stats(item, *ids).reset_time
    except (RedisError, SQLAlchemyError):  # a flood guard only
        log.warning("mail client refusals not counted: their store (Redis or the database) unavailable")
        return None
    return max(1, math.ceil(reset - time.time()))


def _message(verdict: mail_login.Verdict, service_name: str) -> str:
    """One line a mail program can show: the login page's "why" page in its own sentences (the same
    translations), with the reference code for the helpdesk."""
    reason = verdict.reason
    if reason == "password_change_required":
        return _("Your password must be changed before you can use %(service)s: log in at %(url)s.",
                 service=service_name, url=current_app.config["BASE_URL"] + url_for("cas.login"))
    if reason == "second_factor_required":
        return _("%(service)s needs a login with your second factor: sign in through the browser (OAuth) "
                 "in your mail program.", service=service_name)
    if reason == "account_left":
        why = _("The university records show that you no longer study or work at the university.")
    elif reason == "not_provisioned":
        why = _("You are logged in, but you do not have an account in %(service)s", service=service_name) + "."
    else:
        return _("Invalid login or password")
    if verdict.event is None:
        return why
    label = _("Reference code for the helpdesk:")
    return f"{why} {label} {audit.reference(verdict.event)}"


@bp.route("/verify-password", methods=["POST"])
@csrf.exempt  # no cookies: the caller authenticates with its own client credentials
def verify_password():
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return _error(401, "invalid_client", "HTTP Basic authentication with the client credentials is required.")
    wait = _client_refusals(count=False)
    if wait is not None:
        response = _error(429, "slow_down", "Too many refused client authentications from this address.")
        response.headers["Retry-After"] = str(wait)
        return response
    try:
        svc = mail_login.mail_service(unquote_plus(auth.username or ""), unquote_plus(auth.password or ""),
                                      current_app.config["SECRET_KEY"], client_ip=peer_address())
    except mail_login.ClientRefused as refused:
        _client_refusals(count=True)
        if refused.code == "invalid_client":
            return _error(401, "invalid_client", "Unknown client or wrong client secret.")
        return _error(403, "unauthorized_client", "This client may not have passwords verified "
                      "(its registry entry lacks the grant type password_verification).")
    body = _body()
    if body is None:
        return _error(400, "invalid_request", "The body must be a form or a JSON object of strings.")
    try:
        address = _address(body["client_ip"])
    except ValueError:
        return _error(400, "invalid_request", "client_ip is not an IP address.")
    if address is None:  # without it the per-address rules could not apply: one client could spray everyone
        return _error(400, "invalid_request", "client_ip (the IMAP client's address, Dovecot's %{rip}) is "
                      "required.")
    username, password = body["username"].strip(), body["password"]
    if not username or not password or len(username) > mail_login.MAX_IDENTIFIER \
            or len(password) > authflow.MAX_PASSWORD:
        return _error(400, "invalid_request", "username and password are required (at most 254 and "
                      f"{authflow.MAX_PASSWORD} characters).")
    try:
        wait = authflow.password_post_limited(address)  # the login page's bucket, for the IMAP client
        verdict = None
        if wait is None:
            verdict = mail_login.verify(svc, username, password, _policy(), client_ip=address,
                                        protocol=body["protocol"][:20] or None)
            wait = verdict.retry_after if verdict.reason == "throttled" else None
    except SharedStateUnavailable:
        log.error("mail password check refused: the shared state store is unavailable")
        return _error(503, "temporarily_unavailable", "The login service cannot check passwords right now.")
    if wait is not None:
        response = jsonify({"ok": False, "reason": "throttled", "retry_after": wait,
                            "message": authflow.wait_message(wait, rate_limited=verdict is None)})
        response.status_code = 429
        response.headers["Retry-After"] = str(wait)
        return response
    if verdict.ok:
        return jsonify({"ok": True, "username": verdict.username})
    out = {"ok": False, "reason": verdict.reason, "message": _message(verdict, svc.name)}
    if verdict.event is not None and verdict.reason in mail_login.AFTER_CORRECT_PASSWORD:
        out["reference"] = audit.reference(verdict.event)
    response = jsonify(out)
    response.status_code = 403
    return response
