"""The service registry: load it from TOML, find the service a URL belongs to.

Patterns are compiled with RE2, which matches in linear time: a long hostile `service` URL cannot make
the IdP backtrack for minutes (Python's `re` can).
"""
from __future__ import annotations

import hashlib
import hmac
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import re2
from flask import current_app

from idp.core.accounts import ATTRIBUTES, USERNAME_ATTRIBUTES
from idp.core.claims import SCOPES
from idp.core.clock import utcnow
from idp.core.errors import DomainError
from idp.extensions import db
from idp.models import Service

_COMMON = {"name", "protocol"}
_CAS_KEYS = {"service_pattern", "attributes", "logout_url", "requires_entitlement", "username_attribute",
             "allow_proxy", "default_roles"}
_OIDC_KEYS = {"client_id", "client_secret", "redirect_uris", "scopes", "grant_types",
              "post_logout_redirect_uris", "backchannel_logout_uri", "first_party", "requires_entitlement",
              "attributes", "default_roles", "id_token_signed_response_alg"}
_TYPES = {
    "name": str, "protocol": str, "service_pattern": str, "attributes": list, "logout_url": str,
    "requires_entitlement": bool, "username_attribute": str, "allow_proxy": bool, "client_id": str,
    "client_secret": str, "redirect_uris": list, "scopes": list, "grant_types": list,
    "post_logout_redirect_uris": list, "backchannel_logout_uri": str, "first_party": bool, "default_roles": list,
    "id_token_signed_response_alg": str,
}
ID_TOKEN_ALGORITHMS = ("RS256", "ES256", "EdDSA")
#: Not a token endpoint grant: lets a confidential client (a mail server) have people's own passwords
#: checked at /mail/verify-password (docs/mail.md). The token endpoint refuses it (unsupported_grant_type).
PASSWORD_VERIFICATION = "password_verification"
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", PASSWORD_VERIFICATION)
MAX_URL = 4096


def malformed_url(url: str) -> str | None:
    """Why a URL could not be redirected to or called (it does not split, its port is not a number from 0
    to 65535, its host is not a valid name: an empty label, a label over 63 characters), or None.

    A pattern with a wildcard host (`https://.*\\.example\\.edu/.*`) matches such URLs, and the redirect
    (Werkzeug encodes the host to IDNA), the ticket's URL or a back-channel call would fail on them with a
    500 after the ticket was stored: they are refused before they are matched."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError when out of range or not a number)
        if parts.hostname:
            parts.hostname.encode("idna")
    except ValueError:  # UnicodeError is one
        return "malformed URL"
    return None


class RegistryError(DomainError):
    code = "registry_invalid"


@dataclass
class LoadReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


# A lookup walks every CAS pattern in order: a cache smaller than the registry would miss on each of them
# (and compile them all again) on every request. 4096 patterns; a larger registry would need more.
@lru_cache(maxsize=4096)
def _compiled(pattern: str):
    options = re2.Options()
    options.max_mem = 8 << 20
    options.log_errors = False  # the error is reported by us, once; RE2 would also print it to stderr
    return re2.compile(pattern, options)


def compile_pattern(pattern: str, where: str):
    try:
        return _compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegistryError(f"{where}: service_pattern is not a valid (RE2) regular expression: {reason}") from None


def _check_url(url: str, what: str) -> None:
    """An address the IdP redirects to or calls: absolute http(s), usable, no fragment."""
    parts = urlsplit(url) if not malformed_url(url) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise RegistryError(f"{what} {url!r} must be an absolute http(s) URL without a fragment")


def _validate(entry: dict, index: int, path: str) -> dict:
    name = entry.get("name")
    where = f"{path}: service #{index} ({name!r})" if name else f"{path}: service #{index}"
    if not isinstance(name, str) or not name.strip():
        raise RegistryError(f"{where}: 'name' is required")
    protocol = entry.get("protocol")
    if protocol not in {"cas", "oidc"}:
        raise RegistryError(f"{where}: 'protocol' must be \"cas\" or \"oidc\"")
    allowed = _COMMON | (_CAS_KEYS if protocol == "cas" else _OIDC_KEYS)
    for key, value in entry.items():
        if key not in allowed:
            raise RegistryError(f"{where}: unknown key {key!r}")
        if not isinstance(value, _TYPES[key]):
            raise RegistryError(f"{where}: {key!r} must be a {_TYPES[key].__name__}")
        if isinstance(value, list) and not all(isinstance(x, str) for x in value):
            raise RegistryError(f"{where}: {key!r} must be a list of strings")
    for attr in entry.get("attributes", []):
        if attr not in ATTRIBUTES:
            raise RegistryError(f"{where}: unknown attribute {attr!r}; known: {', '.join(sorted(ATTRIBUTES))}")
    bad_roles = set(entry.get("default_roles", [])) - {"student", "teacher", "staff"}
    if bad_roles:
        raise RegistryError(f"{where}: default_roles may hold student, teacher, staff; got {sorted(bad_roles)}")
    if protocol == "cas":
        if "service_pattern" not in entry:
            raise RegistryError(f"{where}: 'service_pattern' is required for a CAS service")
        compile_pattern(entry["service_pattern"], where)
        if "logout_url" in entry:
            _check_url(entry["logout_url"], f"{where}: logout_url")
        ua = entry.get("username_attribute")
        if ua is not None and ua not in USERNAME_ATTRIBUTES:
            raise RegistryError(f"{where}: username_attribute must be one of {', '.join(USERNAME_ATTRIBUTES)}")
    else:
        if len(entry.get("client_id") or "") > 100:  # its column's length: a longer one could never log in
            raise RegistryError(f"{where}: client_id must be at most 100 characters")
        needed = ["client_id"]
        if set(entry.get("grant_types", ["authorization_code"])) & {"authorization_code", "refresh_token"}:
            needed.append("redirect_uris")  # a client_credentials-only service never redirects
        for key in needed:
            if key not in entry:
                raise RegistryError(f"{where}: {key!r} is required for an OIDC client")
        if "redirect_uris" in needed and not entry["redirect_uris"]:
            raise RegistryError(f"{where}: 'redirect_uris' must name at least one URL for the code flow")
        for key in ("redirect_uris", "post_logout_redirect_uris"):
            for uri in entry.get(key, []):
                _check_url(uri, f"{where}: {key} entry")
        if "backchannel_logout_uri" in entry:
            _check_url(entry["backchannel_logout_uri"], f"{where}: backchannel_logout_uri")
        bad = set(entry.get("grant_types", [])) - set(GRANT_TYPES)
        if bad:
            raise RegistryError(f"{where}: unknown grant type(s) {sorted(bad)}; allowed: {', '.join(GRANT_TYPES)}")
        if "client_secret" in entry and not entry["client_secret"]:
            raise RegistryError(f"{where}: client_secret is empty (leave the key out for a public client)")
        if "client_credentials" in entry.get("grant_types", []) and "client_secret" not in entry:
            raise RegistryError(f"{where}: client_credentials needs a client_secret (a public client has none)")
        if PASSWORD_VERIFICATION in entry.get("grant_types", []) and "client_secret" not in entry:
            raise RegistryError(f"{where}: password_verification needs a client_secret: only a confidential "
                                "client (a mail server) may have passwords checked")
        unknown_scopes = set(entry.get("scopes", [])) - set(SCOPES)
        if unknown_scopes:
            raise RegistryError(f"{where}: unknown scope(s) {sorted(unknown_scopes)}; known: {', '.join(SCOPES)}")
        alg = entry.get("id_token_signed_response_alg")
        if alg is not None and alg not in ID_TOKEN_ALGORITHMS:
            raise RegistryError(f"{where}: id_token_signed_response_alg must be one of {', '.join(ID_TOKEN_ALGORITHMS)}")
    return entry


def parse(text: str, path: str = "<services>") -> list[dict]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"service"}
    if unknown:
        raise RegistryError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    entries = data.get("service", [])
    if not isinstance(entries, list):
        raise RegistryError(f"{path}: [[service]] must be an array of tables")
    seen: set[str] = set()
    client_ids: set[str] = set()
    out = []
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise RegistryError(f"{path}: service #{i}: each service must be a [[service]] table")
        _validate(entry, i, path)
        if entry["name"].casefold() in seen:  # entitlements name services whatever the case
            raise RegistryError(f"{path}: service #{i}: the name {entry['name']!r} is used twice")
        seen.add(entry["name"].casefold())
        cid = entry.get("client_id")
        if cid:
            if cid in client_ids:
                raise RegistryError(f"{path}: service #{i}: client_id {cid!r} is used twice")
            client_ids.add(cid)
        out.append(entry)
    return out


def client_secret_hash(secret: str, key: str) -> str:
    """HMAC-SHA-256 keyed with the instance secret. Client secrets are long random strings, so a fast
    keyed hash suffices; argon2 would cap the token endpoint at about a dozen requests per second."""
    return hmac.new(key.encode(), secret.encode(), hashlib.sha256).hexdigest()


def _columns(entry: dict, secret_key: str) -> dict:
    secret = entry.get("client_secret")
    return {
        "protocol": entry["protocol"],
        "service_pattern": entry.get("service_pattern"),
        "attributes": list(entry.get("attributes", [])),
        "logout_url": entry.get("logout_url"),
        "requires_entitlement": entry.get("requires_entitlement", False),
        "default_roles": entry.get("default_roles"),
        "username_attribute": entry.get("username_attribute"),
        "allow_proxy": entry.get("allow_proxy", True),
        "client_id": entry.get("client_id"),
        "client_secret_hash": client_secret_hash(secret, secret_key) if secret else None,
        "id_token_signed_response_alg": entry.get("id_token_signed_response_alg"),
        "redirect_uris": list(entry.get("redirect_uris", [])),
        "scopes": list(entry.get("scopes", [])),
        "grant_types": list(entry.get("grant_types", [])),
        "post_logout_redirect_uris": list(entry.get("post_logout_redirect_uris", [])),
        "backchannel_logout_uri": entry.get("backchannel_logout_uri"),
        "first_party": entry.get("first_party", False),
    }


def load_file(path: str | Path) -> LoadReport:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM tolerated, as in the people CSV
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: not UTF-8 (byte {exc.start})") from None
    return replace_all(parse(text, str(path)))


def replace_all(entries: list[dict], secret_key: str | None = None) -> LoadReport:
    """Make the registry exactly the given set and say what changed."""
    secret_key = secret_key or current_app.config["SECRET_KEY"]
    report = LoadReport()
    existing = {s.name: s for s in db.session.scalars(db.select(Service))}
    now = utcnow()
    # Removals first: a renamed client keeps its client_id, and the unit of work would otherwise
    # insert the new row before deleting the old one (unique client_id).
    wanted = {entry["name"] for entry in entries}
    for name in [n for n in existing if n not in wanted]:
        db.session.delete(existing.pop(name))
        report.removed.append(name)
    db.session.flush()
    for entry in entries:
        cols = _columns(entry, secret_key)
        svc = existing.pop(entry["name"], None)
        if svc is None:
            db.session.add(Service(name=entry["name"], updated_at=now, **cols))
            report.added.append(entry["name"])
        elif any(getattr(svc, k) != v for k, v in cols.items()):
            for k, v in cols.items():
                setattr(svc, k, v)
            svc.updated_at = now
            report.changed.append(entry["name"])
        else:
            report.unchanged.append(entry["name"])
    db.session.commit()
    return report


_S = Service.__table__
_CAS_PATTERNS = db.select(_S.c.id, _S.c.name, _S.c.service_pattern).where(_S.c.protocol == "cas").order_by(_S.c.id)


def match_cas_service(url: str | None) -> Service | None:
    """The registered CAS service whose pattern matches the whole URL, or None.

    Every login page, login and proxy request asks, and a university registers a hundred services or
    more: the patterns are read as plain rows (no ORM objects, none of the JSON columns decoded) and only
    the one that matches is loaded in full. Those are two reads: should `idp services load` commit between
    them (the row gone, or its pattern changed), the answer comes from one read of whole rows instead."""
    if not url or len(url) > MAX_URL or malformed_url(url):
        return None
    for service_id, name, pattern in _cas_patterns():
        if compile_pattern(pattern, name).fullmatch(url):
            svc = db.session.get(Service, service_id)
            if svc is not None and svc.protocol == "cas" and svc.service_pattern == pattern:
                return svc
            return _match_whole_rows(url)
    return None


def _cas_patterns() -> list:
    return db.session.connection().execute(_CAS_PATTERNS).all()


def _match_whole_rows(url: str) -> Service | None:
    for svc in db.session.scalars(db.select(Service).where(Service.protocol == "cas").order_by(Service.id)):
        if compile_pattern(svc.service_pattern, svc.name).fullmatch(url):
            return svc
    return None


def by_name(name: str) -> Service | None:
    return db.session.scalar(db.select(Service).where(Service.name == name))
