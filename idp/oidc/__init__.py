"""OpenID Connect provider (the only package that imports authlib) on the shared SSO session."""
from flask import Blueprint

bp = Blueprint("oidc", __name__)


def init_app(app) -> None:
    from idp.core import sso
    from idp.oidc import server, views

    server.init_app(app)
    sso.register_logout_message("oidc", views.logout_message)
    app.register_blueprint(bp)
