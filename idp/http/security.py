"""Security headers on every response; no-store on every page that may show personal data."""
from __future__ import annotations

import secrets

from flask import Flask, g, request


def csp_nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def client_ip() -> str | None:
    return request.remote_addr


def init_app(app: Flask) -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    @app.after_request
    def _headers(response):
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: Chromium sends `Origin: null` under no-referrer (INTEROP.md).
        h.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            # No form-action: Chromium applies it to the redirect to the app after the login POST.
            h.setdefault("Content-Security-Policy",
                         f"default-src 'self'; script-src 'self' 'nonce-{csp_nonce()}'; style-src 'self'; "
                         "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
            h.setdefault("X-Frame-Options", "DENY")
        if request.endpoint != "static" and "Cache-Control" not in h:
            # Views that may be cached say so themselves (discovery, JWKS); everything else is private.
            h["Cache-Control"] = "no-store"
            h["Pragma"] = "no-cache"
        if app.config["BASE_URL"].startswith("https://"):
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
