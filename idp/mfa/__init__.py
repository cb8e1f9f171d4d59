"""Second factor pages (/mfa): enrol a TOTP authenticator or a security key, verify, recovery codes."""
from flask import Blueprint

bp = Blueprint("mfa", __name__, url_prefix="/mfa")

from idp.mfa import views  # noqa: E402,F401
