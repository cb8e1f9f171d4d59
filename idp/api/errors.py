"""Errors of the admin API: always JSON `{"error": code, "message": words}` with the right status, never an
HTML page — also for unknown paths (404), wrong methods (405), bodies that are not JSON (400), rate limits
(429) and crashes (500, with a reference code like the error pages)."""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, default_exceptions

from idp.core import audit
from idp.extensions import db

log = logging.getLogger("idp.api")

#: The realm in WWW-Authenticate challenges (RFC 6750 §3).
REALM = "idp admin API"


class ApiError(Exception):
    """Stop a request with a JSON error: status, machine code, message for people, extra fields."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                   **extra: Any):
    response = jsonify({"error": code, "message": str(message), **extra})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def challenge(error: str | None = None, description: str | None = None) -> dict[str, str]:
    """The WWW-Authenticate header of a 401/403 (RFC 6750 §3: no error code when no token was sent)."""
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'")))
    return {"WWW-Authenticate": "Bearer " + ", ".join(parts)}


#: werkzeug exception name -> our code (snake case of the HTTP reason, a few with better names).
_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          413: "too_large", 415: "unsupported_media_type", 429: "rate_limited", 500: "internal_error"}


def _http_error(exc: HTTPException):
    status = exc.code or 500
    code = _CODES.get(status) or (exc.name or "error").lower().replace(" ", "_").replace("'", "")
    headers: dict[str, str] = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    if status == 429:
        # flask-limiter adds Retry-After and X-RateLimit-* after the request
        message = _("Too many requests: slow down and try again in a moment.")
    elif status == 404:
        message = _("There is nothing at this address in the admin API (see /api/v1/openapi.json).")
    elif status == 405:
        message = _("This address does not accept this method.")
    else:
        message = exc.description or exc.name
    response = error_response(status, code, message, headers=headers)
    # Keep the headers the exception brought (flask-limiter's Retry-After and X-RateLimit-*).
    for name, value in exc.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers.setdefault(name, value)
    return response


def _crash(exc: Exception):
    log.exception("admin API: unhandled error")
    db.session.rollback()
    extra: dict[str, Any] = {}
    try:
        event = audit.record("api.error", client_ip=request.remote_addr, reason="500",
                             data={"path": request.path[:512], "method": request.method,
                                   "error": type(exc).__name__})
        extra["reference"] = audit.reference(event)
    except Exception:  # the database may be what failed: the answer still says what happened
        log.exception("could not record the API error")
        db.session.rollback()
    return error_response(500, "internal_error",
                          _("The service could not complete the request. Please try again in a moment."), **extra)


def init(bp: Blueprint, prefix: str) -> None:
    """JSON errors for everything under `prefix` (the blueprint's URL prefix)."""

    @bp.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers, **exc.extra)

    # The app's own handlers are registered per status code, and Flask prefers a handler for the code
    # (even the app's) to a blueprint's generic one: register ours for every code.
    for status in default_exceptions:
        bp.register_error_handler(status, _http_error)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(Exception, _crash)

    @bp.before_app_request
    def _routing_error():
        """Unknown paths and wrong methods under the prefix never reach a blueprint view, so no blueprint
        error handler sees them: answer them here, before the app's HTML error page would."""
        exc = request.routing_exception
        if exc is None or not (request.path == prefix or request.path.startswith(prefix + "/")):
            return None
        if isinstance(exc, (NotFound, MethodNotAllowed)):
            return _http_error(exc)
        return None  # a redirect (e.g. a missing trailing slash) is fine as it is
