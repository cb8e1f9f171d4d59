"""Unbound extension singletons, bound to an app in create_app()."""
from __future__ import annotations

from flask import Flask, current_app
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
babel = Babel()
csrf = CSRFProtect()
#: Builds messages (the outbox in idp.core.mail sends them, with a timeout and retries).
mail = Mail()
#: Endpoint rate limits (per client address); Redis-backed when IDP_REDIS_URL is set.
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def commit_keeping_loaded() -> None:
    """Commit without expiring the rows the session holds. For a request that commits on purpose midway (the
    login: its audit event, then the new SSO session) and goes on with the same rows, which it has just
    read or written itself: a plain commit would make each of them be read again at its next use."""
    session = db.session()
    before, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    finally:
        session.expire_on_commit = before


class SharedState:
    """The optional Redis connection (IDP_REDIS_URL) for short-lived state every node must see:
    tickets, throttling counters, rate limits. None when Redis is not configured: SQL holds it then."""

    def init_app(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        client = None
        if url:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                          health_check_interval=30)
        app.extensions["idp.redis"] = client

    @property
    def redis(self):
        return current_app.extensions.get("idp.redis")

    def key(self, *parts: object) -> str:
        """A Redis key in this deployment's namespace (REDIS_PREFIX), e.g. key("ticket", digest)."""
        return current_app.config["REDIS_PREFIX"] + ":".join(str(p) for p in parts)


shared = SharedState()
