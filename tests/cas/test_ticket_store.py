"""Service tickets in Redis (IDP_REDIS_URL): what a relying app observes is the same as with SQL —
once only, gone after logout, kept across a re-login — and nothing of them reaches the database."""
from __future__ import annotations

import datetime as dt

import pytest
import redis

from idp.core import tickets
from idp.extensions import db, shared
from idp.models import SsoSession, Ticket
from tests.cas.conftest import USER, failure_code, login_ticket, success, validate
from tests.conftest import USOSWEB, cas_login, ticket_from
from tests.databases import local_redis_url, redis_settings_for
from tests.factories import PASSWORD

#: Every run uses Redis here (CI starts it when it is down): a missing Redis fails, it is not skipped.
pytestmark = pytest.mark.settings(**redis_settings_for(local_redis_url() or "redis://127.0.0.1:6379/0"))


def test_a_service_ticket_lives_in_redis_and_validates_once(client, person, app):
    t = login_ticket(client)
    assert db.session.scalar(db.select(db.func.count()).select_from(Ticket)) == 0
    assert shared.redis.exists(shared.key("ticket", tickets.digest(t))) == 1
    ok = success(validate(client, "/cas/p3/serviceValidate", t))
    assert ok.find("{http://www.yale.edu/tp/cas}user").text == USER
    assert failure_code(validate(client, "/cas/p3/serviceValidate", t)) == "INVALID_TICKET"
    assert shared.redis.exists(shared.key("ticket", tickets.digest(t))) == 0


def test_the_ticket_key_holds_no_ticket_and_expires(client, person, app):
    t = login_ticket(client)
    key = shared.key("ticket", tickets.digest(t))
    assert t.encode() not in shared.redis.get(key)
    assert 0 < shared.redis.ttl(key) <= app.config["TICKET_LIFETIME"] + 60


def test_wrong_service_burns_the_ticket(client, person):
    t = login_ticket(client)
    assert failure_code(validate(client, "/cas/serviceValidate", t,
                                 service="https://moodle.example.edu.pl/x")) == "INVALID_SERVICE"
    assert failure_code(validate(client, "/cas/serviceValidate", t)) == "INVALID_TICKET"


def test_a_ticket_dies_with_its_session_at_logout(client, person):
    t = login_ticket(client)
    client.get("/cas/logout")
    assert failure_code(validate(client, "/cas/serviceValidate", t)) == "INVALID_TICKET"


def test_a_ticket_survives_its_owner_logging_in_again(client, person):
    """renew=true makes a new session; an unused ticket of the old one goes with the person."""
    first = login_ticket(client)
    r = cas_login(client, USER, PASSWORD, USOSWEB, extra={"renew": "true"})
    assert r.status_code == 302
    second = ticket_from(r)
    for t in (first, second):
        assert success(validate(client, "/cas/serviceValidate", t)) is not None
    live = db.session.scalars(db.select(SsoSession).where(SsoSession.ended_at.is_(None))).all()
    assert len(live) == 1


def test_an_expired_ticket_is_refused(client, person, app):
    t = login_ticket(client)
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=app.config["TICKET_LIFETIME"] + 1)
    row = tickets.consume(t, later)
    assert row is not None and row.expires_at <= later  # the validation code answers INVALID_TICKET


def test_redis_down_gives_relying_apps_a_cas_error_and_people_a_page(client, person, app):
    t = login_ticket(client)
    app.extensions["idp.redis"] = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    r = validate(client, "/cas/serviceValidate", t)
    assert r.status_code == 200 and failure_code(r) == "INTERNAL_ERROR"
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "30"
    assert "try again in a minute" in r.get_data(as_text=True)


def test_redis_down_at_the_login_form_is_a_503_not_a_crash(client, person, app):
    app.extensions["idp.redis"] = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    r = cas_login(client, USER, PASSWORD, USOSWEB)
    assert r.status_code == 503
    assert "try again in a minute" in r.get_data(as_text=True)
