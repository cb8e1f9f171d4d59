"""Unbound extension singletons, bound to an app in create_app()."""
from __future__ import annotations

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
