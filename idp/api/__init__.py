"""The admin JSON API (/api/v1): the console's actions for scripts, with bearer tokens (idp staff token)."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from idp.api import views  # noqa: E402,F401
