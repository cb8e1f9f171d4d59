"""Error pages people can act on: what happened, what to do, whom to ask, a reference code."""
from __future__ import annotations

import logging
import secrets

from flask import Flask, current_app, render_template
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("idp.errors")


def error_page(title: str, message: str, status: int, *, hint: str | None = None):
    ref = secrets.token_hex(4).upper()
    return render_template("errors/error.html", title=title, message=message, hint=hint, ref=ref,
                           policy=current_app.extensions["idp.policy"]), status


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc):
        return error_page(_("The form has expired"),
                          _("The page was open too long or cookies are blocked. Go back, reload the page "
                            "and try again."), 400)

    @app.errorhandler(404)
    def _not_found(exc):
        return error_page(_("Page not found"), _("There is no page at this address."), 404)

    @app.errorhandler(405)
    def _method(exc):
        return error_page(_("Not allowed"), _("This address does not accept this kind of request."), 405)

    @app.errorhandler(Exception)
    def _internal(exc):
        if isinstance(exc, HTTPException):
            return error_page(exc.name, exc.description or "", exc.code or 500)
        log.exception("unhandled error")
        return error_page(_("Something went wrong"),
                          _("The service could not complete your request. Please try again in a moment."), 500)
