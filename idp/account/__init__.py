"""Pages of a logged-in person's own account: the overview (/account) and the password change."""
from flask import Blueprint

bp = Blueprint("account", __name__, url_prefix="/account")

from idp.account import views  # noqa: E402,F401
