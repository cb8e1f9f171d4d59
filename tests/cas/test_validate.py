"""Ticket validation as a relying app sees it: /validate, /serviceValidate, /proxyValidate, /p3/* (XML, JSON)."""
from __future__ import annotations

import datetime as dt
import math
import re

import pytest
import sqlalchemy.exc

from tests.cas.conftest import (
    CAS_NS,
    MOODLE,
    NS,
    TICKET_RE,
    USER,
    VALIDATE_XML_ENDPOINTS,
    audit_events,
    cas_json,
    cas_xml,
    failure_code,
    login_ticket,
    service_for,
    sso_ticket,
    success,
    validate,
)
from tests.conftest import USOSWEB
from tests.factories import create_account

ENDPOINTS = VALIDATE_XML_ENDPOINTS
FORMATS = ["XML", "JSON"]
UNKNOWN_ST = "ST-AAAAAAAAAAAAAAAAAAAAAA"


def outcome(response, fmt: str) -> tuple[str, str]:
    """("success", user) or (code, description), read the way a client library reads it."""
    if fmt == "JSON":
        body = cas_json(response)
        assert len(body) == 1
        if "authenticationSuccess" in body:
            return "success", body["authenticationSuccess"]["user"]
        fail = body["authenticationFailure"]
        assert set(fail) == {"code", "description"}
        return fail["code"], fail["description"]
    root = cas_xml(response)
    ok = root.find("cas:authenticationSuccess", NS)
    if ok is not None:
        return "success", ok.find("cas:user", NS).text
    fail = root.find("cas:authenticationFailure", NS)
    assert fail is not None and len(fail) == 0
    return fail.get("code"), (fail.text or "").strip()


def code(response, fmt="XML") -> str:
    return outcome(response, fmt)[0]


# --- success -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_service_ticket_validates_on_every_endpoint(client, person, endpoint, fmt):
    t = login_ticket(client)
    r = validate(client, endpoint, t, format=fmt)
    assert outcome(r, fmt) == ("success", USER)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_format_is_case_insensitive_and_xml_by_default(client, person, endpoint):
    assert validate(client, endpoint, login_ticket(client)).mimetype == "application/xml"
    assert validate(client, endpoint, sso_ticket(client), format="json").mimetype == "application/json"
    assert validate(client, endpoint, sso_ticket(client), format="xml").mimetype == "application/xml"


def test_validate_v1_answers_yes_and_the_user(client, person):
    r = validate(client, "/cas/validate", login_ticket(client))
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    assert r.get_data(as_text=True) == f"yes\n{USER}\n"


def test_validate_v1_uses_the_services_username_attribute(client, person):
    login_ticket(client)
    r = validate(client, "/cas/validate", sso_ticket(client, MOODLE), MOODLE)
    assert r.get_data(as_text=True) == "yes\n12345\n"


@pytest.mark.parametrize("case", ["unknown", "replay", "wrong_service", "missing_ticket", "missing_service",
                                  "not_a_ticket", "renew"])
def test_validate_v1_answers_no(client, person, case):
    t = login_ticket(client)
    params = {"ticket": t, "service": USOSWEB}
    if case == "unknown":
        params["ticket"] = UNKNOWN_ST
    elif case == "replay":
        assert validate(client, "/cas/validate", t).get_data(as_text=True).startswith("yes\n")
    elif case == "wrong_service":
        params["service"] = MOODLE
    elif case == "missing_ticket":
        del params["ticket"]
    elif case == "missing_service":
        del params["service"]
    elif case == "not_a_ticket":
        params["ticket"] = "TGT-whatever"
    elif case == "renew":
        params["ticket"] = sso_ticket(client)
        params["renew"] = "true"
    r = client.get("/cas/validate", query_string=params)
    assert r.status_code == 200
    assert r.get_data(as_text=True) == "no\n\n"


# --- INVALID_REQUEST ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("missing", ["ticket", "service", "both"])
def test_missing_parameters_are_invalid_request(client, person, endpoint, fmt, missing):
    t = login_ticket(client)
    params = {"ticket": t, "service": USOSWEB, "format": fmt}
    if missing in ("ticket", "both"):
        del params["ticket"]
    if missing in ("service", "both"):
        del params["service"]
    assert code(client.get(endpoint, query_string=params), fmt) == "INVALID_REQUEST"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unsupported_format_is_invalid_request_in_xml(client, person, endpoint):
    r = validate(client, endpoint, login_ticket(client), format="YAML")
    assert code(r) == "INVALID_REQUEST"
    events = audit_events("cas.validate.failed")
    assert events[-1].reason == "INVALID_REQUEST"


# --- INVALID_TICKET_SPEC -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("bogus", ["PGT-" + "a" * 40, "TGT-" + "b" * 40, "garbage", "st-lowercase"])
def test_strings_that_are_not_service_or_proxy_tickets(client, endpoint, fmt, bogus):
    assert code(validate(client, endpoint, bogus, format=fmt), fmt) == "INVALID_TICKET_SPEC"


# --- INVALID_TICKET ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unknown_ticket_is_invalid_ticket(client, endpoint, fmt):
    result, description = outcome(validate(client, endpoint, UNKNOWN_ST, format=fmt), fmt)
    assert result == "INVALID_TICKET"
    assert "not recognized" in description


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_ticket_is_single_use(client, person, endpoint, fmt):
    t = login_ticket(client)
    assert code(validate(client, endpoint, t, format=fmt), fmt) == "success"
    assert code(validate(client, endpoint, t, format=fmt), fmt) == "INVALID_TICKET"


def test_a_ticket_used_on_one_endpoint_is_dead_on_all_others(client, person):
    t = login_ticket(client)
    assert validate(client, "/cas/validate", t).get_data(as_text=True).startswith("yes")
    for endpoint in ENDPOINTS:
        assert code(validate(client, endpoint, t)) == "INVALID_TICKET"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_failed_validation_also_uses_the_ticket_up(client, person, endpoint, fmt):
    """§3.1.1: whether or not validation was successful, CAS MUST then invalidate the ticket."""
    login_ticket(client)
    t = sso_ticket(client)
    assert code(validate(client, endpoint, t, renew="true", format=fmt), fmt) == "INVALID_TICKET"
    assert code(validate(client, endpoint, t, format=fmt), fmt) == "INVALID_TICKET"


@pytest.mark.settings(TICKET_LIFETIME=1)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_expired_ticket_is_invalid_ticket(client, person, clock, endpoint, fmt):
    t = login_ticket(client)
    clock.advance(seconds=1, milliseconds=1)
    result, description = outcome(validate(client, endpoint, t, format=fmt), fmt)
    assert result == "INVALID_TICKET"
    assert "expired" in description


@pytest.mark.settings(TICKET_LIFETIME=1)
def test_ticket_is_valid_until_its_lifetime_ends(client, person, clock):
    t = login_ticket(client)
    clock.advance(milliseconds=900)
    assert code(validate(client, "/cas/serviceValidate", t)) == "success"


@pytest.mark.settings(TICKET_LIFETIME=1)
def test_expired_ticket_on_validate_v1(client, person, clock):
    t = login_ticket(client)
    clock.advance(seconds=2)
    assert validate(client, "/cas/validate", t).get_data(as_text=True) == "no\n\n"


def test_default_ticket_lifetime_is_short(client, person, clock):
    """CAS 3.0 §3.1.1 recommends at most five minutes; the default is 10 s."""
    t = login_ticket(client)
    clock.advance(seconds=11)
    assert code(validate(client, "/cas/serviceValidate", t)) == "INVALID_TICKET"


def test_ticket_of_an_account_that_left_is_refused(client, person):
    from idp.extensions import db

    t = login_ticket(client)
    person.status = "left"
    db.session.commit()
    assert code(validate(client, "/cas/serviceValidate", t)) == "INVALID_TICKET"


def test_ticket_of_someone_missing_from_imports_beyond_the_grace_is_refused(client, person, app):
    """The import marks a person missing from the SIS export with `left_at` only; after
    `left_grace_days` their open session no longer gets tickets validated."""
    import datetime as dt

    from idp.core.clock import utcnow
    from idp.extensions import db

    grace = app.extensions["idp.policy"].data["migration"]["left_grace_days"]
    t = login_ticket(client)
    person.left_at = utcnow() - dt.timedelta(days=grace - 1)
    db.session.commit()
    assert success(validate(client, "/cas/serviceValidate", t)) is not None  # within the grace: still in
    t = sso_ticket(client)
    person.left_at = utcnow() - dt.timedelta(days=grace + 1)
    db.session.commit()
    assert code(validate(client, "/cas/serviceValidate", t)) == "INVALID_TICKET"


# --- INVALID_SERVICE ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_wrong_service_is_invalid_service_and_burns_the_ticket(client, person, endpoint, fmt):
    t = login_ticket(client)
    assert code(validate(client, endpoint, t, MOODLE, format=fmt), fmt) == "INVALID_SERVICE"
    assert code(validate(client, endpoint, t, USOSWEB, format=fmt), fmt) == "INVALID_TICKET"


@pytest.mark.parametrize("other", [
    "https://usosweb.example.edu.pl/kontroler.php?_action=news/other",   # same app, other URL
    USOSWEB + "&x=1",
])
def test_service_must_be_the_same_url(client, person, other):
    """Encoded differently is the same URL (test_the_same_service_written_differently_validates)."""
    t = login_ticket(client)
    assert code(validate(client, "/cas/serviceValidate", t, other)) == "INVALID_SERVICE"


def test_service_is_url_decoded_once(client, person):
    """Clients send service URL-encoded (§2.5.1); the decoded value must equal the one given to /login."""
    t = login_ticket(client)
    from urllib.parse import quote

    r = client.get(f"/cas/serviceValidate?ticket={t}&service={quote(USOSWEB, safe='')}")
    assert code(r) == "success"


# --- UNAUTHORIZED_SERVICE_PROXY, INVALID_PROXY_CALLBACK (details in test_proxy.py) -------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unauthorized_service_proxy(client, person, register, callback_server, endpoint, fmt):
    noproxy = "https://noproxy.example.edu.pl/app"
    register({"name": "NoProxy", "protocol": "cas", "service_pattern": r"^https://noproxy\.example\.edu\.pl/.*",
              "allow_proxy": False}, service_for(callback_server.url, "Callback"))
    t = login_ticket(client, noproxy)
    r = validate(client, endpoint, t, noproxy, pgtUrl=callback_server.url + "/pgt", format=fmt)
    assert code(r, fmt) == "UNAUTHORIZED_SERVICE_PROXY"
    assert callback_server.calls == []


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_invalid_proxy_callback(client, person, callback_server, endpoint, fmt):
    t = login_ticket(client)
    r = validate(client, endpoint, t, pgtUrl=callback_server.url + "/pgt", format=fmt)  # not registered
    assert code(r, fmt) == "INVALID_PROXY_CALLBACK"
    assert callback_server.calls == []


# --- INTERNAL_ERROR ----------------------------------------------------------------------------------

def _break_ticket_store(monkeypatch, exc: Exception):
    from idp.core import tickets

    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(tickets, "consume", broken)
    monkeypatch.setattr(tickets, "find_pgt", broken)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unexpected_error_is_internal_error_in_the_protocol_format(client, person, monkeypatch, endpoint, fmt):
    t = login_ticket(client)
    _break_ticket_store(monkeypatch, RuntimeError("disk on fire"))
    r = validate(client, endpoint, t, format=fmt)
    result, description = outcome(r, fmt)
    assert result == "INTERNAL_ERROR"
    assert "disk on fire" not in r.get_data(as_text=True)  # no internals leak to the client
    assert "Traceback" not in r.get_data(as_text=True)
    event = audit_events("cas.validate.failed")[-1]
    assert event.reason == "INTERNAL_ERROR"


def test_database_error_is_internal_error_and_the_next_request_works(client, person, monkeypatch):
    t = login_ticket(client)
    with monkeypatch.context() as m:
        _break_ticket_store(m, sqlalchemy.exc.OperationalError("UPDATE ticket", {}, Exception("gone away")))
        assert code(validate(client, "/cas/serviceValidate", t)) == "INTERNAL_ERROR"
    assert code(validate(client, "/cas/serviceValidate", t)) == "success"  # nothing was consumed


def test_unexpected_error_on_validate_v1_is_a_plain_no(client, person, monkeypatch):
    t = login_ticket(client)
    _break_ticket_store(monkeypatch, RuntimeError("boom"))
    r = validate(client, "/cas/validate", t)
    assert r.mimetype == "text/plain"
    assert r.get_data(as_text=True) == "no\n\n"


@pytest.mark.parametrize("fmt", FORMATS)
def test_unexpected_error_on_proxy_is_internal_error(client, monkeypatch, fmt):
    _break_ticket_store(monkeypatch, RuntimeError("boom"))
    r = client.get("/cas/proxy", query_string={"pgt": "PGT-" + "x" * 40, "targetService": MOODLE, "format": fmt})
    if fmt == "JSON":
        assert cas_json(r)["authenticationFailure"]["code"] == "INTERNAL_ERROR"
    else:
        assert cas_xml(r).find("cas:proxyFailure", NS).get("code") == "INTERNAL_ERROR"


def test_long_service_url_is_answered_normally(client, person):
    """An over-long (or hostile) service parameter must not break the audit insert (actor is 254 chars)."""
    long_service = USOSWEB + "&pad=" + "a" * 600
    r = validate(client, "/cas/serviceValidate", UNKNOWN_ST, long_service)
    assert code(r) == "INVALID_TICKET"
    r = validate(client, "/cas/serviceValidate", login_ticket(client), long_service)
    assert code(r) == "INVALID_SERVICE"


def test_concurrent_validations_of_one_ticket_succeed_exactly_once(app, client, person):
    """Two nodes (here: threads with their own DB sessions) racing for one ticket: one wins."""
    import threading

    from tests.conftest import FreshContextClient

    t = login_ticket(client)
    results: list[str] = []
    barrier = threading.Barrier(6)

    def worker():
        c = FreshContextClient(app, app.response_class)
        barrier.wait()
        results.append(validate(c, "/cas/validate", t).get_data(as_text=True))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert sorted(results) == ["no\n\n"] * 5 + [f"yes\n{USER}\n"]


# --- ticket format -----------------------------------------------------------------------------------

def test_service_ticket_format(client, person):
    tickets = [login_ticket(client)] + [sso_ticket(client) for _ in range(40)]
    assert len(set(tickets)) == len(tickets)
    for t in tickets:
        assert t.startswith("ST-")
        assert len(t) <= 32                      # every CAS client must accept 32
        assert TICKET_RE.fullmatch(t)             # §3.7: {A-Z, a-z, 0-9} and '-'
        assert "usosweb" not in t.lower()         # the service identifier is not part of the ticket
        random_part = t[3:]
        # >= 128 bits: at most 62 symbols per character, so at least 22 characters of randomness.
        assert len(random_part) * math.log2(62) >= 128
    alphabet = set("".join(t[3:] for t in tickets))
    assert alphabet & set("ABCDEFGHIJKLMNOPQRSTUVWXYZ") and alphabet & set("abcdefghijklmnopqrstuvwxyz") \
        and alphabet & set("0123456789")
    assert len(alphabet) > 50  # the whole base62 alphabet is in use, not hex or a counter


# --- what the success response carries --------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["/cas/serviceValidate", "/cas/proxyValidate"])
def test_no_attributes_before_cas3(client, person, endpoint):
    ok = success(validate(client, endpoint, login_ticket(client)))
    assert [child.tag for child in ok] == [f"{{{CAS_NS}}}user"]
    body = cas_json(validate(client, endpoint, sso_ticket(client), format="JSON"))
    assert body["authenticationSuccess"] == {"user": USER}


@pytest.mark.parametrize("endpoint", ["/cas/p3/serviceValidate", "/cas/p3/proxyValidate"])
def test_p3_attributes(client, person, endpoint):
    before = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    ok = success(validate(client, endpoint, login_ticket(client)))
    assert [child.tag for child in ok] == [f"{{{CAS_NS}}}user", f"{{{CAS_NS}}}attributes"]
    attrs = ok.find("cas:attributes", NS)
    names = [child.tag.split("}")[1] for child in attrs]
    # The three the schema requires, first and in order, then what the registry releases.
    assert names[:3] == ["authenticationDate", "longTermAuthenticationRequestTokenUsed", "isFromNewLogin"]
    values: dict[str, list[str]] = {}
    for child in attrs:
        assert child.tag.startswith(f"{{{CAS_NS}}}")
        values.setdefault(child.tag.split("}")[1], []).append(child.text)
    auth_date = dt.datetime.strptime(values["authenticationDate"][0], "%Y-%m-%dT%H:%M:%SZ")
    assert before - dt.timedelta(seconds=5) <= auth_date <= before + dt.timedelta(seconds=5)
    assert values["longTermAuthenticationRequestTokenUsed"] == ["false"]
    assert values["isFromNewLogin"] == ["true"]
    assert values["mail"] == [USER]
    assert values["album"] == ["12345"]
    assert values["given_name"] == ["Łukasz"]
    assert values["family_name"] == ["Żółkiewski"]
    assert values["role"] == ["student"]
    assert values["aliases"] == ["s12345@student.example.edu.pl"]


def test_p3_sso_ticket_is_not_from_new_login(client, person):
    login_ticket(client)
    ok = success(validate(client, "/cas/p3/serviceValidate", sso_ticket(client)))
    assert ok.find("cas:attributes/cas:isFromNewLogin", NS).text == "false"


def test_multi_valued_attribute_repeats_the_element(client, app):
    create_account(aliases=("s12345@student.example.edu.pl", "lz@example.edu.pl"))
    ok = success(validate(client, "/cas/p3/serviceValidate", login_ticket(client)))
    assert [e.text for e in ok.findall("cas:attributes/cas:aliases", NS)] == [
        "s12345@student.example.edu.pl", "lz@example.edu.pl"]
    body = cas_json(validate(client, "/cas/p3/serviceValidate", sso_ticket(client), format="JSON"))
    assert body["authenticationSuccess"]["attributes"]["aliases"] == [
        "s12345@student.example.edu.pl", "lz@example.edu.pl"]


def test_p3_json_attributes(client, person):
    body = cas_json(validate(client, "/cas/p3/serviceValidate", login_ticket(client), format="JSON"))
    ok = body["authenticationSuccess"]
    assert ok["user"] == USER
    attrs = ok["attributes"]
    assert attrs["given_name"] == "Łukasz"
    assert attrs["album"] == "12345"
    assert str(attrs["isFromNewLogin"]).lower() == "true"
    assert "proxyGrantingTicket" not in ok and "proxies" not in ok


def test_attributes_released_are_only_what_the_registry_lists(client, person):
    login_ticket(client)
    ok = success(validate(client, "/cas/p3/serviceValidate", sso_ticket(client, MOODLE), MOODLE))
    assert ok.find("cas:user", NS).text == "12345"  # Moodle: username_attribute = "album"
    names = [child.tag.split("}")[1] for child in ok.find("cas:attributes", NS)]
    assert names == ["authenticationDate", "longTermAuthenticationRequestTokenUsed", "isFromNewLogin", "mail"]


def test_markup_in_personal_data_is_escaped(client, app):
    create_account(first_name='<b>Zoë</b> & "Ann"', last_name="O'Brien]]>")
    r = validate(client, "/cas/p3/serviceValidate", login_ticket(client))
    ok = success(r)  # parses: nothing broke the document
    assert ok.find("cas:attributes/cas:given_name", NS).text == '<b>Zoë</b> & "Ann"'
    assert ok.find("cas:attributes/cas:family_name", NS).text == "O'Brien]]>"
    assert "<b>" not in r.get_data(as_text=True)


def test_failure_description_escapes_what_the_caller_sent(client):
    r = validate(client, "/cas/serviceValidate", "ST-<script>&")
    root = cas_xml(r)  # well-formed despite the markup in the ticket
    assert root.find("cas:authenticationFailure", NS) is not None
    assert "<script>" not in r.get_data(as_text=True)


def test_validation_responses_are_not_cached(client, person):
    r = validate(client, "/cas/serviceValidate", login_ticket(client))
    assert "no-store" in r.headers["Cache-Control"]


def test_validation_success_and_failure_are_audited(client, person):
    t = login_ticket(client)
    validate(client, "/cas/serviceValidate", t)
    validate(client, "/cas/serviceValidate", t)
    ok = audit_events("cas.validate.succeeded")
    assert len(ok) == 1 and ok[0].account_id == person.id and ok[0].actor == "USOSweb"
    failed = audit_events("cas.validate.failed")
    assert [e.reason for e in failed] == ["INVALID_TICKET"]
    assert failed[0].data["service"] == USOSWEB
    assert re.search(r"not recognized", failed[0].data["detail"])


@pytest.mark.parametrize("endpoint", VALIDATE_XML_ENDPOINTS)
def test_control_characters_in_an_echoed_ticket_still_give_well_formed_xml(client, endpoint):
    """The failure's description names the ticket; XML 1.0 cannot carry U+0001 even escaped."""
    r = client.get(endpoint, query_string={"ticket": "ST-\x01\x0bbad", "service": USOSWEB})
    assert failure_code(r) in {"INVALID_TICKET", "INVALID_TICKET_SPEC"}  # cas_xml parsed it
    assert "ST-bad" in r.get_data(as_text=True)


def test_control_characters_in_a_pgt_echoed_by_proxy_still_give_well_formed_xml(client):
    r = client.get("/cas/proxy", query_string={"pgt": "PGT-\x00x", "targetService": USOSWEB})
    doc = cas_xml(r)
    assert doc.find("cas:proxyFailure", NS) is not None


@pytest.mark.parametrize("issued, presented", [
    ("https://usosweb.example.edu.pl/kontroler.php?_action=home#top", "https://usosweb.example.edu.pl/kontroler.php?_action=home"),
    ("https://usosweb.example.edu.pl/app?x=a%20b", "https://usosweb.example.edu.pl/app?x=a+b"),
    ("https://usosweb.example.edu.pl/app?next=%2Fhome", "https://usosweb.example.edu.pl/app?next=/home"),
    ("https://usosweb.example.edu.pl/app", "HTTPS://USOSWEB.example.edu.pl/app"),
])
def test_the_same_service_written_differently_validates(client, person, issued, presented):
    """A client that rebuilds its service URL from the request it got (mod_auth_cas, phpCAS) cannot repeat
    a #fragment and may encode differently."""
    t = login_ticket(client, issued)
    assert success(validate(client, "/cas/serviceValidate", t, presented)) is not None


@pytest.mark.parametrize("issued, presented", [
    ("https://usosweb.example.edu.pl/app?x=1", "https://usosweb.example.edu.pl/app?x=2"),
    ("https://usosweb.example.edu.pl/App", "https://usosweb.example.edu.pl/app"),
    ("https://usosweb.example.edu.pl/app?a=1&b=2", "https://usosweb.example.edu.pl/app?b=2&a=1"),
    ("https://usosweb.example.edu.pl/app", "https://usosweb.example.edu.pl/app/"),
    ("https://usosweb.example.edu.pl/app?next=a%26admin%3D1", "https://usosweb.example.edu.pl/app?next=a&admin=1"),
    ("https://usosweb.example.edu.pl/a+b", "https://usosweb.example.edu.pl/a%20b"),  # + is a space only in a query
])
def test_another_service_is_still_invalid_service(client, person, issued, presented):
    t = login_ticket(client, issued)
    assert failure_code(validate(client, "/cas/serviceValidate", t, presented)) == "INVALID_SERVICE"
