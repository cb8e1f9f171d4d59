"""Configuration: defaults < instance/idp.toml < IDP_* environment < test overrides.

Unknown keys are errors, so a typo in a deployment's file stops start-up instead of being ignored.
"""
from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: The checkout (or installed tree) the package lives in: policies and demo data resolve from here,
#: never from the current directory.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Every key a deployment may set, with its default. Types of the defaults drive env-var coercion.
DEFAULTS: dict[str, Any] = {
    "BASE_URL": "http://127.0.0.1:8000",
    "DATABASE_URL": None,  # None: SQLite file in the instance folder
    "REDIS_URL": None,  # e.g. redis://127.0.0.1:6379/0: tickets, throttling and rate limits shared by nodes
    "REDIS_PREFIX": "idp:",  # namespace of every Redis key (several deployments may share one Redis)
    "POLICY": str(PROJECT_ROOT / "policies" / "default.toml"),
    "SECRET_KEY": None,  # None: generated once into instance/secrets.toml
    "PESEL_KEY": None,  # HMAC key for PESEL; None: generated once into instance/secrets.toml
    "MAIL_SERVER": "127.0.0.1",
    "MAIL_PORT": 25,
    "MAIL_DEFAULT_SENDER": "idp@localhost",
    "MAIL_USE_TLS": False,
    "MAIL_USE_SSL": False,
    "MAIL_USERNAME": None,
    "MAIL_PASSWORD": None,
    "MAIL_MAX_ATTEMPTS": 12,  # then the message is marked failed (tries with backoff span about 6 hours)
    "MAIL_WORKER_INTERVAL": 5.0,  # seconds between outbox rounds inside `idp serve`
    # Optional DKIM signing (when the relay does not sign): a PEM private key file, selector and domain.
    "MAIL_DKIM_KEY": None,
    "MAIL_DKIM_SELECTOR": None,
    "MAIL_DKIM_DOMAIN": None,
    # argon2id cost. Default ~40 ms per verify on one core here: see docs/security.md.
    "ARGON2_TIME_COST": 2,
    "ARGON2_MEMORY_COST": 47104,  # KiB (46 MiB)
    "ARGON2_PARALLELISM": 1,
    "TICKET_LIFETIME": 10,  # seconds an ST/PT stays valid (CAS 3.0 §3.1.1 recommends <= 5 min)
    "PGT_LIFETIME": 7200,  # seconds
    "OIDC_CODE_LIFETIME": 60,  # seconds an authorization code may wait for its exchange
    "OIDC_ACCESS_TOKEN_LIFETIME": 600,  # seconds (opaque tokens: introspect or call userinfo)
    "OIDC_ID_TOKEN_LIFETIME": 600,
    "OIDC_REFRESH_TOKEN_LIFETIME": 8 * 3600,  # never beyond the SSO session's absolute end
    "CALLBACK_TIMEOUT": 3.0,  # seconds for one SLO POST or PGT callback
    # Back-channel calls to loopback/private addresses (SLO, pgtUrl over http). None: allowed only
    # when BASE_URL itself is a loopback address, i.e. a development instance.
    "ALLOW_LOOPBACK_CALLBACKS": None,
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",  # "json": one JSON object per log line, with the request id; "text" for a terminal
    "METRICS_TOKEN": None,  # set: /metrics also answers `Authorization: Bearer <this>` from anywhere (docs/observability.md)
    # Networks (CIDRs; env comma-separated) whose clients may read /metrics without the token; loopback always may.
    "METRICS_NETWORKS": [],
    "MAIL_BACKLOG_WARN_SECONDS": 900,  # /readyz says "warn" when a queued message is older (0: never)
    # Reverse proxies in front of the IdP whose X-Forwarded-For/-Proto/-Host are trusted (0: none).
    # Behind a TLS-terminating load balancer set 1, or the app sees plain http and refuses OAuth.
    "TRUSTED_PROXIES": 0,
    # Cookie names start with this ({prefix}_session, {prefix}_tgc): browsers share cookies between ports of
    # one host, so a second IdP on the same host (an upstream, a test) needs its own prefix.
    "COOKIE_PREFIX": "idp",
    # Upstream OpenID Connect providers people may log in with ([[upstream]] tables in idp.toml only).
    "UPSTREAM": [],
}

#: Keys of one [[upstream]] table: name -> (type, required).
UPSTREAM_KEYS: dict[str, tuple[type, bool]] = {
    "name": (str, True),           # short id used in URLs and links: letters, digits, - and _
    "label": (str, True),          # on the login button: "Poczta uczelniana", "Microsoft 365"
    "issuer": (str, True),         # discovery at {issuer}/.well-known/openid-configuration
    "client_id": (str, True),
    "client_secret": (str, False),  # absent: a public client (PKCE only)
    "scopes": (list, False),       # default openid email profile
    # Accept `email` without `email_verified: true` (Microsoft 365 sends none). Only for providers whose
    # addresses are the university's own.
    "trust_email": (bool, False),
}

#: Floors from the issue (OWASP/ASVS): never below these outside tests.
ARGON2_FLOOR = {"ARGON2_TIME_COST": 2, "ARGON2_MEMORY_COST": 19456, "ARGON2_PARALLELISM": 1}

_BOOL_KEYS = {"ALLOW_LOOPBACK_CALLBACKS"}
#: Keys whose default is None: the type a set value must have.
_OPTIONAL_TYPES: dict[str, type] = {"DATABASE_URL": str, "REDIS_URL": str, "SECRET_KEY": str, "PESEL_KEY": str,
                                    "ALLOW_LOOPBACK_CALLBACKS": bool, "METRICS_TOKEN": str}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _type_ok(key: str, value: Any) -> bool:
    default = DEFAULTS[key]
    want = _OPTIONAL_TYPES.get(key) if default is None else type(default)
    if want is None:
        return True
    if isinstance(value, bool) and want is not bool:  # TOML `true` is not a number here
        return False
    if want is float:
        return isinstance(value, (int, float))
    return isinstance(value, want)


class ConfigError(Exception):
    """A configuration problem that must stop start-up; the message names the source and key."""


def instance_path(explicit: str | os.PathLike | None = None) -> Path:
    """The instance folder: explicit argument, IDP_INSTANCE, else `./instance` (the contract's default, in
    the current folder; from the checkout that is the project's own `instance/`, ignored by git)."""
    raw = explicit or os.environ.get("IDP_INSTANCE")
    return Path(raw or "instance").resolve()


def _coerce(key: str, raw: str, source: str) -> Any:
    default = DEFAULTS[key]
    if key in _BOOL_KEYS or isinstance(default, bool):
        low = raw.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{source}: {key} must be true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{source}: {key} must be an integer, got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{source}: {key} must be a number, got {raw!r}") from None
    if isinstance(default, list):  # comma-separated
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _from_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    out: dict[str, Any] = {}
    for key, value in data.items():
        upper = key.upper()
        if upper not in DEFAULTS:
            raise ConfigError(f"{path}: unknown key {key!r}")
        if not _type_ok(upper, value):
            want = _OPTIONAL_TYPES.get(upper) or type(DEFAULTS[upper])
            raise ConfigError(f"{path}: {key} must be {want.__name__}, got {value!r}")
        out[upper] = value
    return out


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("IDP_") or name == "IDP_INSTANCE":
            continue
        key = name[4:]
        if key in DEFAULTS and key != "UPSTREAM":  # tables only come from idp.toml
            out[key] = _coerce(key, raw, f"environment {name}")
    return out


def _secrets(folder: Path) -> dict[str, str]:
    """Read or create instance/secrets.toml (mode 0600): the session key and the PESEL HMAC key."""
    path = folder / "secrets.toml"
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        out = {k.upper(): v for k, v in data.items()}
        for key in ("SECRET_KEY", "PESEL_KEY"):
            if not isinstance(out.get(key), str) or not out[key]:
                raise ConfigError(f"{path}: {key.lower()} is missing or not a string "
                                  "(restore the file from a backup: a new pesel_key orphans every PESEL hash)")
        return out
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. IDP_INSTANCE names a file
        raise ConfigError(f"{folder}: cannot use as the instance folder: {exc.strerror}") from None
    values = {"secret_key": secrets.token_urlsafe(48), "pesel_key": secrets.token_urlsafe(48)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# Generated by idp; keep secret, keep stable (changing pesel_key orphans PESEL hashes).\n")
        for k, v in values.items():
            fh.write(f'{k} = "{v}"\n')
    return {k.upper(): v for k, v in values.items()}


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "localhost" or host.startswith("127.") or host == "::1"


def load(folder: Path, overrides: dict[str, Any] | None = None,
         environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Merge every source into one validated mapping of Flask config keys."""
    overrides = dict(overrides or {})
    cfg: dict[str, Any] = dict(DEFAULTS)
    cfg.update(_from_toml(folder / "idp.toml"))
    cfg.update(_from_env(dict(os.environ if environ is None else environ)))
    testing = bool(overrides.get("TESTING"))
    for key in overrides:
        if key not in DEFAULTS and not key.isupper():
            raise ConfigError(f"test overrides: unknown key {key!r}")
    cfg.update(overrides)

    if cfg["SECRET_KEY"] is None or cfg["PESEL_KEY"] is None:
        generated = _secrets(folder)
        cfg["SECRET_KEY"] = cfg["SECRET_KEY"] or generated["SECRET_KEY"]
        cfg["PESEL_KEY"] = cfg["PESEL_KEY"] or generated["PESEL_KEY"]
    if cfg["DATABASE_URL"] is None:
        cfg["DATABASE_URL"] = f"sqlite:///{folder / 'idp.sqlite3'}"
    if not str(cfg["DATABASE_URL"]).startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ConfigError(f"DATABASE_URL must be a sqlite:// or postgresql:// URL, got {cfg['DATABASE_URL']!r}")
    if cfg["REDIS_URL"] and not str(cfg["REDIS_URL"]).startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL must be a redis://, rediss:// or unix:// URL, got {cfg['REDIS_URL']!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{0,64}", cfg["REDIS_PREFIX"]):
        raise ConfigError(f"REDIS_PREFIX may hold only letters, digits and _ . : -, got {cfg['REDIS_PREFIX']!r}")
    if str(cfg["LOG_LEVEL"]).upper() not in _LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, got {cfg['LOG_LEVEL']!r}")
    cfg["LOG_LEVEL"] = str(cfg["LOG_LEVEL"]).upper()
    cfg["BASE_URL"] = cfg["BASE_URL"].rstrip("/")
    if urlsplit(cfg["BASE_URL"]).scheme not in {"http", "https"}:
        raise ConfigError(f"BASE_URL must be an http(s) URL, got {cfg['BASE_URL']!r}")
    if cfg["ALLOW_LOOPBACK_CALLBACKS"] is None:
        cfg["ALLOW_LOOPBACK_CALLBACKS"] = is_loopback_url(cfg["BASE_URL"])
    if not testing:
        for key, floor in ARGON2_FLOOR.items():
            if int(cfg[key]) < floor:
                raise ConfigError(f"{key} = {cfg[key]} is below the minimum {floor}")
    dkim = [cfg["MAIL_DKIM_KEY"], cfg["MAIL_DKIM_SELECTOR"], cfg["MAIL_DKIM_DOMAIN"]]
    if any(dkim) and not all(dkim):
        raise ConfigError("MAIL_DKIM_KEY, MAIL_DKIM_SELECTOR and MAIL_DKIM_DOMAIN must be set together")
    if cfg["MAIL_DKIM_KEY"] and not Path(cfg["MAIL_DKIM_KEY"]).is_file():
        raise ConfigError(f"MAIL_DKIM_KEY: {cfg['MAIL_DKIM_KEY']} is not a readable file")
    if cfg["TICKET_LIFETIME"] <= 0 or cfg["TICKET_LIFETIME"] > 300:
        raise ConfigError("TICKET_LIFETIME must be between 1 and 300 seconds")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", cfg["COOKIE_PREFIX"]):
        raise ConfigError(f"COOKIE_PREFIX may hold only a-z, 0-9 and _, got {cfg['COOKIE_PREFIX']!r}")
    cfg["METRICS_NETWORKS"] = _networks("METRICS_NETWORKS", cfg["METRICS_NETWORKS"])
    cfg["UPSTREAM"] = _upstreams(cfg["UPSTREAM"])
    return cfg


def _networks(key: str, values: Any) -> list[str]:
    """A list of networks (CIDR, or one address) as their canonical strings; anything else names the key."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{key} must be a list of networks (CIDR), got {values!r}")
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value.strip())))
        except ValueError as exc:
            raise ConfigError(f"{key}: {value!r} is not a network: {exc}") from None
    return out


def _upstreams(entries: Any) -> list[dict[str, Any]]:
    """Validate the [[upstream]] tables: every problem names the entry and the key."""
    if not isinstance(entries, list):
        raise ConfigError("upstream must be a list of [[upstream]] tables")
    out, seen = [], set()
    for n, entry in enumerate(entries, 1):
        where = f"upstream #{n}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table")
        where = f"upstream {entry.get('name', '#' + str(n))!r}"
        for key in entry:
            if key not in UPSTREAM_KEYS:
                raise ConfigError(f"{where}: unknown key {key!r}")
        for key, (want, required) in UPSTREAM_KEYS.items():
            if key not in entry:
                if required:
                    raise ConfigError(f"{where}: {key} is required")
                continue
            if not isinstance(entry[key], want) or (want is list and not all(isinstance(x, str) for x in entry[key])):
                raise ConfigError(f"{where}: {key} must be {want.__name__}")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", entry["name"]):
            raise ConfigError(f"{where}: name may hold only letters, digits, - and _")
        if entry["name"] in seen:
            raise ConfigError(f"{where}: name used twice")
        seen.add(entry["name"])
        if urlsplit(entry["issuer"]).scheme not in {"http", "https"}:
            raise ConfigError(f"{where}: issuer must be an http(s) URL")
        scopes = entry.get("scopes") or ["openid", "email", "profile"]
        if "openid" not in scopes:
            raise ConfigError(f"{where}: scopes must include openid")
        out.append({"client_secret": None, "trust_email": False, **entry, "scopes": scopes,
                    "issuer": entry["issuer"].rstrip("/")})
    return out
