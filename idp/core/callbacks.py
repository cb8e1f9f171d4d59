"""Outgoing back-channel calls (CAS single logout, PGT callbacks) with an SSRF guard.

Production refuses loopback and private targets; a development instance (ALLOW_LOOPBACK_CALLBACKS,
on by default when BASE_URL is a loopback address) allows them, so everything can run on one machine.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

from idp.core.registry import malformed_url


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: str  # delivered | failed | refused
    detail: str = ""


def _private(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, ValueError):  # gaierror; UnicodeError for a host the IDNA codec refuses
        return False
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_reserved:
            return True
    return False


def target_problem(url: str, *, allow_loopback: bool, require_https: bool) -> str | None:
    """Why this URL may not be called back, or None."""
    if malformed_url(url):
        return "malformed URL"
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "not an http(s) URL"
    local = _private(parts.hostname)
    if local and not allow_loopback:
        return "private or loopback address refused outside development"
    if require_https and parts.scheme != "https" and not (allow_loopback and local):
        return "https required"
    return None


#: What a CAS back-channel logoutRequest may be answered with and still count as received: Apereo CAS's
#: own list. mod_auth_cas ends the session but answers its protected path with a 302 to the login page.
CAS_SLO_ACCEPTED = frozenset({200, 202, 204, 301, 302, 304})


def post_form(url: str, data: dict[str, str], *, timeout: float, allow_loopback: bool,
              accepted: frozenset[int] | None = None) -> Outcome:
    """POST a form (back-channel logout). Delivered on a 2xx answer, or on one of `accepted` when given."""
    problem = target_problem(url, allow_loopback=allow_loopback, require_https=False)
    if problem:
        return Outcome(False, "refused", problem)
    try:
        resp = requests.post(url, data=data, timeout=timeout, allow_redirects=False)
    except (requests.RequestException, ValueError) as exc:  # ValueError: a URL urllib3 cannot use
        return Outcome(False, "failed", type(exc).__name__)
    ok = resp.status_code in accepted if accepted is not None else 200 <= resp.status_code < 300
    if ok:
        return Outcome(True, "delivered", str(resp.status_code))
    return Outcome(False, "failed", f"HTTP {resp.status_code}")


#: Redirects a PGT callback may take (CAS 3.0 §2.5.4: CAS MAY follow them).
MAX_REDIRECTS = 5


def get(url: str, params: dict[str, str], *, timeout: float, allow_loopback: bool) -> Outcome:
    """GET with a verified certificate; only 200 counts (CAS 3.0 §2.5.4).

    Redirects are followed by hand, and every hop passes the same guard as the first URL: otherwise a
    registered https callback could bounce the PGT to plain http or, in production, to an internal
    address that the guard refuses.
    """
    problem = target_problem(url, allow_loopback=allow_loopback, require_https=True)
    if problem:
        return Outcome(False, "refused", problem)
    target, query = url, params
    for _ in range(MAX_REDIRECTS + 1):
        try:
            resp = requests.get(target, params=query, timeout=timeout, allow_redirects=False, verify=True)
        except (requests.RequestException, ValueError) as exc:  # ValueError: a URL urllib3 cannot use
            return Outcome(False, "failed", type(exc).__name__)
        if not (resp.is_redirect and resp.headers.get("Location")):
            break
        target, query = urljoin(resp.url, resp.headers["Location"]), None
        problem = target_problem(target, allow_loopback=allow_loopback, require_https=True)
        if problem:
            return Outcome(False, "refused", f"redirect refused: {problem}")
    else:
        return Outcome(False, "failed", "too many redirects")
    if resp.status_code == 200:
        return Outcome(True, "delivered", "200")
    return Outcome(False, "failed", f"HTTP {resp.status_code}")
