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
from idp.models import AuditEvent, OutboxMessage
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
    # A wrong password and an unknown login are one outcome: the login page does not tell them apart either.
    assert value(after, "idp_logins_total", outcome="invalid_credentials") == \
        value(before, "idp_logins_total", outcome="invalid_credentials") + 2
    assert value(after, "idp_logins_total", outcome="success") == value(before, "idp_logins_total",
                                                                         outcome="success") + 1
    assert value(after, "idp_audit_events_total", action="login.failed", reason="invalid_credentials") == \
        value(before, "idp_audit_events_total", action="login.failed", reason="invalid_credentials") + 2
    assert value(after, "idp_audit_events_total", action="login.succeeded", reason="") == \
        value(before, "idp_audit_events_total", action="login.succeeded", reason="") + 1
    for hidden in ("wrong_password", "unknown_identifier", "no_password", "locked_wrong_password", "locked",
                   "locked_permanently"):
        # (the registry is the process's: other tests' events with such reasons — a link proof, where the
        # account is already known — may be there; login failures must not)
        assert f'outcome="{hidden}"' not in after, hidden
        assert f'action="login.failed",reason="{hidden}"' not in after, hidden
    # The audit log keeps the detail.
    reasons = db.session.scalars(db.select(AuditEvent.reason).where(AuditEvent.action == "login.failed")).all()
    assert sorted(reasons) == ["unknown_identifier", "wrong_password"]
    # No personal data in any label: not the login typed, not the person's address.
    assert "nobody@" not in after and USER not in after and "lukasz" not in after


@pytest.mark.policy(login__address_rate_limit="1/minute")
def test_every_refusal_by_the_address_rate_limit_is_counted(client, person, scrape):
    before = scrape()
    assert cas_login(client, USER, "Zupełnie-Złe-Hasło-123").status_code == 401
    for _ in range(3):
        assert cas_login(client, USER, PASSWORD).status_code == 429
    after = scrape()
    assert value(after, "idp_logins_total", outcome="rate_limited") == \
        value(before, "idp_logins_total", outcome="rate_limited") + 3
    # The audit log has the first of the minute only (and the metric of audit events with it).
    assert value(after, "idp_audit_events_total", action="login.rate_limited", reason="address_rate_limit") == \
        value(before, "idp_audit_events_total", action="login.rate_limited", reason="address_rate_limit") + 1


def _diff(before: str, after: str) -> dict:
    """The idp_ samples that changed between two scrapes (the latency histogram aside: timing varies; and
    the `_created` timestamps of series first seen)."""
    old, new = samples(before), samples(after)
    return {k: v - old.get(k, 0.0) for k, v in new.items() if v != old.get(k, 0.0) and k[0].startswith("idp_")
            and not k[0].startswith("idp_http_request_duration") and not k[0].endswith("_created")}


def test_a_guess_looks_the_same_in_the_metrics_whether_the_account_exists_or_not(client, person, scrape):
    """Scraping before and after a wrong password must not say whether the login names an account."""
    def guess(login: str) -> dict:
        before = scrape()
        assert cas_login(client, login, "Zupełnie-Złe-Hasło-123").status_code == 401
        return _diff(before, scrape())

    known, unknown = guess(USER), guess("nikt.taki@student.example.edu.pl")
    assert known == unknown and known


def test_password_resets_look_the_same_for_known_and_unknown_logins(client, person, scrape):
    from tests.recovery.helpers import request_link

    def reset(login: str) -> dict:
        before = scrape()
        assert request_link(client, login).status_code == 200
        diff = _diff(before, scrape())
        # the outbox gauges (a mail queued for a real person) are the monitoring hosts' business only
        return {k: v for k, v in diff.items() if not k[0].startswith("idp_outbox")}

    known, unknown = reset(USER), reset("nikt.taki@student.example.edu.pl")
    assert known == unknown == {("idp_audit_events_total", frozenset({("action", "reset.requested"),
                                                                        ("reason", "")})): 1.0}


def test_recovery_code_refusals_look_the_same_for_known_and_unknown_logins(app, person, scrape):
    from idp.core import assisted_recovery

    def redeem(login: str) -> dict:
        before = scrape()
        refusal = assisted_recovery.redeem(login, "7KQ4M2XD9HBT", client_ip="192.0.2.44")
        assert refusal.reason == assisted_recovery.UNKNOWN
        return _diff(before, scrape())

    known, unknown = redeem(USER), redeem("nikt.taki@student.example.edu.pl")  # no code / no such login
    assert known == unknown == {("idp_audit_events_total", frozenset({("action", "reset.code.failed"),
                                                                        ("reason", "invalid_credentials")})): 1.0}


def test_reasons_that_could_tell_accounts_apart_are_folded():
    from idp.core import authn

    # Shown only after a correct password, or before any check: may be counted as they are.
    assert metrics.FOLDED["login.failed"][0] == authn.AFTER_CORRECT_PASSWORD
    assert metrics.public_reason("login.failed", "account_left") == "account_left"
    for reason in ("throttled", "address_blocked"):
        assert metrics.public_reason("login.throttled", reason) == reason
    for reason in ("unknown_identifier", "no_password", "wrong_password", "locked_wrong_password", "locked",
                   "locked_permanently", "",
                   "some_future_reason"):
        assert metrics.public_reason("login.failed", reason) == "invalid_credentials", reason
    for reason in ("unknown_identifier", "no_recovery_code", "wrong_recovery_code", "too_many_wrong_codes"):
        assert metrics.public_reason("reset.code.failed", reason) == "invalid_credentials", reason
    for reason in ("address_throttled", "recovery_code_used", "recovery_code_ended", "recovery_code_expired"):
        assert metrics.public_reason("reset.code.failed", reason) == reason
    for reason in ("unknown_identifier", "no_address", ""):
        assert metrics.public_reason("reset.requested", reason) == ""
    assert metrics.public_reason("cas.validate.failed", "INVALID_TICKET") == "INVALID_TICKET"


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


TOKEN = "scrape-" + "s" * 40
OUTSIDE = {"REMOTE_ADDR": "203.0.113.50"}


def assert_hidden(r) -> None:
    """The answer to anyone not allowed: the ordinary 404 page, as for an address that does not exist."""
    assert r.status_code == 404
    assert "WWW-Authenticate" not in r.headers and "Allow" not in r.headers
    body = r.get_data(as_text=True)
    assert "# TYPE" not in body and "idp_logins" not in body


def test_metrics_answer_loopback_only_by_default(client):
    for method in ("get", "head", "post", "put", "delete", "options"):
        assert_hidden(getattr(client, method)("/metrics", environ_base=OUTSIDE))
    unknown = client.get("/no-such-page", environ_base=OUTSIDE)
    hidden = client.get("/metrics", environ_base=OUTSIDE)
    assert hidden.headers["Content-Type"] == unknown.headers["Content-Type"]
    assert len(hidden.get_data()) == pytest.approx(len(unknown.get_data()), abs=64)  # a random CSP nonce aside
    # Private addresses are not loopback: only METRICS_NETWORKS opens them.
    assert_hidden(client.get("/metrics", environ_base={"REMOTE_ADDR": "10.0.5.7"}))
    for loopback in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        r = client.get("/metrics", environ_base={"REMOTE_ADDR": loopback})
        assert r.status_code == 200 and "idp_logins_total" in r.get_data(as_text=True), loopback
    # Allowed, but not a method /metrics takes.
    r = client.post("/metrics")
    assert r.status_code == 405


def test_a_loopback_proxy_passing_on_a_request_is_not_a_local_client(client):
    # TRUSTED_PROXIES = 0 and an nginx on the same host: every request comes from 127.0.0.1.
    assert_hidden(client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}))


@pytest.mark.settings(METRICS_NETWORKS=["10.0.5.0/24", "2001:db8:5::/48"])
def test_metrics_answer_the_configured_networks(client):
    for inside in ("10.0.5.7", "10.0.5.255", "2001:db8:5::17", "127.0.0.1"):
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": inside}).status_code == 200, inside
    for outside in ("10.0.6.1", "203.0.113.50", "2001:db8:6::1", "not-an-address"):
        assert_hidden(client.get("/metrics", environ_base={"REMOTE_ADDR": outside}))


@pytest.mark.settings(METRICS_NETWORKS=["10.0.5.0/24"], TRUSTED_PROXIES=1)
def test_behind_a_trusted_proxy_the_forwarded_client_address_decides(client):
    proxy = {"REMOTE_ADDR": "10.0.0.5"}
    r = client.get("/metrics", environ_base=proxy, headers={"X-Forwarded-For": "10.0.5.7"})
    assert r.status_code == 200
    assert_hidden(client.get("/metrics", environ_base=proxy, headers={"X-Forwarded-For": "203.0.113.9"}))
    # A client cannot slip a monitoring address in front of the one the proxy appends.
    assert_hidden(client.get("/metrics", environ_base=proxy, headers={"X-Forwarded-For": "10.0.5.7, 203.0.113.9"}))
    assert_hidden(client.get("/metrics", environ_base=proxy, headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}))


@pytest.mark.settings(METRICS_TOKEN=TOKEN)
def test_metrics_token_opens_metrics_from_anywhere(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        assert_hidden(client.get("/metrics", headers=headers, environ_base=OUTSIDE))
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, environ_base=OUTSIDE)
    assert r.status_code == 200
    assert "idp_http_request_duration_seconds" in r.get_data(as_text=True)
    assert client.get("/metrics").status_code == 200  # loopback still may, token or not
    # The probes stay open: a load balancer has no token.
    assert client.get("/healthz", environ_base=OUTSIDE).status_code == 200
    assert client.get("/readyz", environ_base=OUTSIDE).status_code == 200


def test_metrics_networks_from_the_environment_and_checked_at_start(tmp_path):
    from idp import config

    env = {"IDP_METRICS_NETWORKS": " 10.0.5.0/24, 2001:db8::/32 ,192.0.2.7", "IDP_SECRET_KEY": "k" * 40,
           "IDP_PESEL_KEY": "p" * 40}
    assert config.load(tmp_path, environ=env)["METRICS_NETWORKS"] == ["10.0.5.0/24", "2001:db8::/32",
                                                                      "192.0.2.7/32"]
    assert config.load(tmp_path, environ={k: v for k, v in env.items() if k != "IDP_METRICS_NETWORKS"}
                       )["METRICS_NETWORKS"] == []
    for bad in ("10.0.5.0/33", "10.0.5.1/24", "monitoring", "10.0.5.0/24,,x"):
        with pytest.raises(config.ConfigError, match="METRICS_NETWORKS"):
            config.load(tmp_path, environ={**env, "IDP_METRICS_NETWORKS": bad})
    (tmp_path / "idp.toml").write_text('metrics_networks = "10.0.5.0/24"\n', encoding="utf-8")
    with pytest.raises(config.ConfigError, match="metrics_networks"):
        config.load(tmp_path, environ=env)
    (tmp_path / "idp.toml").write_text('metrics_networks = ["10.0.5.0/24", "10.0.7.0/24"]\n', encoding="utf-8")
    plain = {k: v for k, v in env.items() if k != "IDP_METRICS_NETWORKS"}
    assert config.load(tmp_path, environ=plain)["METRICS_NETWORKS"] == ["10.0.5.0/24", "10.0.7.0/24"]


def test_exposition_parses(scrape):
    assert samples(scrape())
