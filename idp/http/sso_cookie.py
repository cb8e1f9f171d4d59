"""The ticket-granting cookie: distinctive name, HttpOnly, SameSite=Lax, Secure + __Host- on https,
no Max-Age (it ends with the browser; the server-side session has its own lifetimes)."""
from __future__ import annotations

from flask import Response, current_app, request

from idp.core import sso
from idp.models import SsoSession


def cookie_name() -> str:
    name = f"{current_app.config['COOKIE_PREFIX']}_tgc"
    return "__Host-" + name if current_app.config["BASE_URL"].startswith("https://") else name


def current_tgt() -> str | None:
    return request.cookies.get(cookie_name())


def current_session(touch: bool = True) -> SsoSession | None:
    return sso.find(current_tgt(), current_app.extensions["idp.policy"], touch=touch)


def set_tgc(response: Response, tgt: str) -> None:
    https = current_app.config["BASE_URL"].startswith("https://")
    # __Host- requires Path=/ and Secure.
    response.set_cookie(cookie_name(), tgt, httponly=True, samesite="Lax", secure=https,
                        path="/" if https else current_app.config["COOKIE_PATH"])


def clear_tgc(response: Response) -> None:
    https = current_app.config["BASE_URL"].startswith("https://")
    response.delete_cookie(cookie_name(), path="/" if https else current_app.config["COOKIE_PATH"],
                           secure=https, httponly=True, samesite="Lax")
