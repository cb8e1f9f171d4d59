"""Password recovery pages under /password."""
from flask import Blueprint

bp = Blueprint("recovery", __name__, url_prefix="/password")

from idp.recovery import views  # noqa: E402,F401
