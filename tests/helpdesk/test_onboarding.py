"""Service onboarding check (admins, /helpdesk/services): does a URL belong to a service, exactly what a
person would release to it, and a self-test of the IdP's CAS validation / OIDC discovery and logout paths
— run over HTTP against the app itself, served by werkzeug on 127.0.0.1 in a thread
(idp/core/onboarding.py, idp/helpdesk/services.py)."""
from __future__ import annotations

import datetime as dt
import socket
import threading

import pytest
from werkzeug.serving import make_server

import idp.helpdesk.services  # noqa: F401  (routes on the helpdesk blueprint, before any app is built)
from idp.cas import protocol
from idp.core import claims, onboarding, registry, staff
from idp.extensions import db
from idp.models import AuditEvent, Service
from tests.conftest import SERVICES, USOSWEB, csrf_token, make_app
from tests.factories import create_account
from tests.helpdesk.console import Desk, english, events, plain, rows, text

ELEARNING_CB = "https://elearning.example.edu.pl/oidc/callback"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_port() -> int:
    return _free_port()


@pytest.fixture
def app(request, database_url, instance_dir, live_port):
    """BASE_URL is where the live server listens: the self-test asks the IdP at its public address."""
    yield from make_app(request, database_url, instance_dir, {"BASE_URL": f"http://127.0.0.1:{live_port}"})


@pytest.fixture
def live(app, live_port):
    server = make_server("127.0.0.1", live_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app.config["BASE_URL"]
    server.shutdown()
    server.server_close()


def register(*extra: dict) -> None:
    registry.replace_all([dict(s) for s in SERVICES] + [dict(e) for e in extra])


def svc(name: str) -> Service:
    return registry.by_name(name)


OIDC = {"name": "e-learning", "protocol": "oidc", "client_id": "elearning", "redirect_uris": [ELEARNING_CB],
        "scopes": ["openid", "profile", "email", "university"], "post_logout_redirect_uris": ["https://elearning.example.edu.pl/"]}


# --- 1. an address ------------------------------------------------------------------------------------------

def test_a_cas_url_that_matches(app):
    check = onboarding.match_url(svc("USOSweb"), USOSWEB)
    assert check.matches and check.matched_as == ["service_pattern"] and check.actual.name == "USOSweb"
    assert check.notes == []


def test_a_cas_url_of_another_service_and_of_none(app):
    check = onboarding.match_url(svc("USOSweb"), "https://moodle.example.edu.pl/login/index.php")
    assert not check.matches and check.actual.name == "Moodle" and check.notes == ["other_service"]
    check = onboarding.match_url(svc("USOSweb"), "https://usosweb.example.edu.pl")  # no path: the pattern wants /
    assert not check.matches and check.actual is None and check.notes == ["unregistered"]


def test_a_url_an_earlier_service_takes_first(app):
    register({"name": "Everything", "protocol": "cas", "service_pattern": r"^https://[a-z]+\.example\.edu\.pl/.*"})
    check = onboarding.match_url(svc("Everything"), USOSWEB)
    assert check.matches and check.actual.name == "USOSweb" and "shadowed" in check.notes


@pytest.mark.parametrize("url, note", [
    ("ftp://usosweb.example.edu.pl/x", "not_http"),
    ("http://usosweb.example.edu.pl/x", "plain_http"),
    ("https://usosweb.example.edu.pl/x#top", "fragment"),
    ("https://usosweb.example.edu.pl/" + "a" * registry.MAX_URL, "too_long"),
])
def test_what_is_wrong_with_an_address(app, url, note):
    assert note in onboarding.match_url(svc("USOSweb"), url).notes


def test_oidc_addresses_are_compared_exactly(app):
    register(OIDC)
    service = svc("e-learning")
    assert onboarding.match_url(service, ELEARNING_CB).matched_as == ["redirect_uri"]
    assert onboarding.match_url(service, "https://elearning.example.edu.pl/").matched_as == ["post_logout_redirect_uri"]
    near = onboarding.match_url(service, ELEARNING_CB + "/")
    assert not near.matches and near.notes == ["near_miss"] and near.near == [ELEARNING_CB]
    assert onboarding.match_url(service, "https://elearning.example.edu.pl/other").notes == []


# --- 2. what a person releases --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["USOSweb", "Moodle"])
def test_the_cas_preview_is_what_validation_releases(app, person, name):
    policy = app.extensions["idp.policy"]
    service = svc(name)
    result = onboarding.preview(service, person, policy)
    assert result.username == protocol.username_for(person, service, policy)
    released = protocol.released_attributes(person, service, policy, auth_time=dt.datetime(2024, 1, 1),
                                            new_login=True)
    assert {k: v for k, v in released.items() if k not in onboarding.CAS_PROTOCOL_ATTRIBUTES} == result.attributes
    assert set(released) - set(result.attributes) == set(result.protocol_attributes)
    assert result.entitled and result.entitled_by == "open" and result.can_log_in


def test_the_moodle_user_name_is_the_album(app, person):
    result = onboarding.preview(svc("Moodle"), person, app.extensions["idp.policy"])
    assert (result.username, result.username_from) == ("12345", "album")
    assert result.attributes == {"mail": "lukasz.zolkiewski@student.example.edu.pl"}


def test_empty_attributes_are_named_as_left_out(app):
    nobody = create_account("555", university_email=None, private_email=None, aliases=())
    result = onboarding.preview(svc("USOSweb"), nobody, app.extensions["idp.policy"])
    assert set(result.omitted) == {"mail", "aliases"} and "mail" not in result.attributes


def test_entitlement_and_its_grounds(app, person):
    register({"name": "Library", "protocol": "cas", "service_pattern": r"^https://lib\.example\.edu\.pl/.*",
              "requires_entitlement": True, "default_roles": ["teacher"]})
    policy = app.extensions["idp.policy"]
    library = svc("Library")
    assert (onboarding.preview(library, person, policy).entitled_by, person.entitlements) == ("not_default_role", None)
    person.entitlements = ["library"]
    db.session.commit()
    result = onboarding.preview(library, person, policy)
    assert result.entitled and result.entitled_by == "listed"
    person.entitlements = ["USOSweb"]
    assert onboarding.preview(library, person, policy).entitled_by == "not_listed"


def test_the_oidc_preview_is_what_userinfo_answers_per_scope(app, person):
    register(OIDC)
    policy = app.extensions["idp.policy"]
    service = svc("e-learning")
    result = onboarding.preview(service, person, policy)
    assert result.scopes == ["openid", "profile", "email", "university"]
    assert result.claims == claims.for_scope(person, "openid profile email university", policy)
    assert result.claims_by_scope["email"] == {"email": "lukasz.zolkiewski@student.example.edu.pl",
                                               "email_verified": True}
    assert result.claims_by_scope["university"]["album"] == "12345"
    assert result.id_token_claims == {"sub": person.subject}
    only = onboarding.preview(service, person, policy, scopes=["openid", "email", "offline_access"])
    assert only.scopes == ["openid", "email"] and "given_name" not in only.claims and "album" not in only.claims


# --- 3. self-test against the running IdP --------------------------------------------------------------------

def by_name(checks) -> dict[str, onboarding.Check]:
    return {c.name: c for c in checks}


def test_cas_self_test_passes(app, live, callback_server):
    register({"name": "Portal", "protocol": "cas", "service_pattern": r"^http://127\.0\.0\.1:\d+/.*",
              "logout_url": callback_server.url + "/slo"})
    checks = onboarding.self_test(svc("Portal"), live, allow_loopback=True)
    got = by_name(checks)
    assert [c.name for c in checks] == ["cas_sample_url", "cas_login", "cas_service_validate",
                                        "cas_p3_service_validate", "cas_single_logout"]
    assert onboarding.passed(checks), checks
    assert got["cas_sample_url"].detail == callback_server.url + "/slo"  # the logout URL belongs to it
    assert got["cas_p3_service_validate"].detail.startswith("INVALID_TICKET")
    # The IdP really answered: its validation endpoints recorded the made-up ticket as not recognized.
    db.session.expire_all()
    failures = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "cas.validate.failed")).all()
    assert [e.reason for e in failures] == ["INVALID_TICKET", "INVALID_TICKET"]
    assert "ST-SELF…" in failures[0].data["detail"]  # a ticket-like value is redacted in the log
    # Nothing was logged out: no logoutRequest, only a harmless request without a body.
    assert callback_server.calls and all(c["body"] == "" for c in callback_server.calls)


def test_cas_self_test_with_an_application_url(app, live):
    checks = onboarding.self_test(svc("USOSweb"), live, sample=USOSWEB)
    assert onboarding.passed(checks), checks
    assert by_name(checks)["cas_single_logout"].status == "skipped"


def test_cas_self_test_without_an_application_url(app, live):
    checks = onboarding.self_test(svc("USOSweb"), live)
    assert by_name(checks)["cas_sample_url"].status == "skipped"
    assert "cas_login" not in by_name(checks)


def test_cas_self_test_with_a_url_the_service_does_not_own(app, live):
    got = by_name(onboarding.self_test(svc("USOSweb"), live, sample="https://nowhere.example.org/"))
    assert got["cas_sample_url"].status == "failed"
    assert got["cas_login"].status == "failed" and got["cas_login"].detail == "HTTP 400"  # unknown application


def test_a_validation_answer_other_than_invalid_ticket_fails(app):
    def fake(method, url, *, params=None, timeout):
        if "serviceValidate" in url:
            body = ('<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas"><cas:authenticationFailure '
                    'code="INVALID_SERVICE">no</cas:authenticationFailure></cas:serviceResponse>')
            return onboarding.Answer(200, {}, body)
        return onboarding.Answer(200, {}, "<html>")

    got = by_name(onboarding.self_test(svc("USOSweb"), "https://idp.example.edu.pl", sample=USOSWEB, fetch=fake))
    assert got["cas_service_validate"].status == "failed"
    assert got["cas_service_validate"].detail.startswith("INVALID_SERVICE")


def test_single_logout_to_a_private_address_is_refused_outside_development(app, live, callback_server):
    register({"name": "Portal", "protocol": "cas", "service_pattern": r"^http://127\.0\.0\.1:\d+/.*",
              "logout_url": callback_server.url + "/slo"})
    got = by_name(onboarding.self_test(svc("Portal"), live, allow_loopback=False))
    assert got["cas_single_logout"].status == "failed" and "refused" in got["cas_single_logout"].detail
    assert callback_server.calls == []


def test_oidc_self_test_passes(app, live, callback_server):
    register({**OIDC, "redirect_uris": [ELEARNING_CB, "http://127.0.0.1:9/cb"],
              "backchannel_logout_uri": callback_server.url + "/bcl"})
    checks = onboarding.self_test(svc("e-learning"), live, allow_loopback=True)
    got = by_name(checks)
    assert onboarding.passed(checks), checks
    assert set(got) == {"oidc_discovery", "oidc_issuer", "oidc_endpoints", "oidc_client_supported", "oidc_jwks",
                        "oidc_redirect_uris", "oidc_post_logout_redirect_uris", "oidc_authorize",
                        "oidc_backchannel_logout"}
    assert got["oidc_issuer"].detail.startswith(live)
    assert "error=login_required" in got["oidc_authorize"].detail
    assert callback_server.calls and all("logout_token" not in c["body"] for c in callback_server.calls)


def test_oidc_self_test_finds_bad_client_addresses(app, live):
    register({**OIDC, "redirect_uris": ["http://elearning.example.edu.pl/cb"], "backchannel_logout_uri":
              "http://127.0.0.1:9/never"})
    got = by_name(onboarding.self_test(svc("e-learning"), live, allow_loopback=True))
    assert got["oidc_redirect_uris"].status == "failed" and "https required" in got["oidc_redirect_uris"].detail
    assert got["oidc_backchannel_logout"].status == "failed"
    assert got["oidc_backchannel_logout"].detail.endswith("cannot connect")


def test_an_idp_that_does_not_answer(app):
    down = f"http://127.0.0.1:{_free_port()}"
    got = by_name(onboarding.self_test(svc("USOSweb"), down, sample=USOSWEB, timeout=1))
    assert got["cas_login"].status == "failed" and got["cas_login"].detail == "cannot connect"
    assert got["cas_service_validate"].detail.startswith("not tried: the IdP did not answer")


# --- the console pages ------------------------------------------------------------------------------------

@pytest.fixture
def admin(client, clock):
    return Desk.open(client, clock, role="admin")


def test_only_admins_see_the_services(client, clock, person):
    english(client)
    assert client.get("/helpdesk/services").status_code == 302  # to the login page
    desk = Desk.open(client, clock, role="helpdesk")
    r = desk.get("/helpdesk/services")
    assert r.status_code == 403
    assert desk.get("/helpdesk/services/USOSweb").status_code == 403
    assert events("helpdesk.access.denied")[-1].data["role"] == "admin"


def test_the_list_and_a_service_page(admin):
    page = admin.page("/helpdesk/services")
    assert [r[0] for r in rows(page)] == ["Moodle", "USOSweb"]
    page = admin.page("/helpdesk/services/USOSweb")
    assert "Test an address" in page and "What a person would release" in page and "Run the self-test" in page
    assert admin.get("/helpdesk/services/Nope").status_code == 404


def post_form(desk, name: str, action: str, data: dict, *, token: bool = True):
    body = dict(data)
    if token:
        body["csrf_token"] = csrf_token(desk.page(f"/helpdesk/services/{name}"))
    return desk.client.post(f"/helpdesk/services/{name}/{action}", data=body)


def test_testing_an_address_in_the_console(admin):
    r = post_form(admin, "USOSweb", "url", {"url": "https://moodle.example.edu.pl/x"})
    assert r.status_code == 200
    words = plain(text(r))
    assert "No: the address does not belong to USOSweb." in words
    assert "The address belongs to another registered service" in words
    assert 'id="url-actual">Moodle</a>' in text(r)
    r = post_form(admin, "USOSweb", "url", {"url": USOSWEB})
    assert "Yes: the address matches the service pattern." in plain(text(r))


def test_the_forms_need_their_csrf_token(admin):
    assert post_form(admin, "USOSweb", "url", {"url": USOSWEB}, token=False).status_code == 400
    assert post_form(admin, "USOSweb", "preview", {"person": "12345"}, token=False).status_code == 400
    assert post_form(admin, "USOSweb", "self-test", {}, token=False).status_code == 400


def test_previewing_a_person_in_the_console(admin, person):
    r = post_form(admin, "Moodle", "preview", {"person": "12345"})
    assert r.status_code == 200, text(r)
    table = rows(text(r))
    assert table[0][:2] == ["user", "12345 (album)"] and table[1][1] == "lukasz.zolkiewski@student.example.edu.pl"
    assert "Entitled: the person may use this service." in plain(text(r))
    (event,) = events("helpdesk.service_preview")
    assert event.account_id == person.id and event.actor == staff.actor_name(admin.account)
    assert event.data["service"] == "Moodle"
    assert post_form(admin, "Moodle", "preview", {"person": "00000"}).status_code == 404


def test_previewing_oidc_claims_for_chosen_scopes(admin, person):
    register(OIDC)
    r = post_form(admin, "e-learning", "preview", {"person": "lukasz.z@example.com", "scopes": ["openid", "email"]})
    assert r.status_code == 200, text(r)
    claims_shown = {row[1] for row in rows(text(r))}
    assert claims_shown == {"sub", "email", "email_verified"}


def test_running_the_self_test_in_the_console(admin, live, app):
    r = post_form(admin, "USOSweb", "self-test", {"sample": USOSWEB})
    assert r.status_code == 200, text(r)
    html = text(r)
    assert "Every check passed." in plain(html)
    assert 'data-check="cas_p3_service_validate" data-status="ok"' in html
    (event,) = events("helpdesk.service_self_test")
    assert event.data["service"] == "USOSweb" and event.data["checks"]["cas_login"] == "ok" and event.reason is None


def test_a_failing_self_test_is_recorded_as_such(admin, live):
    r = post_form(admin, "USOSweb", "self-test", {"sample": "https://nowhere.example.org/"})
    assert "Some checks did not pass." in plain(text(r))
    assert events("helpdesk.service_self_test")[-1].reason == "failed"


def test_staff_without_admin_cannot_post_either(client, clock):
    desk = Desk.open(client, clock, role="helpdesk")
    page = desk.page("/password/reset")  # any form of this browser session: one CSRF token for all
    r = desk.client.post("/helpdesk/services/USOSweb/self-test", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 403
