"""Mail as a relying app: the password check a mail server (Dovecot) asks for on behalf of an IMAP client."""
from flask import Blueprint

bp = Blueprint("mailauth", __name__, url_prefix="/mail")

from idp.mailauth import views  # noqa: E402,F401
