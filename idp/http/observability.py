"""Operations: a request id on every request and log record, one access line per request, the request
latency metric, and the endpoints a load balancer and Prometheus call — /healthz, /readyz, /metrics.

Logs are JSON lines by default (LOG_FORMAT = "json"; "text" for a terminal). An access line holds the
method, the path WITHOUT its query string (CAS tickets and PGTs travel in queries; a route's variables are
shown as its pattern; in a path no route matched, long or ticket-like segments are masked), the Flask
endpoint, the status, the duration and the client address as the app sees it (after ProxyFix), never a
form, a cookie, a header value or a token. Audit events are not logged: they live in the database only
(idp.core.audit, `idp audit export`).

/metrics answers the monitoring hosts only (loopback, METRICS_NETWORKS, or the METRICS_TOKEN bearer);
anyone else gets the ordinary 404 page, as for an address that does not exist.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
import time
from functools import lru_cache

from flask import Blueprint, Flask, Response, abort, current_app, has_request_context, jsonify, request

from idp.config import ConfigError
from idp.core import metrics
from idp.core.clock import utcnow
from idp.extensions import csrf, db, limiter, shared

log = logging.getLogger("idp.access")
health_log = logging.getLogger("idp.health")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_ENV_ID, _ENV_START = "idp.request_id", "idp.request_start"
LOG_FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

bp = Blueprint("ops", __name__)


# --- request id and logging -------------------------------------------------------------------------------

def request_id() -> str | None:
    """This request's id: behind a trusted proxy (TRUSTED_PROXIES > 0) the X-Request-ID it sets, when that is
    a plain token (letters, digits . _ -, at most 128); else a fresh random one — without a proxy the header
    comes from the client, who must not choose what the log files its requests under. None outside a
    request (the outbox thread, commands)."""
    if not has_request_context():
        return None
    env = request.environ
    rid = env.get(_ENV_ID)
    if rid is None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "") if current_app.config["TRUSTED_PROXIES"] > 0 else ""
        rid = env[_ENV_ID] = incoming if _REQUEST_ID.fullmatch(incoming) else secrets.token_hex(16)
    return rid


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (None outside a request), so every line of one request can be
    found together."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id()
        return True


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(["levelname", "name", "message", "request_id"], timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger"}, json_ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of LOG_FORMAT: the app's lines and gunicorn's own (idp/serving.py) look alike."""
    return json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: str) -> None:
    """Format the process's log lines as JSON (or text) with the request id. The handler create_app's
    logging.basicConfig put on the root logger is the one changed; handlers others installed (a test
    runner's) are left alone. The access logger carries the filter itself, whatever handler gets it."""
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    chosen = formatter(log_format)
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(chosen)
            add_request_id(handler)
    add_request_id(log)


def add_request_id(target: logging.Filterer) -> None:
    """The RequestIdFilter on a handler or logger, once."""
    if not any(isinstance(f, RequestIdFilter) for f in target.filters):
        target.addFilter(RequestIdFilter())


def _start() -> None:
    request.environ.setdefault(_ENV_START, time.perf_counter())
    request_id()
    if "X-Forwarded-For" in request.headers and current_app.config["TRUSTED_PROXIES"] == 0:
        _warn_untrusted_proxy(current_app._get_current_object())


_warned_apps: set[int] = set()


def _warn_untrusted_proxy(app: Flask) -> None:
    """Once per app and process: a proxy sends X-Forwarded-For but TRUSTED_PROXIES is 0, so every person
    shares the proxy's address (per-address throttling, audit and metrics see only the proxy)."""
    if id(app) in _warned_apps:
        return
    _warned_apps.add(id(app))
    logging.getLogger("idp").warning(
        "requests carry X-Forwarded-For but TRUSTED_PROXIES is 0: the header is ignored and every client "
        "appears as %s; behind a reverse proxy set TRUSTED_PROXIES to the number of proxies "
        "(docs/operations.md)", request.remote_addr)


#: A path segment masked in the log of a path no route matched: long enough to be a link token (16
#: characters or more), a CAS ticket, or what a person may have put in a URL by mistake — an e-mail address,
#: eleven digits in a row (a PESEL).
MASKED = "…"
MASK_FROM = 16
_SECRET_SEGMENT = re.compile(r"(?:ST|PT|PGT|PGTIOU|TGT|LT)-|.*@|.*\d{11}", re.IGNORECASE | re.DOTALL)


def _masked(path: str) -> str:
    return "/".join(MASKED if len(seg) >= MASK_FROM or _SECRET_SEGMENT.match(seg) else seg
                    for seg in path.split("/"))


def _logged_path() -> str:
    """The path without its query string; a route with variables as its pattern (/federation/confirm/<token>,
    /api/v1/people/<album>): a path segment may be a secret or an identifier too. Static files as
    requested. A path no route matched (404, or 405: /federation/confirm/<token> with the wrong method)
    may hold the same secrets: every segment of 16 characters or more, that starts like a CAS ticket, or
    holds an "@" or eleven digits in a row, becomes "…". Cut at 512 characters."""
    rule = request.url_rule
    if rule is None:
        return _masked(request.path)[:512]
    if request.view_args and request.endpoint != "static":
        return rule.rule
    return request.path[:512]


def _finish(response: Response) -> Response:
    started = request.environ.get(_ENV_START)
    seconds = time.perf_counter() - started if started is not None else 0.0
    endpoint = request.endpoint
    metrics.http_request(endpoint, request.method, response.status_code, seconds)
    rid = request_id()
    response.headers[REQUEST_ID_HEADER] = rid
    path = _logged_path()
    duration_ms = round(seconds * 1000, 1)
    log.info('%s "%s %s" %s %.1fms', request.remote_addr, request.method, path, response.status_code, duration_ms,
             extra={"request_id": rid, "method": request.method, "path": path, "endpoint": endpoint,
                    "status": response.status_code, "duration_ms": duration_ms, "client": request.remote_addr})
    return response


# --- endpoints --------------------------------------------------------------------------------------------

def _json(body: dict, status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz():
    """The process answers. Nothing else is touched: a database outage must not make the load balancer
    restart healthy processes."""
    return _json({"status": "ok"}, 200)


def _timed(check) -> dict:
    started = time.perf_counter()
    result = check()
    result["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _database() -> dict:
    try:
        db.session.execute(db.text("SELECT 1"))
        return {"status": "ok"}
    except Exception as exc:  # any failure means "not ready"; only the kind of error leaves the process
        db.session.rollback()
        health_log.warning("readiness: database check failed: %s", exc)
        return {"status": "fail", "error": type(exc).__name__}


def _redis() -> dict:
    try:
        shared.redis.ping()
        return {"status": "ok"}
    except Exception as exc:
        health_log.warning("readiness: Redis check failed: %s", exc)
        return {"status": "fail", "error": type(exc).__name__}


def _mail() -> dict:
    """The outbox backlog: a warning only, never "not ready" — an SMTP outage must not take every node
    out of the load balancer; logins and tickets work without mail."""
    from idp.models import OutboxMessage

    now = utcnow()
    due = OutboxMessage.next_attempt_at <= now
    try:
        queued, oldest, due_count, oldest_due = db.session.execute(
            db.select(db.func.count(), db.func.min(OutboxMessage.created_at),
                      db.func.coalesce(db.func.sum(db.case((due, 1), else_=0)), 0),
                      db.func.min(db.case((due, OutboxMessage.created_at))))
            .where(OutboxMessage.status == "queued")).one()
    except Exception as exc:
        db.session.rollback()
        health_log.warning("readiness: outbox check failed: %s", exc)
        return {"status": "warn", "error": type(exc).__name__}

    def age(moment):
        return round(max(0.0, (now - moment).total_seconds()), 1) if moment is not None else 0.0

    limit = current_app.config["MAIL_BACKLOG_WARN_SECONDS"]
    result = {"status": "ok", "queued": queued, "due": int(due_count), "oldest_due_age_seconds": age(oldest_due),
              "oldest_queued_age_seconds": age(oldest), "warn_after_seconds": limit}
    if limit and age(oldest) > limit:
        result["status"] = "warn"
    return result


@bp.get("/readyz")
def readyz():
    """Ready for traffic: the database answers, Redis too when configured (503 otherwise); the mail
    backlog is reported, with "warn" past MAIL_BACKLOG_WARN_SECONDS, and never makes it 503. The details
    (outbox counts and ages, error classes, timings) only to those who may read /metrics: a queued count
    that grows right after a reset request says the login typed names a real person; anyone else (a load
    balancer needs only the status) gets each check's status."""
    checks = {"database": _timed(_database)}
    if shared.redis is not None:
        checks["redis"] = _timed(_redis)
    checks["mail"] = _timed(_mail)
    failed = any(c["status"] == "fail" for c in checks.values())
    warned = any(c["status"] == "warn" for c in checks.values())
    status = "fail" if failed else "warn" if warned else "ok"
    if not _metrics_allowed():
        checks = {name: {"status": check["status"]} for name, check in checks.items()}
    return _json({"status": status, "checks": checks}, 503 if failed else 200)


@lru_cache(maxsize=16)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)  # validated by idp.config at start


def _client_allowed() -> bool:
    """The client address as the app sees it (after ProxyFix) is loopback or in METRICS_NETWORKS. A loopback
    peer that forwards X-Forwarded-For while no proxy is trusted is a proxy on the same host passing on
    someone else's request, not a local client."""
    try:
        ip = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback and not (current_app.config["TRUSTED_PROXIES"] == 0 and "X-Forwarded-For" in request.headers):
        return True
    return any(ip in net for net in _networks(tuple(current_app.config["METRICS_NETWORKS"])))


def _token_presented() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        return False
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def _metrics_allowed() -> bool:
    return _token_presented() or _client_allowed()


# Every method, and no automatic OPTIONS: to anyone else /metrics answers like an address that does not exist
# (404 whatever the method, where a GET-only route would say 405 and name its methods).
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@bp.route("/metrics", endpoint="metrics", methods=_ALL_METHODS, provide_automatic_options=False)
def metrics_view():
    """Prometheus text exposition, for the monitoring hosts only: a loopback client, a client in
    METRICS_NETWORKS, or `Authorization: Bearer <METRICS_TOKEN>` from anywhere. Anyone else: 404."""
    if not _metrics_allowed():
        abort(404)
    if request.method not in ("GET", "HEAD"):
        abort(405, valid_methods=["GET", "HEAD"])
    response = Response(metrics.exposition(utcnow()), 200, content_type=metrics.CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Register after every other blueprint: the request timer goes first among before_request functions
    (one of them may answer the request itself)."""
    configure_logging(app.config["LOG_FORMAT"])
    app.register_blueprint(bp)
    csrf.exempt(bp)
    limiter.exempt(bp)
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_finish)
