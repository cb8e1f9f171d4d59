"""Behind a TLS-terminating proxy: forwarded headers are believed only when TRUSTED_PROXIES says so."""
import pytest

from idp.extensions import db
from idp.models import AuditEvent


def _last_failed_login_ip(client):
    client.post("/cas/login", data={"username": "x", "password": "y"},
                headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    event = db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    return event


@pytest.mark.settings(WTF_CSRF_ENABLED=False)
def test_forwarded_for_ignored_by_default(client):
    event = _last_failed_login_ip(client)
    assert event.action == "login.failed" and event.client_ip == "127.0.0.1"


@pytest.mark.settings(WTF_CSRF_ENABLED=False, TRUSTED_PROXIES=1)
def test_forwarded_for_believed_with_one_trusted_proxy(client):
    event = _last_failed_login_ip(client)
    assert event.client_ip == "203.0.113.7"


@pytest.mark.settings(TRUSTED_PROXIES=1)
def test_token_endpoint_works_over_https_terminated_at_the_proxy(client):
    r = client.post("/oidc/token", data={"grant_type": "authorization_code", "code": "x"},
                    base_url="http://idp.example.edu.pl",
                    headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "idp.example.edu.pl"})
    assert r.status_code in (400, 401) and r.is_json  # an OAuth error, not a 500 insecure-transport page
