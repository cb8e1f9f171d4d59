"""Service onboarding check (the admin's console page for one registered service): does a URL match the
service, exactly what would a chosen person release to it, and does the IdP answer it as it should (CAS
validation, OIDC discovery, the logout paths).

Plain data out, no words: the console puts words to the codes. Nothing here reads the request; the
self-test talks to the IdP over HTTP at its public BASE_URL, as the relying app would.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from idp.core import accounts, callbacks, claims, provisioning, registry
from idp.core.clock import utcnow
from idp.core.policy import Policy
from idp.models import Account, Service

CAS_NS = "http://www.yale.edu/tp/cas"
#: The attributes every CAS 3.0 validation adds before the registry's own (idp/cas/protocol.py).
CAS_PROTOCOL_ATTRIBUTES = ("authenticationDate", "longTermAuthenticationRequestTokenUsed", "isFromNewLogin")
#: Seconds for one self-test request, and for the whole self-test: well under a gunicorn worker's 30-second
#: timeout, since the console waits for it. (A single-worker server cannot answer itself meanwhile: the
#: requests to it then time out, and the first one that does stops the others.)
TIMEOUT = 4.0
BUDGET = 20.0


# --- 1. does a URL belong to the service? -------------------------------------------------------------------

@dataclass
class UrlCheck:
    url: str
    service: Service
    #: The URL matches this service: CAS — its pattern in full; OIDC — a registered URI exactly.
    matches: bool
    #: Where it matched: "service_pattern" | "redirect_uri" | "post_logout_redirect_uri" | "backchannel_logout_uri"
    matched_as: list[str] = field(default_factory=list)
    #: The CAS service /cas/login would pick for this URL (the first registered pattern that matches), or None.
    actual: Service | None = None
    #: Codes explaining the outcome: too_long, not_http, fragment, plain_http, shadowed, other_service,
    #: unregistered, near_miss.
    notes: list[str] = field(default_factory=list)
    #: Registered URIs the URL nearly equals (case, trailing slash, query or fragment differ).
    near: list[str] = field(default_factory=list)


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shape(url: str) -> list[str]:
    notes = []
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        notes.append("not_http")
    elif parts.scheme == "http" and not _loopback(parts.hostname):
        notes.append("plain_http")
    if parts.fragment:
        notes.append("fragment")
    return notes


def _loose(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url.strip())
    return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/").lower()


def match_url(service: Service, url: str) -> UrlCheck:
    """Would the IdP accept this URL for this service, and if not (or if another service would take it), why."""
    url = (url or "").strip()
    check = UrlCheck(url=url, service=service, matches=False)
    if len(url) > registry.MAX_URL:
        check.notes.append("too_long")
        return check
    check.notes += _shape(url)
    check.actual = registry.match_cas_service(url)
    if service.protocol == "cas":
        if service.service_pattern and registry.compile_pattern(service.service_pattern, service.name).fullmatch(url):
            check.matches = True
            check.matched_as.append("service_pattern")
        if check.matches and check.actual is not None and check.actual.id != service.id:
            check.notes.append("shadowed")  # an earlier registered pattern takes the URL first
        elif not check.matches and check.actual is not None:
            check.notes.append("other_service")
        elif check.actual is None:
            check.notes.append("unregistered")
        return check
    registered = {"redirect_uri": service.redirect_uris or [],
                  "post_logout_redirect_uri": service.post_logout_redirect_uris or [],
                  "backchannel_logout_uri": [service.backchannel_logout_uri] if service.backchannel_logout_uri else []}
    for kind, uris in registered.items():
        if url in uris:  # exact string comparison, as the authorization server does (server.check_redirect_uri)
            check.matched_as.append(kind)
    check.matches = bool(check.matched_as)
    if not check.matches:
        loose = _loose(url)
        check.near = sorted({u for uris in registered.values() for u in uris if _loose(u) == loose})
        if check.near:
            check.notes.append("near_miss")
        if check.actual is not None:
            check.notes.append("other_service")
    return check


# --- 2. what would a person release? -------------------------------------------------------------------------

@dataclass
class Preview:
    service: Service
    account: Account
    #: May the person get tickets/codes for it (provisioning.entitled), and on what grounds:
    #: "open" (no entitlement needed) | "listed" | "not_listed" (the import row's entitlements) |
    #: "default_role" | "not_default_role" (the registry's default_roles for the person's role).
    entitled: bool
    entitled_by: str
    #: The person can log in at all (active, not merged, not past the grace period after leaving).
    can_log_in: bool
    #: CAS: <cas:user> and the released attributes, in order; names whose value is empty (left out).
    username: str | None = None
    username_from: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    omitted: list[str] = field(default_factory=list)
    protocol_attributes: tuple[str, ...] = ()
    #: OIDC: the scopes granted (requested ∩ registered), userinfo's claims per scope, the ID token's claims.
    scopes: list[str] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)
    claims_by_scope: dict[str, dict[str, Any]] = field(default_factory=dict)
    id_token_claims: dict[str, Any] = field(default_factory=dict)


def _entitled_by(account: Account, service: Service) -> str:
    if not service.requires_entitlement:
        return "open"
    if account.entitlements is not None:
        return "listed" if service.name.lower() in {e.lower() for e in account.entitlements} else "not_listed"
    return "default_role" if account.role in (service.default_roles or []) else "not_default_role"


def granted_scopes(service: Service, requested: list[str] | str | None = None) -> list[str]:
    """The scopes a request would be granted: what it asks for (default: everything registered) that the
    client is registered for (server.Client.get_allowed_scope; nothing registered means "openid")."""
    allowed = list(service.scopes or ["openid"])
    if requested is None:
        return allowed
    asked = requested.split() if isinstance(requested, str) else list(requested)
    return [s for s in allowed if s in asked]


def preview(service: Service, account: Account, policy: Policy, *, scopes: list[str] | str | None = None,
            now: dt.datetime | None = None) -> Preview:
    """Exactly what this service would receive about this person at their next login."""
    now = now or utcnow()
    out = Preview(service=service, account=account, entitled=provisioning.entitled(account, service),
                  entitled_by=_entitled_by(account, service),
                  can_log_in=account.merged_into_id is None and not accounts.has_left(account, policy, now))
    if service.protocol == "cas":
        # As idp/cas/protocol.py username_for / released_attributes (tests/helpdesk/test_onboarding.py
        # holds the two to the same answer).
        out.username_from = "canonical"
        out.username = accounts.canonical_username(account, policy)
        if service.username_attribute:
            value = accounts.attribute(account, service.username_attribute, policy)
            if value:
                out.username, out.username_from = str(value), service.username_attribute
        for name in service.attributes or []:
            value = accounts.attribute(account, name, policy)
            if value in (None, "", []):
                out.omitted.append(name)
            else:
                out.attributes[name] = value
        out.protocol_attributes = CAS_PROTOCOL_ATTRIBUTES
        return out
    out.scopes = granted_scopes(service, scopes)
    scope = " ".join(out.scopes)
    out.claims = claims.for_scope(account, scope, policy)  # what userinfo answers (idp/oidc/views.py)
    for s in out.scopes:
        names = claims.SCOPES.get(s, ())
        out.claims_by_scope[s] = {n: out.claims[n] for n in names if n in out.claims}
    # The ID token carries only `sub` of the person (server.generate_user_info), besides protocol claims.
    out.id_token_claims = {"sub": account.subject}
    return out


# --- 3. self-test over HTTP ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    #: A stable code naming the check (the console words it).
    name: str
    #: "ok" | "failed" | "warning" | "skipped"
    status: str
    #: What was seen (a status line, a code, a URL): not translated, shown as it is.
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    text: str


#: (method, url, params, timeout) -> Answer; raises requests.RequestException when nothing answers.
Fetch = Callable[..., Answer]


def http_fetch(method: str, url: str, *, params: dict | None = None, timeout: float = TIMEOUT) -> Answer:
    """One request, no redirects followed, a verified certificate, the body cut at 256 KiB."""
    resp = requests.request(method, url, params=params, timeout=timeout, allow_redirects=False, verify=True,
                            headers={"User-Agent": "idp-onboarding-self-test"}, stream=True)
    try:
        body = resp.raw.read(256 * 1024, decode_content=True) if method != "HEAD" else b""
    finally:
        resp.close()
    return Answer(resp.status_code, {k.lower(): v for k, v in resp.headers.items()},
                  body.decode(resp.encoding or "utf-8", "replace"))


class _NotTried(requests.RequestException):
    """A request the self-test did not send (the IdP stopped answering, or the time is up)."""


def _budgeted(fetch: Fetch, base: str, budget: float) -> Fetch:
    """`fetch` within one deadline for the whole test; once the IdP itself fails to answer, its remaining
    checks are not tried (each would wait for its own timeout)."""
    deadline = time.monotonic() + budget
    down: list[str] = []

    def call(method: str, url: str, *, params: dict | None = None, timeout: float = TIMEOUT) -> Answer:
        ours = url == base or url.startswith(base + "/")
        if ours and down:
            raise _NotTried(f"not tried: the IdP did not answer ({down[0]})")
        left = deadline - time.monotonic()
        if left < 0.5:
            raise _NotTried("not tried: the self-test ran out of time")
        try:
            return fetch(method, url, params=params, timeout=min(timeout, left))
        except (requests.ConnectionError, requests.Timeout) as exc:
            if ours:
                down.append(_describe(exc))
            raise
    return call


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, _NotTried):
        return str(exc)
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS certificate not accepted"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    return type(exc).__name__


def _get(fetch: Fetch, method: str, url: str, params: dict | None, timeout: float) -> Answer | str:
    try:
        return fetch(method, url, params=params, timeout=timeout)
    except requests.RequestException as exc:
        return _describe(exc)


def sample_url(service: Service, given: str | None = None) -> str | None:
    """A URL of the application to test with: the one given, else its logout URL or first redirect URI when
    that belongs to it."""
    if given and given.strip():
        return given.strip()
    if service.protocol == "cas":
        if service.logout_url and match_url(service, service.logout_url).matches:
            return service.logout_url
        return None
    return (service.redirect_uris or [None])[0]


def _cas_failure(answer: Answer) -> tuple[str | None, str]:
    """The code of a CAS 3.0 authenticationFailure document, or None with what was found instead."""
    try:
        root = ET.fromstring(answer.text)  # our own server's answer, no DTDs (XML is the CAS wire format)
    except ET.ParseError as exc:
        return None, f"not XML ({exc})"
    if root.tag != f"{{{CAS_NS}}}serviceResponse":
        return None, f"root element {root.tag}"
    failure = root.find(f"{{{CAS_NS}}}authenticationFailure")
    if failure is None:
        return None, "no authenticationFailure"
    return failure.get("code"), (failure.text or "").strip()[:200]


def _cas_checks(service: Service, base: str, fetch: Fetch, sample: str | None, timeout: float) -> list[Check]:
    out: list[Check] = []
    if sample is None:
        return [Check("cas_sample_url", "skipped", "no application URL to test with: give one")]
    match = match_url(service, sample)
    if not match.matches:
        out.append(Check("cas_sample_url", "failed", f"{sample} does not match {service.service_pattern}"))
    elif "shadowed" in match.notes:
        out.append(Check("cas_sample_url", "failed", f"{sample} is taken by {match.actual.name} (registered first)"))
    else:
        out.append(Check("cas_sample_url", "ok", sample))
    login = _get(fetch, "GET", f"{base}/cas/login", {"service": sample}, timeout)
    if isinstance(login, str):
        out.append(Check("cas_login", "failed", login))
    elif login.status == 200:
        out.append(Check("cas_login", "ok", "HTTP 200: the login form"))
    else:
        out.append(Check("cas_login", "failed", f"HTTP {login.status}"))
    ticket = "ST-SELFTEST-" + secrets.token_hex(8)  # never issued: the IdP must say INVALID_TICKET
    for name, path in (("cas_service_validate", "/cas/serviceValidate"),
                       ("cas_p3_service_validate", "/cas/p3/serviceValidate")):
        answer = _get(fetch, "GET", base + path, {"service": sample, "ticket": ticket}, timeout)
        if isinstance(answer, str):
            out.append(Check(name, "failed", answer))
            continue
        code, what = _cas_failure(answer)
        if answer.status != 200:
            out.append(Check(name, "failed", f"HTTP {answer.status}"))
        elif code == "INVALID_TICKET":
            out.append(Check(name, "ok", f"INVALID_TICKET: {what}"))
        elif code == "INVALID_SERVICE":
            out.append(Check(name, "failed", f"INVALID_SERVICE: {what}"))
        else:
            out.append(Check(name, "failed", f"{code or what}"))
    return out


def _reachable(name: str, url: str | None, fetch: Fetch, *, allow_loopback: bool, timeout: float) -> Check:
    """A harmless request to a logout endpoint (HEAD, or a bare GET where HEAD is not offered; never a
    logout message): any HTTP answer below 500 means it is there."""
    if not url:
        return Check(name, "skipped", "not configured")
    problem = callbacks.target_problem(url, allow_loopback=allow_loopback, require_https=False)
    if problem:
        return Check(name, "failed", f"{url}: {problem}")
    answer = _get(fetch, "HEAD", url, None, timeout)
    if not isinstance(answer, str) and answer.status in (405, 501):  # HEAD not offered: a bare GET, no token
        answer = _get(fetch, "GET", url, None, timeout)
    if isinstance(answer, str):
        return Check(name, "failed", f"{url}: {answer}")
    if answer.status >= 500:
        return Check(name, "warning", f"{url}: HTTP {answer.status}")
    return Check(name, "ok", f"{url}: HTTP {answer.status}")


def _uri_list_check(name: str, uris: list[str], *, allow_loopback: bool) -> Check:
    if not uris:
        return Check(name, "skipped", "none registered")
    bad = []
    for uri in uris:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            bad.append(f"{uri}: not an absolute http(s) URL without a fragment")
        elif parts.scheme == "http" and not (allow_loopback and _loopback(parts.hostname)):
            bad.append(f"{uri}: https required")
    return Check(name, "failed", "; ".join(bad)) if bad else Check(name, "ok", ", ".join(uris))


_KTY = {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}


def _oidc_checks(service: Service, base: str, fetch: Fetch, timeout: float, allow_loopback: bool) -> list[Check]:
    out: list[Check] = []
    answer = _get(fetch, "GET", f"{base}/.well-known/openid-configuration", None, timeout)
    meta: dict = {}
    if isinstance(answer, str):
        out.append(Check("oidc_discovery", "failed", answer))
    elif answer.status != 200:
        out.append(Check("oidc_discovery", "failed", f"HTTP {answer.status}"))
    else:
        try:
            meta = json.loads(answer.text)
        except ValueError:
            out.append(Check("oidc_discovery", "failed", "not JSON"))
        else:
            out.append(Check("oidc_discovery", "ok", "HTTP 200"))
    if not meta:
        return out
    issuer = meta.get("issuer")
    out.append(Check("oidc_issuer", "ok" if issuer == base else "failed", f"{issuer} (expected {base})"))
    off_site = [k for k, v in meta.items() if k.endswith("_endpoint") and isinstance(v, str)
                and not v.startswith(base + "/")]
    out.append(Check("oidc_endpoints", "failed" if off_site else "ok",
                     ", ".join(off_site) if off_site else "every endpoint under the issuer"))
    unsupported = [s for s in service.scopes or [] if s not in meta.get("scopes_supported", [])]
    unsupported += [g for g in service.grant_types or [] if g not in meta.get("grant_types_supported", [])
                    and g != registry.PASSWORD_VERIFICATION]  # not a token grant: never in discovery
    out.append(Check("oidc_client_supported", "failed" if unsupported else "ok",
                     ", ".join(unsupported) if unsupported else "scopes and grant types offered"))
    jwks_uri = meta.get("jwks_uri")
    keys = _get(fetch, "GET", jwks_uri, None, timeout) if isinstance(jwks_uri, str) else "no jwks_uri"
    if isinstance(keys, str):
        out.append(Check("oidc_jwks", "failed", keys))
    elif keys.status != 200:
        out.append(Check("oidc_jwks", "failed", f"HTTP {keys.status}"))
    else:
        try:
            found = json.loads(keys.text).get("keys") or []
        except (ValueError, AttributeError):
            found = []
        alg = service.id_token_signed_response_alg or "RS256"
        usable = [k for k in found if isinstance(k, dict) and k.get("kty") == _KTY[alg] and k.get("kid")]
        out.append(Check("oidc_jwks", "ok" if usable else "failed",
                         f"{len(found)} key(s); {len(usable)} for {alg}"))
    out.append(_uri_list_check("oidc_redirect_uris", list(service.redirect_uris or []), allow_loopback=allow_loopback))
    out.append(_uri_list_check("oidc_post_logout_redirect_uris", list(service.post_logout_redirect_uris or []),
                               allow_loopback=allow_loopback))
    if service.redirect_uris and meta.get("authorization_endpoint"):
        out.append(_authorize_check(service, meta["authorization_endpoint"], fetch, timeout))
    return out


def _authorize_check(service: Service, endpoint: str, fetch: Fetch, timeout: float) -> Check:
    """An authorization request with prompt=none and nobody logged in: the IdP must send the browser back to
    the first redirect URI with error=login_required — proof that client_id and redirect_uri are accepted."""
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect_uri = service.redirect_uris[0]
    params = {"client_id": service.client_id, "redirect_uri": redirect_uri, "response_type": "code",
              "scope": "openid", "prompt": "none", "state": "selftest", "nonce": secrets.token_urlsafe(8),
              "code_challenge": challenge, "code_challenge_method": "S256"}
    answer = _get(fetch, "GET", endpoint, params, timeout)
    if isinstance(answer, str):
        return Check("oidc_authorize", "failed", answer)
    location = answer.headers.get("location", "")
    if answer.status in (302, 303) and location.startswith(redirect_uri) and "error=login_required" in location:
        return Check("oidc_authorize", "ok", f"back to {redirect_uri} with error=login_required")
    if answer.status in (302, 303) and location.startswith(redirect_uri):
        error = location.split("error=", 1)[1].split("&", 1)[0] if "error=" in location else "?"
        return Check("oidc_authorize", "warning", f"back to {redirect_uri} with error={error}")
    return Check("oidc_authorize", "failed", f"HTTP {answer.status}")


def self_test(service: Service, base_url: str, *, sample: str | None = None, fetch: Fetch | None = None,
              timeout: float = TIMEOUT, budget: float = BUDGET, allow_loopback: bool = False) -> list[Check]:
    """Run the checks a relying app depends on against the IdP at `base_url` (its public address), with no
    real person involved: CAS — the login page accepts the service URL, both validation endpoints answer a
    made-up ticket with the CAS 3.0 INVALID_TICKET failure (not INVALID_SERVICE), single logout reachable;
    OIDC — discovery and keys, the issuer, the client's URIs, an authorization request answered
    login_required, the back-channel logout URI reachable (no logout token is sent). `allow_loopback`: as
    the app's ALLOW_LOOPBACK_CALLBACKS, which the real logout calls obey too."""
    base = base_url.rstrip("/")
    fetch = _budgeted(fetch or http_fetch, base, budget)
    if service.protocol == "cas":
        out = _cas_checks(service, base, fetch, sample_url(service, sample), timeout)
        out.append(_reachable("cas_single_logout", service.logout_url, fetch, allow_loopback=allow_loopback,
                              timeout=timeout))
        return out
    out = _oidc_checks(service, base, fetch, timeout, allow_loopback)
    out.append(_reachable("oidc_backchannel_logout", service.backchannel_logout_uri, fetch,
                          allow_loopback=allow_loopback, timeout=timeout))
    return out


def passed(checks: list[Check]) -> bool:
    return all(c.ok for c in checks)
