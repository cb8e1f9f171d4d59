"""The helpdesk console (/helpdesk): find a person, see why they cannot log in, fix it in one audited action."""
from flask import Blueprint

bp = Blueprint("helpdesk", __name__, url_prefix="/helpdesk")

from idp.helpdesk import views  # noqa: E402,F401
