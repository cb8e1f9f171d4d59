"""Account activation for new students: album number + PESEL (or date of birth) + surname -> first password."""
from flask import Blueprint

bp = Blueprint("activation", __name__, url_prefix="/activate")

from idp.activation import views  # noqa: E402,F401
