"""Error pages people can act on: what happened, what to do, whom to ask, a reference code."""
from __future__ import annotations

import logging

from flask import Flask, current_app, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from idp.core import audit
from idp.core.errors import SharedStateUnavailable
from idp.extensions import db

log = logging.getLogger("idp.errors")


def error_page(title: str, message: str, status: int, *, hint: str | None = None, record: bool = True,
               event=None, next_migration=None):
    """An error page with a reference code the helpdesk can look up (`idp events show CODE`): the code
    names the audit event of what went wrong (`event`), or one recording the page itself.
    `next_migration` (naive UTC, see provisioning.next_migration): shown when what would fix the
    problem arrives with the next import from the student records system."""
    ref = audit.reference(event) if event is not None else None
    if record and event is None:
        try:
            event = audit.record("page.error", reason=str(status), client_ip=request.remote_addr,
                                 data={"path": request.path[:512], "title": str(title)[:200],
                                       "detail": str(hint)[:500] if hint else None})
            ref = audit.reference(event)
        except Exception:  # the database may be what failed: the page still helps
            log.exception("could not record the error page")
            db.session.rollback()
    return render_template("errors/error.html", title=title, message=message, hint=hint, ref=ref,
                           next_migration=next_migration, policy=current_app.extensions["idp.policy"]), status


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc):
        return error_page(_("The form has expired"),
                          _("The page was open too long or cookies are blocked. Go back, reload the page "
                            "and try again."), 400)

    @app.errorhandler(404)
    def _not_found(exc):
        return error_page(_("Page not found"), _("There is no page at this address."), 404, record=False)

    @app.errorhandler(405)
    def _method(exc):
        return error_page(_("Not allowed"), _("This address does not accept this kind of request."), 405,
                          record=False)

    @app.errorhandler(SharedStateUnavailable)
    def _shared_state(exc):
        log.error("shared state unavailable: %s", exc)
        response, status = error_page(_("Login is briefly unavailable"),
                                      _("The login service cannot reach one of its parts right now. "
                                        "Please try again in a minute."), 503)
        return response, status, {"Retry-After": "30"}

    @app.errorhandler(Exception)
    def _internal(exc):
        if isinstance(exc, HTTPException):
            return error_page(exc.name, exc.description or "", exc.code or 500)
        log.exception("unhandled error")
        return error_page(_("Something went wrong"),
                          _("The service could not complete your request. Please try again in a moment."), 500)
