"""Structured logs: one JSON access line per request with the request id the response echoes; never a
query string, a form, a cookie or a password; audit events stay out of the log."""
from __future__ import annotations

import io
import json
import logging
import re

import pytest

from idp import create_app
from idp.config import ConfigError
from idp.http import observability
from tests.conftest import CHEAP_ARGON2, USOSWEB, cas_login, ticket_from
from tests.factories import PASSWORD
from tests.oidc.conftest import USER


@pytest.fixture
def log_lines():
    """What a deployment's stderr would hold: a plain StreamHandler on the root logger, as create_app's
    logging.basicConfig makes, formatted by observability.configure_logging. Yields a function that
    returns the lines written so far, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def lines(fmt: str = "json") -> list:
        raw = [line for line in stream.getvalue().splitlines() if line]
        return [json.loads(line) for line in raw] if fmt == "json" else raw

    try:
        observability.configure_logging("json")
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def access_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line.get("logger") == "idp.access"]


def test_one_json_access_line_per_request_with_the_echoed_request_id(client, person, log_lines):
    ticket = ticket_from(cas_login(client, USER, PASSWORD))
    r = client.get("/cas/serviceValidate", query_string={"service": USOSWEB, "ticket": ticket},
                   headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 200
    rid = r.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    lines = log_lines()
    mine = [line for line in access_lines(lines) if line["request_id"] == rid]
    assert len(mine) == 1
    line = mine[0]
    assert line["method"] == "GET" and line["path"] == "/cas/serviceValidate"
    assert line["endpoint"] == "cas.service_validate"
    assert line["status"] == 200 and isinstance(line["duration_ms"], float)
    assert line["client"] == "127.0.0.1"  # TRUSTED_PROXIES = 0: a forwarded address is not believed
    assert line["level"] == "INFO" and line["time"]
    everything = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines)
    # Never the query string (tickets), the form (passwords), the person's login or cookies.
    assert "ticket=" not in everything and ticket not in everything
    assert PASSWORD not in everything and "csrf_token" not in everything
    assert USER not in everything and "session" not in everything.lower()


def test_every_request_logs_one_line_and_ids_differ(client, log_lines):
    ids = [client.get("/healthz").headers["X-Request-ID"] for _ in range(3)]
    assert len(set(ids)) == 3
    assert [line["request_id"] for line in access_lines(log_lines())] == ids


def test_route_variables_are_logged_as_the_pattern(app, client, log_lines):
    @app.get("/_test/confirm/<token>")
    def _confirm(token):
        return "ok"

    assert client.get("/_test/confirm/s3cr3t-link-value").status_code == 200
    assert client.get("/static/no-such-file-x.css").status_code == 404
    lines = access_lines(log_lines())
    assert lines[-2]["path"] == "/_test/confirm/<token>" and lines[-2]["endpoint"] == "_confirm"
    assert lines[-1]["path"] == "/static/no-such-file-x.css"
    assert "s3cr3t" not in json.dumps(log_lines())


def test_secrets_in_paths_no_route_matched_are_masked(client, log_lines):
    token = "IjEyMyI.aGVsbG8td29ybGQ.c2lnbmF0dXJlLXZhbHVl"  # a link token's shape
    requests = [
        ("PUT", f"/federation/confirm/{token}", 405),      # the route exists, not for PUT
        ("DELETE", f"/password/reset/{token}", 405),
        ("GET", f"/password/reset/{token}/", 404),         # a trailing slash: no route
        ("GET", "/cas/ST-1-Zq9xS3cr3tT1ck3t/validate", 404),
        ("GET", "/cas/PT-2-abc", 404),
        ("GET", "/helpdesk/people/90090515836/nothing", 404),  # a PESEL typed where the album goes
        ("GET", "/x/jan.k@uczelnia.pl", 404),
    ]
    for method, path, status in requests:
        assert client.open(path, method=method).status_code == status, path
    logged = [line["path"] for line in access_lines(log_lines())[-len(requests):]]
    assert logged == ["/federation/confirm/…", "/password/reset/…", "/password/reset/…/", "/cas/…/validate",
                      "/cas/…", "/helpdesk/people/…/nothing", "/x/…"]
    everything = json.dumps(log_lines(), ensure_ascii=False)
    for secret in (token, "Zq9xS3cr3t", "PT-2-abc", "90090515836", "jan.k@"):
        assert secret not in everything, secret


def test_short_segments_of_unmatched_paths_are_kept(client, log_lines):
    assert client.get("/no-such-page/abc/s12345").status_code == 404
    assert client.get("/" + "a" * 15).status_code == 404
    assert client.get("/" + "a" * 16).status_code == 404
    assert [line["path"] for line in access_lines(log_lines())] == ["/no-such-page/abc/s12345", "/" + "a" * 15,
                                                                     "/…"]


@pytest.mark.settings(TRUSTED_PROXIES=1)
def test_incoming_request_id_is_kept_behind_a_trusted_proxy(client, log_lines):
    r = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.19_x-2"})
    assert r.headers["X-Request-ID"] == "lb-7f3a.19_x-2"
    assert access_lines(log_lines())[-1]["request_id"] == "lb-7f3a.19_x-2"


def test_incoming_request_id_is_ignored_without_a_trusted_proxy(client, log_lines):
    """TRUSTED_PROXIES = 0: the header comes from the client itself, who must not choose the log's ids."""
    r = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.19_x-2"})
    rid = r.headers["X-Request-ID"]
    assert rid != "lb-7f3a.19_x-2" and re.fullmatch(r"[0-9a-f]{32}", rid)
    assert access_lines(log_lines())[-1]["request_id"] == rid
    assert "lb-7f3a" not in json.dumps(log_lines())


@pytest.mark.settings(TRUSTED_PROXIES=1)
@pytest.mark.parametrize("incoming", ["has space", "a" * 129, "quote\"d", "<script>", "ü"])
def test_other_incoming_request_ids_are_replaced(client, incoming):
    rid = client.get("/healthz", headers={"X-Request-ID": incoming}).headers["X-Request-ID"]
    assert rid != incoming and re.fullmatch(r"[0-9a-f]{32}", rid)


@pytest.mark.settings(TRUSTED_PROXIES=1)
def test_records_logged_during_a_request_carry_its_id(app, client, caplog):
    caplog.handler.addFilter(observability.RequestIdFilter())

    @app.get("/_test/log")
    def _log_something():
        logging.getLogger("idp.test").warning("something happened")
        return "ok"

    with caplog.at_level(logging.INFO):
        r = client.get("/_test/log", headers={"X-Request-ID": "req-42"})
    assert r.headers["X-Request-ID"] == "req-42"
    inside = [rec for rec in caplog.records if rec.name == "idp.test"]
    assert inside and inside[0].request_id == "req-42"
    access = [rec for rec in caplog.records if rec.name == "idp.access"]
    assert access and access[-1].request_id == "req-42" and access[-1].path == "/_test/log"
    outside = logging.LogRecord("idp.test", logging.INFO, __file__, 1, "no request", None, None)
    observability.RequestIdFilter().filter(outside)
    assert outside.request_id is None


def test_audit_events_are_not_logged(client, person, caplog):
    with caplog.at_level(logging.DEBUG):
        cas_login(client, USER, "Zupełnie-Złe-Hasło-123")
        cas_login(client, USER, PASSWORD)
    assert not [rec for rec in caplog.records if rec.name == "idp.audit"]
    text = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "login.failed" not in text and "login.succeeded" not in text
    assert "Zupełnie" not in text and PASSWORD not in text


def test_text_format(client, log_lines):
    observability.configure_logging("text")
    try:
        rid = client.get("/healthz").headers["X-Request-ID"]
        last = log_lines("text")[-1]
        assert f"[{rid}]" in last and '"GET /healthz" 200' in last and "idp.access" in last
    finally:
        observability.configure_logging("json")


def test_unknown_log_format_stops_start_up(tmp_path, instance_dir, database_url):
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        create_app({"TESTING": True, "DATABASE_URL": database_url, "LOG_FORMAT": "xml", **CHEAP_ARGON2},
                   instance=instance_dir)


def test_forwarded_for_without_a_trusted_proxy_is_warned_about_once(client, log_lines):
    """Behind a reverse proxy that nobody told the IdP about, every person would share the proxy's address
    (throttling per address, audit, metrics): the log says so, once, and the header is not believed."""
    for _ in range(3):
        client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    warnings = [line for line in log_lines() if line.get("level") == "WARNING"
                and "X-Forwarded-For" in line.get("message", "")]
    assert len(warnings) == 1
    assert "TRUSTED_PROXIES" in warnings[0]["message"]
    assert not any("203.0.113.9" in json.dumps(line) for line in log_lines())


def test_no_warning_without_forwarded_for(client, log_lines):
    client.get("/healthz")
    assert not [line for line in log_lines() if line.get("level") == "WARNING"]
