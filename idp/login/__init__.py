"""Pages of the login flow that are not protocol endpoints: landing page, required actions."""
from flask import Blueprint

bp = Blueprint("login", __name__)

from idp.login import views  # noqa: E402,F401
