"""Unbound extension singletons, bound to an app in create_app()."""
from __future__ import annotations

from flask import Flask, current_app, request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_qualified_name
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


def client_address_key() -> str:
    """What per-address limits count: the client's address, or its /64 for IPv6 (one subscriber's network,
    whose other 2^64 addresses are as much the same client) — the brute-force throttle's own rule."""
    from idp.core.throttle import address_key

    return address_key(request.remote_addr) or "addr:-"


#: Endpoint rate limits (per client address); Redis-backed when IDP_REDIS_URL is set.
limiter = Limiter(key_func=client_address_key, default_limits=[])


@limiter.request_filter
def _no_limit_applies() -> bool:
    """Spare the endpoints no limit applies to Flask-Limiter's resolution, which it otherwise runs on every
    request (for a blueprint's route ~30 µs, a tenth of a discovery request). Whether one applies is asked of
    Flask-Limiter itself, once per endpoint and app, so a limit added anywhere is never skipped."""
    endpoint = request.endpoint
    if not endpoint or limiter.limit_manager.has_hints(endpoint):
        return False
    known: dict[str, bool] = current_app.extensions.setdefault("idp.unlimited_endpoints", {})
    unlimited = known.get(endpoint)
    if unlimited is None:
        unlimited = known[endpoint] = _resolves_no_limit(endpoint)
    return unlimited


def _resolves_no_limit(endpoint: str) -> bool:
    """True when neither the before-request check nor a view's decorator would find a limit (application,
    default, blueprint or the view's own); False when in doubt."""
    app = current_app._get_current_object()
    try:
        view = app.view_functions.get(endpoint)
        name = get_qualified_name(view) if view else ""
        for in_middleware in (True, False):
            defaults, decorated = limiter.limit_manager.resolve_limits(
                app, endpoint, request.blueprint, name, in_middleware=in_middleware)
            if defaults or decorated:
                return False
    except Exception:  # noqa: BLE001 - a Flask-Limiter that resolves differently: always check
        return False
    return True


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
