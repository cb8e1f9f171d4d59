"""Endpoints without a rate limit skip Flask-Limiter's per-request resolution (idp.extensions); every limit
declared anywhere — on a view, on a blueprint, added after the app was built — still applies."""
from __future__ import annotations

from flask import Blueprint

from idp.extensions import limiter


def test_a_limit_on_a_new_view_applies(app, client):
    @app.get("/_test/limited-view")
    @limiter.limit("2 per minute")
    def limited_view():
        return "ok"

    assert [client.get("/_test/limited-view").status_code for _ in range(3)] == [200, 200, 429]


def test_a_limit_on_a_new_blueprint_applies_to_each_of_its_views(app, client):
    bp = Blueprint("test_limited_bp", __name__)

    @bp.get("/_test/bp-a")
    def view_a():
        return "a"

    @bp.get("/_test/bp-b")
    def view_b():
        return "b"

    limiter.limit("2 per minute")(bp)
    app.register_blueprint(bp)
    assert [client.get("/_test/bp-a").status_code for _ in range(3)] == [200, 200, 429]
    assert [client.get("/_test/bp-b").status_code for _ in range(3)] == [200, 200, 429]


def test_the_products_own_limits_apply_and_unlimited_endpoints_are_known(app, client):
    for _ in range(2):
        assert client.get("/.well-known/openid-configuration").status_code == 200
        assert client.get("/cas/login").status_code == 200
    # The admin API's blueprint-wide limit: resolved as limited even where the caller is not rate-limited yet.
    client.get("/api/v1/people", headers={"Authorization": "Bearer nothing"})
    known = app.extensions["idp.unlimited_endpoints"]
    assert known["oidc.discovery"] is True and known["cas.login"] is True
    assert [k for k, v in known.items() if k.startswith("api.")] and \
        not any(v for k, v in known.items() if k.startswith("api."))
