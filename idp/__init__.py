"""idp: central authentication service (CAS 3.0, OpenID Connect) for universities."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from idp import config as config_mod
from idp import sqlite_gate

PACKAGE_DIR = Path(__file__).resolve().parent
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):  # pragma: no cover - trivial
    """SQLite in WAL mode with a busy timeout, so several gunicorn workers can share the file.

    synchronous=NORMAL (SQLite's advice for WAL): a commit no longer waits for the disk (2.5 ms each here,
    holding the write lock); a power cut — not a crash — may lose the last transactions, never the
    database's consistency. Production runs on PostgreSQL (docs/operations.md)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


def create_app(overrides: dict[str, Any] | None = None, instance: str | Path | None = None) -> Flask:
    """Build the app: config -> extensions -> blueprints -> error handlers.

    Raises config.ConfigError or policy.PolicyError (with file, key and reason) on a bad deployment.
    """
    from idp.core import passwords
    from idp.core.policy import load_policy
    from idp.extensions import babel, csrf, db, limiter, mail, migrate, shared
    from idp.http import errors, i18n, security

    overrides = dict(overrides or {})
    policy_overrides = overrides.pop("POLICY_OVERRIDES", None)
    folder = config_mod.instance_path(instance)
    cfg = config_mod.load(folder, overrides)
    app = Flask(__name__, instance_path=str(folder))
    app.config.update(cfg)
    if cfg["TRUSTED_PROXIES"] > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = cfg["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)

    base = urlsplit(cfg["BASE_URL"])
    https = base.scheme == "https"
    cookie_path = base.path.rstrip("/") or "/"
    database_url = cfg["DATABASE_URL"]
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url,
        # A PostgreSQL that does not answer fails a request (and /readyz) in seconds, not at TCP's timeout.
        # SQLite: writers of several workers queue on an OS lock (idp/sqlite_gate.py), not in SQLite's
        # sleeping busy handler.
        SQLALCHEMY_ENGINE_OPTIONS=({"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
                                   if not database_url.startswith("sqlite") else sqlite_gate.engine_options(database_url)),
        COOKIE_PATH=cookie_path,
        # Distinctive names: apps on other ports of the same host share the browser's cookie jar.
        SESSION_COOKIE_NAME=("__Host-" if https else "") + f"{cfg['COOKIE_PREFIX']}_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
        SESSION_COOKIE_PATH="/" if https else cookie_path,
        PREFERRED_URL_SCHEME=base.scheme,
        WTF_CSRF_TIME_LIMIT=4 * 3600,
        WTF_CSRF_SSL_STRICT=https,
        BABEL_DEFAULT_LOCALE="pl",
        BABEL_DEFAULT_TIMEZONE="Europe/Warsaw",
        BABEL_TRANSLATION_DIRECTORIES=str(PACKAGE_DIR / "translations"),
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        # Without Redis, the counters are rows of the database every node shares (idp/core/limit_store.py).
        RATELIMIT_STORAGE_URI=cfg["REDIS_URL"] or "idp-sql://",  # limit_store.SCHEME
        # The limits library puts its own "LIMITS:" in front of every Redis key unless told the prefix:
        # keys are then <REDIS_PREFIX>limits:LIMITER/..., inside the IdP's namespace (a Redis ACL on idp:*).
        RATELIMIT_STORAGE_OPTIONS={"key_prefix": cfg["REDIS_PREFIX"] + "limits"} if cfg["REDIS_URL"] else {},
        RATELIMIT_KEY_PREFIX=cfg["REDIS_PREFIX"] + "limits",
        RATELIMIT_HEADERS_ENABLED=True,
        MAIL_SUPPRESS_SEND=False,  # the outbox decides what is sent; tests use an SMTP sink
    )
    logging.basicConfig(level=cfg["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The app's own loggers follow LOG_LEVEL whatever an earlier app in this process set (the CLI quiets
    # them for its commands; `idp serve` workers and tests build apps after it).
    logging.getLogger("idp").setLevel(cfg["LOG_LEVEL"])

    app.extensions["idp.policy"] = load_policy(cfg["POLICY"], policy_overrides)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    babel.init_app(app, locale_selector=i18n.select_locale)
    csrf.init_app(app)
    shared.init_app(app)
    # Flask-Limiter keeps the first app's key prefix for good; a process serves one app, but tests build
    # many, each with its own Redis namespace.
    from idp.core import limit_store  # noqa: F401  (registers the idp-sql:// storage)

    limiter._key_prefix = None
    limiter._storage_options = {}  # and merges every app's storage options into the ones before
    limiter.init_app(app)
    mail.init_app(app)
    passwords.init_app(app)
    security.init_app(app)
    i18n.init_app(app)
    errors.init_app(app)

    from idp import models  # noqa: F401  (register tables)
    from idp.cas import bp as cas_bp
    from idp.login import bp as login_bp
    from idp.recovery import bp as recovery_bp

    app.register_blueprint(login_bp)
    app.register_blueprint(cas_bp)
    app.register_blueprint(recovery_bp)
    from idp.account import bp as account_bp

    app.register_blueprint(account_bp)
    from idp.activation import bp as activation_bp
    from idp.federation import bp as federation_bp

    app.register_blueprint(activation_bp)
    app.register_blueprint(federation_bp)
    from idp.api import bp as api_bp
    from idp.helpdesk import bp as helpdesk_bp
    from idp.mfa import bp as mfa_bp

    app.register_blueprint(mfa_bp)
    app.register_blueprint(helpdesk_bp)
    app.register_blueprint(api_bp)
    csrf.exempt(api_bp)  # bearer tokens, no cookies: nothing for a cross-site request to ride on
    from idp.mailauth import bp as mailauth_bp  # /mail/verify-password for mail servers (docs/mail.md)

    app.register_blueprint(mailauth_bp)
    from idp.federation import client as upstream_client

    upstream_client.init_app(app)

    from idp import oidc

    oidc.init_app(app)
    from idp.http import observability

    observability.init_app(app)  # after every blueprint: /healthz /readyz /metrics, request id, access log

    @app.context_processor
    def _globals():
        from flask_babel import get_locale

        lang = str(get_locale() or "pl")
        return {"lang": lang, "other_lang": "en" if lang == "pl" else "pl"}

    return app
