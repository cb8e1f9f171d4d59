"""/healthz and /readyz: what a load balancer asks before sending traffic to a node."""
from __future__ import annotations

import datetime as dt
from email.utils import make_msgid

import pytest

from idp import create_app
from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import OutboxMessage
from tests.conftest import CHEAP_ARGON2


def assert_probe_response(r) -> None:
    assert r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in r.headers
    assert r.headers["X-Request-ID"]


def test_healthz_answers_ok_and_touches_nothing(client):
    def no_database(*args, **kwargs):
        raise AssertionError("/healthz must not use the database")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(db.session, "execute", no_database)
        r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok"}
    assert_probe_response(r)


def test_healthz_needs_no_login_no_csrf_and_keeps_no_state(client):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405  # GET only, and never a CSRF page


def test_readyz_ok(client, app):
    r = client.get("/readyz")
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["mail"] == {**body["checks"]["mail"], "status": "ok", "queued": 0, "due": 0}
    if app.config["REDIS_URL"]:
        assert body["checks"]["redis"]["status"] == "ok"
    else:
        assert "redis" not in body["checks"]  # not configured: nothing to check
    assert_probe_response(r)


def _app(tmp_path, instance_dir, **overrides):
    return create_app({"TESTING": True, **CHEAP_ARGON2, **overrides}, instance=instance_dir)


def test_readyz_database_down_is_503(tmp_path, instance_dir):
    app = _app(tmp_path, instance_dir, DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'folder' / 'idp.sqlite3'}")
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["status"] == "fail"
    assert body["checks"]["database"] == {**body["checks"]["database"], "status": "fail",
                                          "error": "OperationalError"}
    assert body["checks"]["mail"]["status"] != "fail"  # the backlog never decides readiness
    assert "missing" not in r.get_data(as_text=True)  # no connection details leave the process
    assert_probe_response(r)
    # The process itself is fine: liveness stays green, so the node is not restarted for the database.
    assert app.test_client().get("/healthz").status_code == 200


def test_readyz_redis_down_is_503(tmp_path, instance_dir, database_url):
    app = _app(tmp_path, instance_dir, DATABASE_URL=database_url, REDIS_URL="redis://127.0.0.1:1/0",
               REDIS_PREFIX="idptest:down:")
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["status"] == "fail"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "fail"
    assert body["checks"]["redis"]["error"]
    assert_probe_response(r)
    with app.app_context():
        db.engine.dispose()


def _queue(created: dt.datetime, next_attempt: dt.datetime, status: str = "queued") -> None:
    db.session.add(OutboxMessage(created_at=created, purpose="reset", to_addr="someone@example.edu.pl",
                                 subject="s", body_text="t", body_html="<p>t</p>", message_id=make_msgid(),
                                 status=status, attempts=1, next_attempt_at=next_attempt))
    db.session.commit()


def test_readyz_mail_backlog_warns_but_stays_ready(client):
    now = utcnow()
    _queue(now - dt.timedelta(minutes=40), now + dt.timedelta(minutes=5))  # stuck in retries (SMTP down)
    _queue(now - dt.timedelta(minutes=2), now - dt.timedelta(minutes=1))  # due now
    _queue(now - dt.timedelta(days=3), now - dt.timedelta(days=3), status="failed")  # given up: not a backlog
    r = client.get("/readyz")
    assert r.status_code == 200  # an SMTP outage must not take every node out of the load balancer
    body = r.get_json()
    assert body["status"] == "warn"
    mail = body["checks"]["mail"]
    assert mail["status"] == "warn"
    assert mail["queued"] == 2 and mail["due"] == 1
    assert 110 <= mail["oldest_due_age_seconds"] <= 200
    assert 40 * 60 - 10 <= mail["oldest_queued_age_seconds"] <= 40 * 60 + 60
    assert mail["warn_after_seconds"] == 900
    assert "someone" not in r.get_data(as_text=True)


@pytest.mark.settings(MAIL_BACKLOG_WARN_SECONDS=3600)
def test_readyz_mail_backlog_below_the_threshold_is_ok(client):
    now = utcnow()
    _queue(now - dt.timedelta(minutes=40), now + dt.timedelta(minutes=5))
    body = client.get("/readyz").get_json()
    assert body["status"] == "ok" and body["checks"]["mail"]["status"] == "ok"
    assert body["checks"]["mail"]["queued"] == 1


def test_probes_are_never_rate_limited(client):
    for _ in range(30):
        assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_readyz_details_only_for_the_monitoring_hosts(client, app):
    """A load balancer needs the status; the outbox counts would tell an outsider whether the reset link
    they just asked for went to a real person (the same rule as /metrics: loopback, networks, token)."""
    now = utcnow()
    _queue(now - dt.timedelta(minutes=40), now + dt.timedelta(minutes=5))
    r = client.get("/readyz", environ_base={"REMOTE_ADDR": "203.0.113.50"})
    assert r.status_code == 200
    checks = {"database": {"status": "ok"}, "mail": {"status": "warn"}}
    if app.config["REDIS_URL"]:
        checks["redis"] = {"status": "ok"}
    assert r.get_json() == {"status": "warn", "checks": checks}
    assert_probe_response(r)
    assert client.get("/readyz").get_json()["checks"]["mail"]["queued"] == 1  # loopback: every detail
