"""CAS proxying (§2.5.4, §2.6, §2.7, §3.3, §3.4): pgtUrl callbacks, /proxy, proxy tickets, proxy chains."""
from __future__ import annotations

import pytest

from tests.cas.conftest import (
    MOODLE,
    NS,
    TICKET_RE,
    USER,
    audit_events,
    cas_json,
    cas_xml,
    failure_code,
    login_ticket,
    service_for,
    success,
    validate,
)
from tests.conftest import USOSWEB

BACKEND = "https://api.example.edu.pl/v1/grades"
BACKEND_SERVICE = {"name": "Grades API", "protocol": "cas", "service_pattern": r"^https://api\.example\.edu\.pl/.*"}


@pytest.fixture
def proxy_setup(register, callback_server):
    """The conftest services, a back-end API, and the callback server registered as a service."""
    register(BACKEND_SERVICE, service_for(callback_server.url, "Proxy callbacks"))
    return callback_server


def pgt_from(server, iou: str) -> str:
    """What the proxying app does: find the pgtId its callback received for this IOU."""
    matches = [c["query"]["pgtId"][0] for c in server.calls if c["query"].get("pgtIou") == [iou]]
    assert len(matches) == 1, server.calls
    return matches[0]


def get_pgt(client, server, ticket, service=USOSWEB, endpoint="/cas/serviceValidate", path="/pgt"):
    ok = success(validate(client, endpoint, ticket, service, pgtUrl=server.url + path))
    iou = ok.find("cas:proxyGrantingTicket", NS).text
    return pgt_from(server, iou), iou, ok


def request_pt(client, pgt, target=BACKEND, fmt=None):
    params = {"pgt": pgt, "targetService": target}
    if fmt:
        params["format"] = fmt
    return client.get("/cas/proxy", query_string=params)


def pt_from(response) -> str:
    root = cas_xml(response)
    ok = root.find("cas:proxySuccess", NS)
    assert ok is not None, response.get_data(as_text=True)
    return ok.find("cas:proxyTicket", NS).text


def proxy_failure(response) -> str:
    return cas_xml(response).find("cas:proxyFailure", NS).get("code")


# --- pgtUrl ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["/cas/serviceValidate", "/cas/proxyValidate", "/cas/p3/serviceValidate",
                                      "/cas/p3/proxyValidate"])
def test_pgt_callback_gets_pgt_and_iou_and_the_response_carries_the_iou(client, person, proxy_setup, endpoint):
    t = login_ticket(client)
    ok = success(validate(client, endpoint, t, pgtUrl=proxy_setup.url + "/pgt"))
    iou = ok.find("cas:proxyGrantingTicket", NS).text
    assert ok.find("cas:user", NS).text == USER
    [call] = proxy_setup.calls
    assert call["method"] == "GET"
    assert call["path"].startswith("/pgt?")
    assert set(call["query"]) == {"pgtId", "pgtIou"}
    assert call["query"]["pgtIou"] == [iou]
    pgt = call["query"]["pgtId"][0]
    assert pgt.startswith("PGT-") and len(pgt) <= 64 and TICKET_RE.fullmatch(pgt)
    assert iou.startswith("PGTIOU-") and len(iou) <= 64 and TICKET_RE.fullmatch(iou)
    assert pgt.split("-", 1)[1] not in iou  # the IOU says nothing about the PGT
    # Schema order: user, attributes?, proxyGrantingTicket, proxies?
    tags = [child.tag.split("}")[1] for child in ok]
    assert tags[-1] == "proxyGrantingTicket" and tags[0] == "user"


def test_pgt_in_json(client, person, proxy_setup):
    t = login_ticket(client)
    body = cas_json(validate(client, "/cas/serviceValidate", t, pgtUrl=proxy_setup.url + "/pgt", format="JSON"))
    iou = body["authenticationSuccess"]["proxyGrantingTicket"]
    assert pgt_from(proxy_setup, iou).startswith("PGT-")


def test_callback_query_parameters_are_preserved(client, person, proxy_setup):
    t = login_ticket(client)
    success(validate(client, "/cas/serviceValidate", t, pgtUrl=proxy_setup.url + "/pgt?app=usos&x=1"))
    [call] = proxy_setup.calls
    assert call["query"]["app"] == ["usos"] and call["query"]["x"] == ["1"]
    assert "pgtId" in call["query"] and "pgtIou" in call["query"]


@pytest.mark.parametrize("status", [500, 404, 201, 204])
def test_callback_not_answering_200_gives_invalid_proxy_callback_and_no_pgt(client, person, proxy_setup, status):
    proxy_setup.status = status
    t = login_ticket(client)
    r = validate(client, "/cas/serviceValidate", t, pgtUrl=proxy_setup.url + "/pgt")
    assert failure_code(r) == "INVALID_PROXY_CALLBACK"
    assert "proxyGrantingTicket" not in r.get_data(as_text=True)
    [call] = proxy_setup.calls
    pgt = call["query"]["pgtId"][0]
    # The PGT the callback saw was never granted.
    assert proxy_failure(request_pt(client, pgt)) == "INVALID_TICKET"
    # And the ST was used up (§3.1.1).
    assert failure_code(validate(client, "/cas/serviceValidate", t)) == "INVALID_TICKET"


def test_dead_callback_gives_invalid_proxy_callback(client, person, register, dead_url):
    register(service_for(dead_url, "Dead callback"))
    t = login_ticket(client)
    r = validate(client, "/cas/serviceValidate", t, pgtUrl=dead_url + "/pgt")
    assert failure_code(r) == "INVALID_PROXY_CALLBACK"


@pytest.mark.settings(CALLBACK_TIMEOUT=0.5)
def test_slow_callback_gives_invalid_proxy_callback_in_time(client, person, register, app_server):
    import time

    slow = app_server()
    slow.delay = 3.0
    register(service_for(slow.url, "Slow callback"))
    t = login_ticket(client)
    started = time.monotonic()
    r = validate(client, "/cas/serviceValidate", t, pgtUrl=slow.url + "/pgt")
    assert failure_code(r) == "INVALID_PROXY_CALLBACK"
    assert time.monotonic() - started < 2.0  # the callback would answer after 3 s; the timeout is 0.5 s


def test_pgt_url_not_matching_a_registered_service(client, person, callback_server):
    t = login_ticket(client)
    r = validate(client, "/cas/serviceValidate", t, pgtUrl=callback_server.url + "/pgt")
    assert failure_code(r) == "INVALID_PROXY_CALLBACK"
    assert callback_server.calls == []
    assert audit_events("cas.validate.failed")[-1].reason == "INVALID_PROXY_CALLBACK"


def test_service_not_allowed_to_proxy(client, person, register, callback_server):
    noproxy = "https://noproxy.example.edu.pl/app"
    register({"name": "NoProxy", "protocol": "cas", "service_pattern": r"^https://noproxy\.example\.edu\.pl/.*",
              "allow_proxy": False}, service_for(callback_server.url, "Proxy callbacks"))
    t = login_ticket(client, noproxy)
    r = validate(client, "/cas/serviceValidate", t, noproxy, pgtUrl=callback_server.url + "/pgt")
    assert failure_code(r) == "UNAUTHORIZED_SERVICE_PROXY"
    assert callback_server.calls == []
    # Without pgtUrl the same kind of ticket validates normally.
    from tests.cas.conftest import sso_ticket

    assert failure_code(validate(client, "/cas/serviceValidate", sso_ticket(client, noproxy), noproxy)) is None


def test_http_pgt_url_to_a_public_host_is_refused(client, person, register):
    # A literal public address: no DNS lookup, and the refusal must come before any connection.
    register({"name": "Plain http proxy", "protocol": "cas", "service_pattern": r"^http://93\.184\.216\.34/.*"})
    t = login_ticket(client)
    r = validate(client, "/cas/serviceValidate", t, pgtUrl="http://93.184.216.34/pgt")
    assert failure_code(r) == "INVALID_PROXY_CALLBACK"
    assert "https required" in audit_events("cas.validate.failed")[-1].data["detail"]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/pgt", "javascript:alert(1)", "/relative/pgt"])
def test_pgt_url_that_is_not_http_is_refused(client, person, register, url):
    register({"name": "Anything", "protocol": "cas", "service_pattern": ".*"})
    t = login_ticket(client)
    assert failure_code(validate(client, "/cas/serviceValidate", t, pgtUrl=url)) == "INVALID_PROXY_CALLBACK"


@pytest.mark.settings(ALLOW_LOOPBACK_CALLBACKS=False)
def test_loopback_pgt_url_is_refused_in_production(client, person, proxy_setup):
    t = login_ticket(client)
    r = validate(client, "/cas/serviceValidate", t, pgtUrl=proxy_setup.url + "/pgt")
    assert failure_code(r) == "INVALID_PROXY_CALLBACK"
    assert proxy_setup.calls == []


def test_callback_redirect_is_followed_to_an_allowed_target(client, person, register, app_server):
    final = app_server()
    hop = app_server()
    hop.status = 302
    hop.location = final.url + "/final?"
    register(service_for(hop.url, "Redirecting callback"))
    t = login_ticket(client)
    ok = success(validate(client, "/cas/serviceValidate", t, pgtUrl=hop.url + "/pgt"))
    iou = ok.find("cas:proxyGrantingTicket", NS).text
    assert final.calls and final.calls[0]["query"]["pgtIou"] == [iou]


def test_callback_redirect_to_a_refused_target_is_not_followed(client, person, register, app_server):
    """The SSRF guard applies to every hop, not only to the pgtUrl: a registered callback that redirects
    to plain http on a public host (or, in production, to loopback) must not be followed."""
    hop = app_server()
    hop.status = 302
    hop.location = "http://93.184.216.34/steal"
    register(service_for(hop.url, "Redirecting callback"))
    t = login_ticket(client)
    r = validate(client, "/cas/serviceValidate", t, pgtUrl=hop.url + "/pgt")
    assert failure_code(r) == "INVALID_PROXY_CALLBACK"
    assert "https required" in audit_events("cas.validate.failed")[-1].data["detail"]


def test_endless_callback_redirects_fail(client, person, register, app_server):
    hop = app_server()
    hop.status = 302
    hop.location = hop.url + "/again"
    register(service_for(hop.url, "Looping callback"))
    t = login_ticket(client)
    r = validate(client, "/cas/serviceValidate", t, pgtUrl=hop.url + "/pgt")
    assert failure_code(r) == "INVALID_PROXY_CALLBACK"
    assert len(hop.calls) <= 10


# --- /proxy ------------------------------------------------------------------------------------------

def test_proxy_issues_a_proxy_ticket_for_a_registered_target(client, person, proxy_setup):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    r = request_pt(client, pgt)
    pt = pt_from(r)
    assert pt.startswith("PT-") and len(pt) <= 32 and TICKET_RE.fullmatch(pt)
    # The back end validates it at /proxyValidate and learns who proxied.
    ok = success(validate(client, "/cas/proxyValidate", pt, BACKEND))
    assert ok.find("cas:user", NS).text == USER
    assert [p.text for p in ok.findall("cas:proxies/cas:proxy", NS)] == [proxy_setup.url + "/pgt"]


def test_pgt_is_multi_use_and_each_pt_single_use(client, person, proxy_setup):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    pts = [pt_from(request_pt(client, pgt)) for _ in range(3)]
    assert len(set(pts)) == 3
    for pt in pts:
        assert failure_code(validate(client, "/cas/proxyValidate", pt, BACKEND)) is None
        assert failure_code(validate(client, "/cas/proxyValidate", pt, BACKEND)) == "INVALID_TICKET"


def test_proxy_json(client, person, proxy_setup):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    body = cas_json(request_pt(client, pgt, fmt="JSON"))
    assert body["proxySuccess"]["proxyTicket"].startswith("PT-")
    body = cas_json(request_pt(client, pgt, target="https://unregistered.example.com/", fmt="JSON"))
    assert body["authenticationFailure"]["code"] == "UNAUTHORIZED_SERVICE"


def test_proxy_to_an_unregistered_target_is_unauthorized_service(client, person, proxy_setup):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    assert proxy_failure(request_pt(client, pgt, target="https://unregistered.example.com/")) == \
        "UNAUTHORIZED_SERVICE"


def test_proxy_to_a_target_the_person_is_not_entitled_to(client, register, callback_server):
    from tests.factories import create_account

    register(service_for(callback_server.url, "Proxy callbacks"),
             {**BACKEND_SERVICE, "requires_entitlement": True})
    create_account(entitlements=["USOSweb"])
    pgt, _, _ = get_pgt(client, callback_server, login_ticket(client))
    assert proxy_failure(request_pt(client, pgt)) == "UNAUTHORIZED_SERVICE"


@pytest.mark.parametrize("params", [{}, {"pgt": "PGT-x"}, {"targetService": BACKEND}, {"pgt": "", "targetService": ""}])
def test_proxy_without_both_parameters_is_invalid_request(client, params):
    r = client.get("/cas/proxy", query_string=params)
    assert proxy_failure(r) == "INVALID_REQUEST"


@pytest.mark.parametrize("bogus", ["PGT-" + "x" * 40, "garbage", "PGTIOU-" + "y" * 40])
def test_proxy_with_an_unknown_pgt_is_invalid_ticket(client, bogus):
    assert proxy_failure(request_pt(client, bogus)) == "INVALID_TICKET"


def test_proxy_refuses_a_service_ticket_in_place_of_a_pgt(client, person):
    t = login_ticket(client)
    assert proxy_failure(request_pt(client, t)) == "INVALID_TICKET"
    # ... and the ST the confused app sent is not written to the audit log in full.
    for event in audit_events():
        assert t not in str(event.data) and t not in event.actor
    # It is still the app's to validate.
    assert failure_code(validate(client, "/cas/serviceValidate", t)) is None


def test_proxy_refuses_the_iou(client, person, proxy_setup):
    _, iou, _ = get_pgt(client, proxy_setup, login_ticket(client))
    assert proxy_failure(request_pt(client, iou)) == "INVALID_TICKET"


@pytest.mark.settings(PGT_LIFETIME=60)
def test_pgt_expires(client, person, proxy_setup, clock):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    clock.advance(seconds=59)
    pt_from(request_pt(client, pgt))
    clock.advance(seconds=2)
    assert proxy_failure(request_pt(client, pgt)) == "INVALID_TICKET"


# --- proxy tickets at the validation endpoints -------------------------------------------------------

@pytest.mark.parametrize("fmt", ["XML", "JSON"])
@pytest.mark.parametrize("endpoint", ["/cas/serviceValidate", "/cas/p3/serviceValidate"])
def test_proxy_ticket_is_refused_by_service_validate(client, person, proxy_setup, endpoint, fmt):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    pt = pt_from(request_pt(client, pgt))
    r = validate(client, endpoint, pt, BACKEND, format=fmt)
    if fmt == "JSON":
        fail = cas_json(r)["authenticationFailure"]
        assert fail["code"] == "INVALID_TICKET_SPEC"
        assert "proxy ticket" in fail["description"]
    else:
        assert failure_code(r) == "INVALID_TICKET_SPEC"
    # A validation attempt, so the PT is used up (§3.1.1).
    assert failure_code(validate(client, "/cas/proxyValidate", pt, BACKEND)) == "INVALID_TICKET"


def test_proxy_ticket_is_refused_by_validate_v1(client, person, proxy_setup):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    pt = pt_from(request_pt(client, pgt))
    assert validate(client, "/cas/validate", pt, BACKEND).get_data(as_text=True) == "no\n\n"


def test_proxy_ticket_for_another_service_is_invalid_service(client, person, proxy_setup):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    pt = pt_from(request_pt(client, pgt))
    assert failure_code(validate(client, "/cas/proxyValidate", pt, MOODLE)) == "INVALID_SERVICE"
    assert failure_code(validate(client, "/cas/proxyValidate", pt, BACKEND)) == "INVALID_TICKET"


def test_proxy_ticket_with_renew_fails(client, person, proxy_setup):
    """A PT never comes from the presentation of primary credentials."""
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    pt = pt_from(request_pt(client, pgt))
    assert failure_code(validate(client, "/cas/proxyValidate", pt, BACKEND, renew="true")) == "INVALID_TICKET"


def test_p3_proxy_validate_gives_attributes_and_proxies(client, person, proxy_setup):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    ok = success(validate(client, "/cas/p3/proxyValidate", pt_from(request_pt(client, pgt)), BACKEND))
    tags = [child.tag.split("}")[1] for child in ok]
    assert tags == ["user", "attributes", "proxies"]
    assert ok.find("cas:attributes/cas:isFromNewLogin", NS).text == "false"


def test_plain_service_ticket_has_no_proxies_element(client, person):
    ok = success(validate(client, "/cas/proxyValidate", login_ticket(client)))
    assert ok.find("cas:proxies", NS) is None


def test_two_level_proxy_chain_lists_the_most_recent_proxy_first(client, person, register, callback_server):
    """USOSweb proxies to Moodle, Moodle proxies to the grades API: the API sees [moodle, usosweb]."""
    register(BACKEND_SERVICE, service_for(callback_server.url, "Proxy callbacks"))
    first_cb = callback_server.url + "/usosweb-pgt"
    second_cb = callback_server.url + "/moodle-pgt"

    pgt1, _, _ = get_pgt(client, callback_server, login_ticket(client), path="/usosweb-pgt")
    pt1 = pt_from(request_pt(client, pgt1, target=MOODLE))
    ok = success(validate(client, "/cas/proxyValidate", pt1, MOODLE, pgtUrl=second_cb))
    assert ok.find("cas:user", NS).text == "12345"  # Moodle's username_attribute
    assert [p.text for p in ok.findall("cas:proxies/cas:proxy", NS)] == [first_cb]
    tags = [child.tag.split("}")[1] for child in ok]
    assert tags == ["user", "proxyGrantingTicket", "proxies"]
    pgt2 = pgt_from(callback_server, ok.find("cas:proxyGrantingTicket", NS).text)

    pt2 = pt_from(request_pt(client, pgt2, target=BACKEND))
    ok = success(validate(client, "/cas/proxyValidate", pt2, BACKEND))
    assert [p.text for p in ok.findall("cas:proxies/cas:proxy", NS)] == [second_cb, first_cb]

    body = cas_json(validate(client, "/cas/proxyValidate", pt_from(request_pt(client, pgt2)), BACKEND,
                             format="JSON"))
    assert body["authenticationSuccess"]["proxies"] == [second_cb, first_cb]


# --- PGT lifetime and the SSO session ----------------------------------------------------------------

def test_pgt_dies_at_logout(client, person, proxy_setup):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    pt_from(request_pt(client, pgt))
    client.get("/cas/logout")
    assert proxy_failure(request_pt(client, pgt)) == "INVALID_TICKET"


def test_pgt_survives_a_renewed_login_and_dies_at_the_final_logout(client, person, proxy_setup):
    """Typing the password again (renew) is not a logout: a proxying app keeps its PGT until the
    person logs out (§3.3.1: PGTs expire when the client logs out of CAS)."""
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    login_ticket(client, MOODLE, extra={"renew": "true"})
    pt_from(request_pt(client, pgt))
    client.get("/cas/logout")
    assert proxy_failure(request_pt(client, pgt)) == "INVALID_TICKET"


def test_pgt_dies_when_the_session_idles_out(client, person, proxy_setup, clock):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    clock.advance(minutes=121)  # default policy: 120 idle minutes
    client.get("/cas/login", query_string={"service": USOSWEB})  # the browser comes back: session found dead
    assert proxy_failure(request_pt(client, pgt)) == "INVALID_TICKET"


@pytest.mark.policy(session__idle_minutes=30)
def test_pgt_dies_with_an_idle_session_even_if_the_browser_never_returns(client, person, proxy_setup, clock):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    clock.advance(minutes=29)
    pt_from(request_pt(client, pgt))  # the app's own use of the PGT does not keep the session alive ...
    clock.advance(minutes=2)
    assert proxy_failure(request_pt(client, pgt)) == "INVALID_TICKET"  # ... the person's inactivity ends it


@pytest.mark.policy(session__absolute_hours=1)
@pytest.mark.settings(PGT_LIFETIME=7200)
def test_pgt_dies_at_the_sessions_absolute_end(client, person, proxy_setup, clock):
    pgt, _, _ = get_pgt(client, proxy_setup, login_ticket(client))
    for _ in range(2):
        clock.advance(minutes=25)
        assert client.get("/cas/login", query_string={"service": USOSWEB}).status_code == 302  # SSO in use
        pt_from(request_pt(client, pgt))
    clock.advance(minutes=11)  # 61 minutes after login
    assert proxy_failure(request_pt(client, pgt)) == "INVALID_TICKET"


def test_pgt_not_leaked_into_the_audit_log(client, person, proxy_setup):
    pgt, iou, _ = get_pgt(client, proxy_setup, login_ticket(client))
    # A confused app sends its PGT to a validation endpoint.
    assert failure_code(validate(client, "/cas/serviceValidate", pgt)) == "INVALID_TICKET_SPEC"
    for event in audit_events():
        blob = f"{event.actor} {event.data}"
        assert pgt not in blob and pgt[4:] not in blob
    pt_from(request_pt(client, pgt))  # and the PGT still works


def test_proxy_with_an_unknown_format_is_invalid_request(client):
    """As at the validation endpoints: a format other than XML or JSON is refused, in XML."""
    assert proxy_failure(request_pt(client, "PGT-x", fmt="YAML")) == "INVALID_REQUEST"
