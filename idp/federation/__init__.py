"""Login through upstream OpenID Connect providers, and linking their identities to local accounts."""
from flask import Blueprint

bp = Blueprint("federation", __name__, url_prefix="/federation")

from idp.federation import views  # noqa: E402,F401
