"""CAS 1.0/2.0/3.0 server endpoints under /cas."""
from flask import Blueprint

bp = Blueprint("cas", __name__, url_prefix="/cas")

from idp.cas import views  # noqa: E402,F401  (routes register on import)
