"""/metrics: Prometheus counters for logins, CAS validations, OIDC tokens and introspection, request
latency by endpoint, the outbox by status; optional bearer token. Counters are per process and never
reset between tests, so every check compares a scrape before with one after."""
from __future__ import annotations

import datetime as dt
from email.utils import make_msgid

import pytest

from idp.core import metrics
from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import OutboxMessage
from tests.conftest import USOSWEB, cas_login, ticket_from
from tests.factories import PASSWORD
from tests.oidc.conftest import MAIL, USER, exchange, get_code, introspect, refresh
from tests.ops.conftest import samples, value


def test_metrics_is_prometheus_text_without_cookies(client):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    assert r.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in r.headers
    text = r.get_data(as_text=True)
    assert "# TYPE idp_logins_total counter" in text
    assert "# TYPE idp_http_request_duration_seconds histogram" in text
    assert "# TYPE idp_outbox_messages gauge" in text


def test_login_outcomes_are_counted(client, person, scrape):
    before = scrape()
    assert cas_login(client, USER, "Zupełnie-Złe-Hasło-123").status_code == 401
    assert cas_login(client, "nobody@example.edu.pl", "Zupełnie-Złe-Hasło-123").status_code == 401
    assert cas_login(client, USER, PASSWORD).status_code == 302
    after = scrape()
    for outcome in ("wrong_password", "unknown_identifier", "success"):
        assert value(after, "idp_logins_total", outcome=outcome) == value(before, "idp_logins_total",
                                                                           outcome=outcome) + 1, outcome
    assert value(after, "idp_audit_events_total", action="login.failed", reason="wrong_password") == \
        value(before, "idp_audit_events_total", action="login.failed", reason="wrong_password") + 1
    assert value(after, "idp_audit_events_total", action="login.succeeded", reason="") == \
        value(before, "idp_audit_events_total", action="login.succeeded", reason="") + 1
    # No personal data in any label: not the login typed, not the person's address.
    assert "nobody@" not in after and USER not in after and "lukasz" not in after


def test_cas_validations_are_counted(client, person, scrape):
    ticket = ticket_from(cas_login(client, USER, PASSWORD))
    before = scrape()
    ok = client.get("/cas/p3/serviceValidate", query_string={"service": USOSWEB, "ticket": ticket})
    assert "authenticationSuccess" in ok.get_data(as_text=True)
    again = client.get("/cas/p3/serviceValidate", query_string={"service": USOSWEB, "ticket": ticket})
    assert "INVALID_TICKET" in again.get_data(as_text=True)
    after = scrape()
    assert value(after, "idp_cas_validations_total", outcome="success") == \
        value(before, "idp_cas_validations_total", outcome="success") + 1
    assert value(after, "idp_cas_validations_total", outcome="INVALID_TICKET") == \
        value(before, "idp_cas_validations_total", outcome="INVALID_TICKET") + 1
    assert ticket not in after


def test_token_issuance_and_introspection_are_counted(client, oidc, scrape):
    code, _ = get_code(client, MAIL)
    before = scrape()
    r = exchange(client, code, MAIL)
    assert r.status_code == 200, r.get_data(as_text=True)
    tokens = r.get_json()
    refreshed = refresh(client, tokens["refresh_token"])
    assert refreshed.status_code == 200
    access = refreshed.get_json()["access_token"]
    assert introspect(client, access).get_json()["active"] is True
    assert introspect(client, "not-a-token").get_json()["active"] is False
    assert introspect(client, access, client_id="nobody").status_code == 401
    after = scrape()
    for grant in ("authorization_code", "refresh_token"):
        assert value(after, "idp_oidc_tokens_issued_total", grant_type=grant) == \
            value(before, "idp_oidc_tokens_issued_total", grant_type=grant) + 1, grant
    for result in ("active", "inactive", "error"):
        assert value(after, "idp_oidc_introspections_total", result=result) == \
            value(before, "idp_oidc_introspections_total", result=result) + 1, result
    assert tokens["access_token"] not in after and access not in after


def test_request_latency_by_endpoint_never_by_raw_path(client, scrape):
    before = scrape()
    client.get("/healthz")
    for n in range(5):
        assert client.get(f"/no-such-page-{n}/ST-secret").status_code == 404
    client.post("/healthz")
    after = scrape()
    count = "idp_http_request_duration_seconds_count"
    assert value(after, count, endpoint="ops.healthz", method="GET", status="2xx") == \
        value(before, count, endpoint="ops.healthz", method="GET", status="2xx") + 1
    # 404 spam lands in one series: endpoint "none", whatever the paths were.
    assert value(after, count, endpoint="none", method="GET", status="4xx") == \
        value(before, count, endpoint="none", method="GET", status="4xx") + 5
    assert "no-such-page" not in after and "ST-secret" not in after
    assert value(after, count, endpoint="none", method="POST", status="4xx") >= 1


def test_label_values_are_codes_or_other():
    assert metrics.code("wrong_password") == "wrong_password"
    assert metrics.code("cas.validate.failed") == "cas.validate.failed"
    assert metrics.code(None) == ""
    assert metrics.code("jan.kowalski@example.edu.pl") == "other"
    assert metrics.code("free text with spaces") == "other"
    assert metrics.code("x" * 65) == "other"


def test_audit_series_are_capped(monkeypatch):
    monkeypatch.setattr(metrics, "_audit_series", set())
    monkeypatch.setattr(metrics, "MAX_AUDIT_SERIES", 2)
    metrics.audit_event("test.capped", "one")
    metrics.audit_event("test.capped", "two")
    metrics.audit_event("test.capped", "three")  # past the cap: counted as "other"
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("idp_audit_events_total", {"action": "test.capped", "reason": "three"}) is None
    assert REGISTRY.get_sample_value("idp_audit_events_total", {"action": "test.capped", "reason": "other"}) >= 1


def test_outbox_gauge_counts_by_status_at_scrape_time(client, scrape):
    now = utcnow()
    for status in ("queued", "queued", "failed"):
        db.session.add(OutboxMessage(created_at=now - dt.timedelta(minutes=10), purpose="reset",
                                     to_addr="someone@example.edu.pl", subject="s", body_text="t", body_html="t",
                                     message_id=make_msgid(), status=status, attempts=0, next_attempt_at=now))
    db.session.commit()
    text = scrape()
    assert value(text, "idp_outbox_messages", status="queued") == 2
    assert value(text, "idp_outbox_messages", status="failed") == 1
    assert value(text, "idp_outbox_messages", status="sent") == 0
    assert 590 <= value(text, "idp_outbox_oldest_queued_age_seconds") <= 700
    assert "someone" not in text


@pytest.mark.settings(METRICS_TOKEN="scrape-" + "s" * 40)
def test_metrics_token_is_required_when_configured(client):
    token = "scrape-" + "s" * 40
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"},
                    {"Authorization": f"Bearer {token}x"}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "idp_logins" not in r.get_data(as_text=True)
    r = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert "idp_http_request_duration_seconds" in r.get_data(as_text=True)
    # The probes stay open: a load balancer has no token.
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_exposition_parses(scrape):
    assert samples(scrape())
