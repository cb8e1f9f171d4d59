"""The benchmark's instance: set up through the `idp` command, then single-use credentials issued in an app
context just before each measurement (service tickets, authorization codes, access tokens).

Nothing here talks HTTP. Credentials are written one per line into per-client files that bench/load.lua
reads (client i reads `<kind>.<i>.txt`), so every simulated client has its own and none is used twice.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDP = str(Path(sys.executable).with_name("idp"))
PASSWORD = "Korsarz-Wisła-1987-Tramwaj"
SERVICE = "http://127.0.0.1:9/app/"          # a CAS service: never contacted (no SLO, no proxy)
CLIENT_ID = "bench"
CLIENT_SECRET = "bench-secret-" + "0123456789" * 4
REDIRECT_URI = "http://127.0.0.1:9/cb"
SCOPE = "openid profile email university"
LOGIN_PEOPLE = 16                              # accounts the login load rotates through
PEOPLE = 64                                    # accounts in the import (attribute lookups see a real table)
LIFETIME = 4 * 3600                            # seconds: pre-issued credentials outlive any run

SERVICES_TOML = f"""# The benchmark's registry: one CAS service and one confidential OIDC client, both on a port nobody serves.
[[service]]
name = "bench-cas"
protocol = "cas"
service_pattern = '^http://127\\.0\\.0\\.1:9/.*$'
attributes = ["mail", "album", "name", "given_name", "family_name", "role"]

[[service]]
name = "bench-oidc"
protocol = "oidc"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uris = ["{REDIRECT_URI}"]
scopes = ["openid", "profile", "email", "university"]
grant_types = ["authorization_code", "refresh_token"]
first_party = true
"""

#: Policy keys the bench instance sets on top of policies/default.toml: the login load comes from 127.0.0.1
#: at thousands of logins per minute, so the per-address rules (`address_failures`, `address_rate_limit`)
#: must not apply to it; per-account delays and lockout still do (the load never types a wrong password).
#: A key the policy loader does not know is left out (and said so), so the bench runs on older trees too.
POLICY_WISHES = {
    "login": {
        "exempt_networks": ["127.0.0.0/8", "::1/128"],
    },
}


def album(i: int) -> str:
    return str(100000 + i)


@dataclass
class Instance:
    """One benchmark configuration's instance folder, database and Redis namespace."""

    name: str
    folder: Path
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    policy_notes: list[str] = field(default_factory=list)
    _app: object = field(default=None, repr=False)

    def command(self, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run([IDP, *args], env=self.env, input=stdin, text=True, capture_output=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"idp {' '.join(args)} failed: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout


def _toml_value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def write_policy(folder: Path) -> tuple[Path, list[str]]:
    """policies/default.toml plus the wished keys the loader accepts; returns the file and what was done."""
    from idp.core.policy import PolicyError, load_policy

    base = (ROOT / "policies" / "default.toml").read_text(encoding="utf-8")
    path = folder / "policy.toml"
    kept: list[str] = []
    notes: list[str] = []
    for section, keys in POLICY_WISHES.items():
        for key, value in keys.items():
            trial = _with_key(base, section, key, value)
            path.write_text(trial, encoding="utf-8")
            try:
                load_policy(path)
            except PolicyError as exc:
                notes.append(f"[{section}] {key}: not set ({str(exc).split(': ', 1)[-1][:80]})")
                continue
            base = trial
            kept.append(f"[{section}] {key} = {_toml_value(value)}")
    path.write_text(base, encoding="utf-8")
    return path, kept + notes


def _with_key(text: str, section: str, key: str, value) -> str:
    """The policy text with `key = value` set in [section] (replaced when present, else appended to it)."""
    line = f"{key} = {_toml_value(value)}"
    pattern = re.compile(rf"(?ms)^\[{re.escape(section)}\]\n(.*?)(?=^\[|\Z)")
    m = pattern.search(text)
    if m is None:
        return text.rstrip("\n") + f"\n\n[{section}]\n{line}\n"
    body = m.group(1)
    key_re = re.compile(rf"(?m)^{re.escape(key)}\s*=.*$")
    body = key_re.sub(line, body) if key_re.search(body) else body.rstrip("\n") + f"\n{line}\n\n"
    return text[:m.start(1)] + body + text[m.end(1):]


@contextmanager
def instance(name: str, workdir: Path, *, postgres: str | None = None, redis: str | None = None) -> Iterator[Instance]:
    """A fresh instance folder (and PostgreSQL schema, Redis prefix): set up by the CLI, removed afterwards."""
    folder = workdir / name
    folder.mkdir(parents=True)
    inst = Instance(name, folder)
    schema = None
    engine = None
    try:
        if postgres:
            import sqlalchemy as sa

            schema = f"bench_{uuid.uuid4().hex[:10]}"
            engine = sa.create_engine(postgres.replace("postgresql://", "postgresql+psycopg://", 1))
            with engine.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            sep = "&" if "?" in postgres else "?"
            inst.database_url = f"{postgres}{sep}options=-csearch_path%3D{schema}"
        if redis:
            inst.redis_url = redis
            inst.redis_prefix = f"idpbench:{uuid.uuid4().hex[:10]}:"
        policy, inst.policy_notes = write_policy(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        env.update({"IDP_INSTANCE": str(folder), "IDP_POLICY": str(policy), "IDP_CLI_LOG_LEVEL": "WARNING"})
        if inst.database_url:
            env["IDP_DATABASE_URL"] = inst.database_url
        if inst.redis_url:
            env["IDP_REDIS_URL"] = inst.redis_url
            env["IDP_REDIS_PREFIX"] = inst.redis_prefix
        inst.env = env
        _populate(inst)
        yield inst
    finally:
        close_app(inst)
        if redis and inst.redis_prefix:
            _drop_redis_prefix(redis, inst.redis_prefix)
        if engine is not None and schema:
            import sqlalchemy as sa

            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def _drop_redis_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        batch = []
        for key in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def _populate(inst: Instance) -> None:
    """`idp init`, `idp users import`, `idp services load`, `idp users set-password` (the first login person by
    the CLI; the others through the same core function in one process: each CLI start costs seconds)."""
    rows = ["album,pesel,first_name,last_name,university_email,private_email,role,aliases,birth_date"]
    rows += [f"{album(i)},,Jan,Testowy{i},jan.testowy{i}@student.example.edu.pl,,student,,2001-01-01"
             for i in range(PEOPLE)]
    (inst.folder / "people.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (inst.folder / "services.toml").write_text(SERVICES_TOML, encoding="utf-8")
    inst.command("init")
    inst.command("users", "import", str(inst.folder / "people.csv"))
    inst.command("services", "load", str(inst.folder / "services.toml"))
    inst.command("users", "set-password", album(0), stdin=PASSWORD + "\n")
    with app_context(inst) as app:
        from idp.core.accounts import find_any, set_password
        from idp.extensions import db

        policy = app.extensions["idp.policy"]
        for i in range(1, LOGIN_PEOPLE):
            set_password(find_any(album(i)), PASSWORD, policy, actor="cli")
        db.session.commit()


@contextmanager
def app_context(inst: Instance):
    """The instance's app (same configuration as the served one: built from the same IDP_* environment) in an
    app context. Built once per instance; every use gets a fresh database session."""
    from idp.extensions import db

    app = inst._app
    if app is None:
        saved = {k: v for k, v in os.environ.items() if k.startswith("IDP_")}
        for k in saved:
            del os.environ[k]
        os.environ.update({k: v for k, v in inst.env.items() if k.startswith("IDP_")})
        try:
            import logging

            from idp import create_app

            app = create_app()
            logging.getLogger("idp").setLevel(logging.WARNING)
        finally:
            for k in [k for k in os.environ if k.startswith("IDP_")]:
                del os.environ[k]
            os.environ.update(saved)
        inst._app = app
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()


def close_app(inst: Instance) -> None:
    app = inst._app
    if app is not None:
        from idp.extensions import db

        with app.app_context():
            db.engine.dispose()
        inst._app = None


def served_config(inst: Instance) -> dict:
    """What the served instance runs with: argon2 cost and the stored hash of the login people."""
    with app_context(inst) as app:
        from idp.core.accounts import find_any

        stored = find_any(album(0)).password_hash
        return {"time_cost": app.config["ARGON2_TIME_COST"], "memory_cost": app.config["ARGON2_MEMORY_COST"],
                "parallelism": app.config["ARGON2_PARALLELISM"], "hash": stored,
                "database": "postgresql" if inst.database_url else "sqlite",
                "redis": bool(inst.redis_url)}


def account_id(inst: Instance) -> int:
    with app_context(inst):
        from idp.core.accounts import find_any

        return find_any(album(0)).id


# --- single-use credentials ----------------------------------------------------------------------------------

def _split_write(directory: Path, kind: str, values: list[str], clients: int) -> None:
    for c in range(clients):
        (directory / f"{kind}.{c}.txt").write_text("\n".join(values[c::clients]) + "\n", encoding="ascii")


def _sessions(app, n: int):
    """n live SSO sessions of different login people, as a fresh login makes them."""
    from idp.core import sso
    from idp.core.accounts import find_any

    policy = app.extensions["idp.policy"]
    out = []
    for i in range(n):
        account = find_any(album(i % LOGIN_PEOPLE))
        out.append((account, sso.start(account, policy, warn=False, client_ip="127.0.0.1").session))
    return out


def issue_service_tickets(inst: Instance, directory: Path, count: int, clients: int, kind: str = "st") -> int:
    """`count` service tickets for SERVICE (tickets.issue, as /cas/login does, with a long lifetime)."""
    with app_context(inst) as app:
        from idp.core import registry, tickets
        from idp.core.clock import utcnow
        from idp.extensions import db

        svc = registry.match_cas_service(SERVICE)
        sessions = _sessions(app, min(LOGIN_PEOPLE, count) or 1)
        values = []
        now = utcnow()
        for n in range(count):
            account, session = sessions[n % len(sessions)]
            issued = tickets.issue("ST", session_id=session.id, account_id=account.id, service=SERVICE,
                                   service_id=svc.id, lifetime=LIFETIME, now=now, from_new_login=True)
            values.append(issued.ticket)
            if n % 500 == 499:
                db.session.commit()
        db.session.commit()
    _split_write(directory, kind, values, clients)
    return count


def issue_codes(inst: Instance, directory: Path, count: int, clients: int, kind: str = "code") -> int:
    """`count` authorization codes for the confidential client, stored as the authorize endpoint stores them
    (idp.oidc.server.AuthorizationCodeGrant.save_authorization_code), valid for the whole run."""
    with app_context(inst) as app:
        from idp.core.clock import utcnow
        from idp.extensions import db
        from idp.models import AuthorizationCode
        from idp.oidc.server import digest

        sessions = _sessions(app, min(LOGIN_PEOPLE, count) or 1)
        now = utcnow()
        values = []
        for n in range(count):
            account, session = sessions[n % len(sessions)]
            code = secrets.token_urlsafe(32)[:43]
            db.session.add(AuthorizationCode(
                code_hash=digest(code), client_id=CLIENT_ID, account_id=account.id, session_id=session.id,
                redirect_uri=REDIRECT_URI, scope=SCOPE, nonce=None, code_challenge=None,
                code_challenge_method=None, auth_time=session.auth_time, created_at=now,
                expires_at=now + dt.timedelta(seconds=LIFETIME)))
            values.append(code)
            if n % 500 == 499:
                db.session.commit()
        db.session.commit()
    _split_write(directory, kind, values, clients)
    return count


def issue_access_tokens(inst: Instance, directory: Path, count: int, clients: int, kind: str = "at") -> int:
    """`count` live access tokens (rows as save_token writes them): introspection may ask about one many times."""
    with app_context(inst) as app:
        from idp.core.clock import utcnow
        from idp.extensions import db
        from idp.models import OAuthToken
        from idp.oidc.server import digest

        sessions = _sessions(app, min(LOGIN_PEOPLE, count) or 1)
        now = utcnow()
        values = []
        for n in range(count):
            account, session = sessions[n % len(sessions)]
            token = secrets.token_urlsafe(36)
            db.session.add(OAuthToken(client_id=CLIENT_ID, account_id=account.id, session_id=session.id,
                                      access_token_hash=digest(token), scope=SCOPE, issued_at=now,
                                      access_expires_at=now + dt.timedelta(seconds=LIFETIME),
                                      family=secrets.token_hex(8)))
            values.append(token)
        db.session.commit()
    _split_write(directory, kind, values, clients)
    return count


def write_logins(directory: Path, clients: int) -> None:
    """Who each login client logs in as (album numbers, rotated)."""
    people = [album(i) for i in range(LOGIN_PEOPLE)]
    for c in range(clients):
        rot = people[c % len(people):] + people[:c % len(people)]
        (directory / f"user.{c}.txt").write_text("\n".join(rot) + "\n", encoding="ascii")


def load_toml(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))
