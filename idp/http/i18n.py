"""Language: ?lang= (sticks in a cookie), then the cookie, then Accept-Language, then the policy."""
from __future__ import annotations

from urllib.parse import urlencode

from flask import Flask, current_app, g, has_request_context, request

LANGUAGES = ("pl", "en")
COOKIE = "idp_lang"


def select_locale() -> str:
    if not has_request_context():  # CLI: the institution's language
        return current_app.extensions["idp.policy"].data["login"]["default_language"]
    asked = request.args.get("lang")
    if asked in LANGUAGES:
        g.set_lang_cookie = asked
        return asked
    cookie = request.cookies.get(COOKIE)
    if cookie in LANGUAGES:
        return cookie
    best = request.accept_languages.best_match(LANGUAGES)
    return best or current_app.extensions["idp.policy"].data["login"]["default_language"]


def url_with_lang(code: str) -> str:
    """The current page in another language (keeps every other query parameter)."""
    args = request.args.to_dict(flat=False)
    args["lang"] = [code]
    return request.path + "?" + urlencode(args, doseq=True)


def init_app(app: Flask) -> None:
    app.jinja_env.globals["url_with_lang"] = url_with_lang

    @app.after_request
    def _remember(response):
        lang = g.get("set_lang_cookie")
        if lang:
            response.set_cookie(COOKIE, lang, max_age=365 * 24 * 3600, samesite="Lax",
                                secure=app.config["BASE_URL"].startswith("https://"),
                                path=app.config["COOKIE_PATH"], httponly=True)
        return response
