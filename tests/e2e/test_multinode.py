"""Two `idp serve` nodes over one PostgreSQL database and one Redis, behind a load balancer.

What is shared, and nothing else (the deployment contract of issue 8): the database URL, IDP_REDIS_URL
and IDP_REDIS_PREFIX, the instance secrets (IDP_SECRET_KEY, IDP_PESEL_KEY in the environment) and the
OIDC signing keys (`idp init` with node A's folder, then its `oidc-keys.json` copied into node B's folder,
as the operations docs tell deployments). Each node has an instance folder of its own, so nothing can pass
between them through files, and each runs gunicorn with two workers of its own.

The load balancer. In production every node has the same public URL, the load balancer's: it is the OIDC
issuer (in discovery, in every token, in RFC 9207 `iss`) and the base of every absolute link, so it must
be one URL for all nodes, and one that stays up when a node goes down. Giving both nodes node A's own
address as IDP_BASE_URL would make the issuer a URL that dies with node A. So the test runs a small
reverse proxy (`LoadBalancer`) on a third port of 127.0.0.1: IDP_BASE_URL of both nodes is its URL, and
both nodes trust its X-Forwarded-For/-Proto/-Host/-Port (IDP_TRUSTED_PROXIES=1, as behind nginx or
HAProxy). Each request names the node it must reach (the `X-Test-Node` header, which the balancer strips:
the test decides what a real balancer leaves to chance or stickiness), and every answer says which node
served it (`X-Served-By`, like nginx's $upstream_addr). When the chosen node refuses the connection the
balancer passes the request to the other one, as `proxy_next_upstream error` does: a node killed mid-run
is what that fallback is for. Everything goes through the balancer's one host and port, so one
requests.Session cookie jar is the browser, and other Sessions are the relying apps' back channels.

The journey: CAS login at A (the form fetched from B: the CSRF token lives in the signed session cookie),
the ticket validated at B and refused on replay at A; SSO at B; an OIDC code from A exchanged, refreshed
and introspected across nodes; logout at B ends the session at A (the old TGC, an unused ticket, the
refresh and access tokens); then node A is SIGKILLed with live sessions, tickets and codes, and B serves
all of them; node A restarted sees them again. Last, wrong passwords alternating between the nodes are
counted as one run: the delays and the lockout hold at both.

Runs only on PostgreSQL + Redis (IDP_TEST_DATABASE_URL and IDP_TEST_REDIS_URL): two nodes on one SQLite
file are not a deployment.
"""
from __future__ import annotations

import base64
import hashlib
import html
import http.client
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.databases import postgres_base
from tests.e2e.conftest import (
    PASSWORD,
    STUDENT,
    _tail,
    clean_env,
    own_database,
    run_idp,
    serve,
    stop_process_group,
)
from tests.smtp_sink import SmtpSink

_DB = postgres_base() or ""
_REDIS = os.environ.get("IDP_TEST_REDIS_URL") or ""
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (_DB.startswith("postgresql") and _REDIS),
        reason="multi-node test needs PostgreSQL and Redis (set IDP_TEST_DATABASE_URL=postgresql://... and "
               "IDP_TEST_REDIS_URL=redis://...): two nodes on one SQLite file are not a deployment"),
]

#: Seconds for each HTTP request of the test (through the balancer) and for each back-end call it makes.
STEP = 10
CAS_SERVICE = "https://app.example.edu.pl/multinode/"
CAS_NAME = "Multinode CAS app"
OIDC_NAME = "Multinode OIDC app"
CLIENT_ID = "multinode"
CLIENT_SECRET = "multinode-" + "a-long-random-secret-value-" + "Qz7Lp4Xw9Rt2"
#: Nothing serves it: the test reads the code from the Location header.
REDIRECT_URI = "https://rp.example.edu.pl/oidc/callback"
SCOPES = "openid profile email"
USER = STUDENT["university_email"].lower()
#: The brute-force target (step 7), and the policy that makes its counters quick to reach.
VICTIM = {"album": "54321", "email": "bartosz.nowak@student.example.edu.pl", "password": "Szybki-Pociąg-Do-Gdyni-2031"}
DELAY = 3
POLICY = ("[login]\n"
          "lockout_threshold = 3\n"  # the third wrong password in a row locks the account
          "delay_after = 2\n"        # after two, every further attempt waits DELAY seconds
          f"delay_seconds = {DELAY}\n"
          f"delay_max_seconds = {DELAY}\n")
PIN = "X-Test-Node"
SERVED_BY = "X-Served-By"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "content-length"}


# --- the load balancer ---------------------------------------------------------------------------------------

class LoadBalancer:
    """A reverse proxy on 127.0.0.1 in front of the nodes (see the module docstring)."""

    def __init__(self) -> None:
        self.nodes: dict[str, int] = {}  # name -> port on 127.0.0.1
        self.log: list[str] = []  # "asked->served METHOD path status", for failure messages
        balancer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: nothing to keep alive

            def do_GET(self):  # noqa: N802 (BaseHTTPRequestHandler's names)
                balancer._forward(self)

            do_POST = do_HEAD = do_GET  # noqa: N815

            def log_message(self, *_args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="load-balancer", daemon=True)

    def start(self) -> LoadBalancer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def recent(self, n: int = 12) -> str:
        return "\n".join(self.log[-n:])

    def _forward(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        headers = {k: v for k, v in h.headers.items()
                   if k.lower() not in _HOP_BY_HOP and k.lower() != PIN.lower() and not k.lower().startswith("x-forwarded-")}
        headers.update({"X-Forwarded-For": h.client_address[0], "X-Forwarded-Proto": "http",
                        "X-Forwarded-Host": h.headers.get("Host") or f"127.0.0.1:{self.port}",
                        "X-Forwarded-Port": str(self.port)})
        asked = h.headers.get(PIN) or ""
        order = ([asked] if asked in self.nodes else []) + [n for n in self.nodes if n != asked]
        path = h.path.split("?", 1)[0]
        for name in order:
            conn = http.client.HTTPConnection("127.0.0.1", self.nodes[name], timeout=STEP)
            try:
                try:
                    conn.connect()
                except OSError:
                    continue  # the node is down: the next one gets the request (it never reached this one)
                try:
                    conn.request(h.command, h.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError as exc:  # the node died holding the request: not retried (it may have acted)
                    self._answer(h, 502, [], f"node {name} failed: {exc}".encode(), name)
                    self.log.append(f"{asked}->{name} {h.command} {path} 502 ({exc})")
                    return
            finally:
                conn.close()
            self._answer(h, resp.status, resp.getheaders(), data, name, reason=resp.reason)
            self.log.append(f"{asked}->{name} {h.command} {path} {resp.status}")
            return
        self._answer(h, 502, [], b"no node answers", "")
        self.log.append(f"{asked}->none {h.command} {path} 502")

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], data: bytes, node: str,
                reason: str | None = None) -> None:
        h.send_response_only(status, reason)
        for k, v in headers:
            if k.lower() not in _HOP_BY_HOP:
                h.send_header(k, v)
        h.send_header(SERVED_BY, node)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Connection", "close")
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)


# --- the cluster -----------------------------------------------------------------------------------------------

@dataclass
class Node:
    name: str
    instance: Path
    log: Path
    process: subprocess.Popen
    port: int


@dataclass
class Cluster:
    lb: LoadBalancer
    env: dict[str, str]  # shared by every node (each adds its own IDP_INSTANCE)
    artifacts: Path
    nodes: dict[str, Node] = field(default_factory=dict)

    def start(self, name: str, instance: Path, log_name: str | None = None) -> Node:
        env = dict(self.env, IDP_INSTANCE=str(instance))
        log = self.artifacts / (log_name or f"multinode-{name}.log")
        proc, _url, port = serve(instance, env, log, base_url=self.lb.url)
        node = Node(name=name, instance=instance, log=log, process=proc, port=port)
        self.nodes[name] = node
        self.lb.nodes[name] = port
        return node

    def kill(self, name: str) -> None:
        """SIGKILL the node's whole process group (gunicorn master and workers): nothing is flushed."""
        node = self.nodes[name]
        try:
            os.killpg(node.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.process.wait(timeout=STEP)
        deadline = time.monotonic() + STEP  # the workers, holding the listening socket, die a moment later
        while not _refuses_connections(node.port):
            assert time.monotonic() < deadline, f"node {name} still accepts connections {STEP} s after SIGKILL"
            time.sleep(0.05)

    def stop_all(self) -> None:
        for node in self.nodes.values():
            stop_process_group(node.process)

    def logs(self) -> str:
        return "\n".join(f"--- node {n.name} ({n.log.name}):\n{_tail(n.log, 15)}" for n in self.nodes.values())


def _services_toml() -> str:
    return (
        "[[service]]\n"
        f'name = "{CAS_NAME}"\n'
        'protocol = "cas"\n'
        "service_pattern = '^https://app\\.example\\.edu\\.pl/multinode/.*$'\n"
        'attributes = ["mail", "album"]\n'
        "\n"
        "[[service]]\n"
        f'name = "{OIDC_NAME}"\n'
        'protocol = "oidc"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\n'
        f'redirect_uris = ["{REDIRECT_URI}"]\n'
        'scopes = ["openid", "profile", "email"]\n'
        'grant_types = ["authorization_code", "refresh_token"]\n'
        "first_party = true\n")


@pytest.fixture
def cluster(tmp_path: Path, artifacts: Path, mail_sink: SmtpSink) -> Iterator[Cluster]:
    """Nodes A and B set up through the command line only, both behind one LoadBalancer."""
    lb = LoadBalancer().start()
    nodes: Cluster | None = None
    try:
        with own_database("idp_multinode") as database_env:
            assert database_env.get("IDP_REDIS_URL") and database_env.get("IDP_DATABASE_URL"), database_env
            shared = clean_env(
                CI=os.environ.get("CI", "true"), PYTHONUNBUFFERED="1",
                IDP_SECRET_KEY=secrets.token_urlsafe(32), IDP_PESEL_KEY=secrets.token_urlsafe(32),
                IDP_TRUSTED_PROXIES="1", IDP_POLICY=str(tmp_path / "policy.toml"),
                IDP_ARGON2_TIME_COST="2", IDP_ARGON2_MEMORY_COST="19456", IDP_ARGON2_PARALLELISM="1",
                IDP_MAIL_SERVER=mail_sink.host, IDP_MAIL_PORT=str(mail_sink.port), IDP_MAIL_WORKER_INTERVAL="0.5",
                **database_env)
            folder_a, folder_b, inputs = (tmp_path / "node-a", tmp_path / "node-b", tmp_path / "input")
            for folder in (folder_a, folder_b, inputs):
                folder.mkdir()
            (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
            env_a = dict(shared, IDP_INSTANCE=str(folder_a))
            run_idp(["init"], env_a)
            shutil.copy2(folder_a / "oidc-keys.json", folder_b / "oidc-keys.json")
            people = inputs / "people.csv"
            columns = [*STUDENT, "birth_date"]
            victim = {"album": VICTIM["album"], "first_name": "Bartosz", "last_name": "Nowak",
                      "university_email": VICTIM["email"], "role": "student", "birth_date": "2001-05-17"}
            rows = [",".join(columns)] + [",".join(row.get(c, "") for c in columns) for row in (STUDENT, victim)]
            people.write_text("\n".join(rows) + "\n", encoding="utf-8")
            out = run_idp(["users", "import", str(people)], env_a)
            assert "added 2" in out, out
            services = inputs / "services.toml"
            services.write_text(_services_toml(), encoding="utf-8")
            out = run_idp(["services", "load", str(services)], env_a)
            assert CAS_NAME in out and OIDC_NAME in out, out
            assert "password set" in run_idp(["users", "set-password", USER], env_a, stdin=PASSWORD + "\n")
            assert "password set" in run_idp(["users", "set-password", VICTIM["email"]], env_a,
                                             stdin=VICTIM["password"] + "\n")
            assert not (folder_b / "secrets.toml").exists() and not (folder_a / "secrets.toml").exists()

            nodes = Cluster(lb=lb, env=shared, artifacts=artifacts)
            try:
                nodes.start("A", folder_a)
                nodes.start("B", folder_b)
                yield nodes
            finally:
                nodes.stop_all()
                _forget_redis_keys(database_env["IDP_REDIS_URL"], database_env["IDP_REDIS_PREFIX"])
    finally:
        lb.stop()


def _forget_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# --- protocol helpers ------------------------------------------------------------------------------------------

def at(node: str) -> dict[str, str]:
    """Headers sending a request to one node through the balancer."""
    return {PIN: node}


def _served(r: requests.Response, node: str, lb: LoadBalancer) -> requests.Response:
    assert r.headers.get(SERVED_BY) == node, (
        f"{r.request.method} {urlsplit(r.url).path} was served by {r.headers.get(SERVED_BY)!r}, not {node}\n"
        f"{lb.recent()}")
    return r


def _csrf(page: str) -> str:
    tag = re.search(r'<input[^>]*name="csrf_token"[^>]*>', page)
    assert tag, "no CSRF token in the login form"
    return html.unescape(re.search(r'value="([^"]*)"', tag.group(0)).group(1))


def _is_login_form(r: requests.Response) -> bool:
    return r.status_code == 200 and 'name="password"' in r.text


def _ticket(r: requests.Response) -> str:
    assert r.status_code == 302, f"{r.status_code}: expected a redirect with a ticket\n{r.text[:500]}"
    location = r.headers["Location"]
    assert location.startswith(CAS_SERVICE + "?"), location
    return parse_qs(urlsplit(location).query)["ticket"][0]


def attempt(browser: requests.Session, cl: Cluster, *, form_at: str, post_at: str, username: str,
            password: str) -> requests.Response:
    """The CAS login form for CAS_SERVICE from one node, the credentials posted to another (the CSRF token
    travels in the session cookie, signed with the shared secret). The answer to the post."""
    url = f"{cl.lb.url}/cas/login"
    form = _served(browser.get(url, params={"service": CAS_SERVICE}, headers=at(form_at), timeout=STEP,
                               allow_redirects=False), form_at, cl.lb)
    assert _is_login_form(form), f"{form.status_code}: no login form\n{form.text[:500]}"
    return _served(browser.post(url, params={"service": CAS_SERVICE}, headers=at(post_at), timeout=STEP,
                                allow_redirects=False,
                                data={"csrf_token": _csrf(form.text), "username": username, "password": password,
                                      "service": CAS_SERVICE}), post_at, cl.lb)


def login(browser: requests.Session, cl: Cluster, *, form_at: str, post_at: str) -> str:
    """A password login; returns the service ticket."""
    r = attempt(browser, cl, form_at=form_at, post_at=post_at, username=USER, password=PASSWORD)
    assert browser.cookies.get("idp_tgc"), f"no SSO cookie after the login ({r.status_code}): {browser.cookies.keys()}"
    return _ticket(r)


def sso(browser: requests.Session, cl: Cluster, node: str, *, served_by: str | None = None) -> str:
    """/cas/login with the SSO cookie: a ticket without the password."""
    r = _served(browser.get(f"{cl.lb.url}/cas/login", params={"service": CAS_SERVICE}, headers=at(node),
                            timeout=STEP, allow_redirects=False), served_by or node, cl.lb)
    assert not _is_login_form(r), f"node {served_by or node} asked for the password again: the session is not there"
    return _ticket(r)


def validate(cl: Cluster, node: str, ticket: str, *, served_by: str | None = None) -> dict:
    r = _served(requests.get(f"{cl.lb.url}/cas/p3/serviceValidate", headers=at(node), timeout=STEP,
                             params={"ticket": ticket, "service": CAS_SERVICE, "format": "JSON"}),
                served_by or node, cl.lb)
    assert r.status_code == 200, r.text
    return r.json()["serviceResponse"]


def assert_valid(answer: dict, ticket: str) -> None:
    ok = answer.get("authenticationSuccess")
    assert ok, f"ticket {ticket} refused: {answer}"
    assert ok["user"] == USER, ok
    assert ok["attributes"]["album"] in (STUDENT["album"], [STUDENT["album"]]), ok


def assert_invalid(answer: dict, ticket: str) -> None:
    failure = answer.get("authenticationFailure")
    assert failure and failure["code"] == "INVALID_TICKET", f"ticket {ticket}: {answer}"


@dataclass
class Authorization:
    code: str
    verifier: str
    nonce: str


def authorize(browser: requests.Session, cl: Cluster, node: str) -> Authorization:
    verifier, state, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    r = _served(browser.get(f"{cl.lb.url}/oidc/authorize", headers=at(node), timeout=STEP, allow_redirects=False,
                            params={"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
                                    "scope": SCOPES, "state": state, "nonce": nonce, "code_challenge": challenge,
                                    "code_challenge_method": "S256"}), node, cl.lb)
    assert r.status_code == 302, f"{r.status_code}: {r.text[:500]}"
    location = r.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), f"not back at the client: {location}"
    got = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert got.get("state") == state and got.get("code"), got
    assert got.get("iss") == cl.lb.url, f"RFC 9207 iss {got.get('iss')!r} is not the public URL {cl.lb.url}"
    return Authorization(code=got["code"], verifier=verifier, nonce=nonce)


def token(cl: Cluster, node: str, **form: str) -> requests.Response:
    return _served(requests.post(f"{cl.lb.url}/oidc/token", headers=at(node), timeout=STEP, data=form,
                                 auth=(CLIENT_ID, CLIENT_SECRET)), node, cl.lb)


def exchange(cl: Cluster, node: str, grant: Authorization) -> dict:
    r = token(cl, node, grant_type="authorization_code", code=grant.code, redirect_uri=REDIRECT_URI,
              code_verifier=grant.verifier)
    assert r.status_code == 200, f"code exchange at {node}: {r.status_code} {r.text}"
    out = r.json()
    assert out.get("access_token") and out.get("refresh_token") and out.get("id_token"), out
    return out


def refresh(cl: Cluster, node: str, refresh_token: str) -> dict:
    r = token(cl, node, grant_type="refresh_token", refresh_token=refresh_token)
    assert r.status_code == 200, f"refresh at {node}: {r.status_code} {r.text}"
    out = r.json()
    assert out["access_token"] and out["refresh_token"] and out["refresh_token"] != refresh_token, out
    return out


def introspect(cl: Cluster, node: str, access_token: str) -> dict:
    r = _served(requests.post(f"{cl.lb.url}/oidc/introspect", headers=at(node), timeout=STEP,
                              data={"token": access_token, "token_type_hint": "access_token"},
                              auth=(CLIENT_ID, CLIENT_SECRET)), node, cl.lb)
    assert r.status_code == 200, f"introspection at {node}: {r.status_code} {r.text}"
    return r.json()


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


# --- the test --------------------------------------------------------------------------------------------------

def test_two_nodes_share_every_session_and_survive_one_node_killed(cluster: Cluster):
    cl, lb = cluster, cluster.lb
    started = time.monotonic()
    try:
        _journey(cl)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n\nload balancer, last requests:\n{lb.recent(20)}\n\n{cl.logs()}") from None
    assert time.monotonic() - started < 60, f"the multi-node journey took {time.monotonic() - started:.0f} s"


def _journey(cl: Cluster) -> None:
    lb = cl.lb
    # 0. One public face: both nodes give the balancer's URL as the issuer, with the same signing keys.
    docs = {n: _served(requests.get(f"{lb.url}/.well-known/openid-configuration", headers=at(n), timeout=STEP),
                       n, lb).json() for n in ("A", "B")}
    assert docs["A"] == docs["B"], "the nodes' discovery documents differ"
    assert docs["A"]["issuer"] == lb.url and docs["A"]["token_endpoint"] == f"{lb.url}/oidc/token", docs["A"]
    jwks = {n: _served(requests.get(f"{lb.url}/oidc/jwks", headers=at(n), timeout=STEP), n, lb).json()
            for n in ("A", "B")}
    assert jwks["A"] == jwks["B"] and jwks["A"]["keys"], jwks

    # 1. CAS: the form from B, the password posted to A; the ticket A issued is validated at B, and only once.
    browser = requests.Session()
    st1 = login(browser, cl, form_at="B", post_at="A")
    assert_valid(validate(cl, "B", st1), st1)
    assert_invalid(validate(cl, "A", st1), st1)
    assert_invalid(validate(cl, "B", st1), st1)

    # 2. SSO across nodes: the session A started lets B issue a ticket without the password, and A validates it.
    st2 = sso(browser, cl, "B")
    assert_valid(validate(cl, "A", st2), st2)

    # 3. OIDC: a code from A, exchanged at B; the ID token verifies with the keys A publishes; refreshed
    #    at B; the new access token is active at A, and A's userinfo knows the person.
    grant = authorize(browser, cl, "A")
    tokens = exchange(cl, "B", grant)
    claims = jwt.decode(tokens["id_token"], KeySet.import_key_set(jwks["A"])).claims
    assert claims["iss"] == lb.url and claims["aud"] in (CLIENT_ID, [CLIENT_ID]), claims
    assert claims["nonce"] == grant.nonce, claims
    refreshed = refresh(cl, "B", tokens["refresh_token"])
    active = introspect(cl, "A", refreshed["access_token"])
    assert active.get("active") is True and active.get("sub") == claims["sub"], active
    me = _served(requests.get(f"{lb.url}/oidc/userinfo", headers={**at("A"), "Authorization":
                                                                   f"Bearer {refreshed['access_token']}"},
                              timeout=STEP), "A", lb)
    assert me.status_code == 200 and me.json()["email"] == USER, me.text
    # The rotated refresh token is refused at A: rotation is shared too.
    reused = token(cl, "A", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert reused.status_code == 400 and reused.json().get("error") == "invalid_grant", reused.text

    # 4. Logout at B ends the session at A: its cookie, an unused ticket, the refresh and access tokens.
    #    (refreshing with the rotated token above revoked the family; start a fresh one first.)
    grant = authorize(browser, cl, "B")
    tokens = exchange(cl, "A", grant)
    assert introspect(cl, "B", tokens["access_token"]).get("active") is True
    stale = requests.Session()  # another browser tab kept the cookie (or someone copied it)
    stale.cookies.set("idp_tgc", browser.cookies.get("idp_tgc"), domain="127.0.0.1", path="/")
    unused = sso(stale, cl, "A")  # the copied cookie is the session (a ticket never validated)
    out = _served(browser.get(f"{lb.url}/cas/logout", headers=at("B"), timeout=STEP, allow_redirects=False), "B", lb)
    assert out.status_code == 200, out.text[:500]
    assert not browser.cookies.get("idp_tgc"), "the logout did not clear the SSO cookie"
    again = _served(stale.get(f"{lb.url}/cas/login", params={"service": CAS_SERVICE}, headers=at("A"),
                              timeout=STEP, allow_redirects=False), "A", lb)
    assert _is_login_form(again), f"A still honours the session B ended: {again.status_code} " \
                                  f"{again.headers.get('Location')}"
    assert_invalid(validate(cl, "A", unused), unused)
    dead = token(cl, "A", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert dead.status_code == 400 and dead.json().get("error") == "invalid_grant", dead.text
    assert introspect(cl, "A", tokens["access_token"]).get("active") is False

    # 5. Kill node A mid-run, holding sessions started at both nodes, an unvalidated ticket and an
    #    unexchanged code. Requests still aimed at A (stickiness) reach B through the balancer's fallback.
    first = requests.Session()
    st5 = login(first, cl, form_at="A", post_at="A")
    second = requests.Session()
    login(second, cl, form_at="B", post_at="B")
    grant = authorize(first, cl, "A")
    tokens = exchange(cl, "A", grant)
    pending = authorize(second, cl, "A")
    cl.kill("A")
    assert_valid(validate(cl, "A", st5, served_by="B"), st5)
    for who in (first, second):
        st = sso(who, cl, "A", served_by="B")
        assert_valid(validate(cl, "B", st), st)
    refreshed = refresh(cl, "B", tokens["refresh_token"])
    assert introspect(cl, "B", refreshed["access_token"]).get("active") is True
    late = exchange(cl, "B", pending)
    assert introspect(cl, "B", late["access_token"]).get("active") is True

    # 6. Node A comes back (a new process, its own folder): every session is there too.
    cl.start("A", cl.nodes["A"].instance, log_name="multinode-A-restarted.log")
    for who in (first, second):
        st = sso(who, cl, "A")
        assert_valid(validate(cl, "A", st), st)
    refreshed = refresh(cl, "A", refreshed["refresh_token"])
    assert introspect(cl, "B", refreshed["access_token"]).get("active") is True

    # 7. Brute force across nodes (policy: a delay after 2 attempts in a row, a lock at 3 wrong passwords):
    #    guesses alternate between the nodes and count as one run — the delay per typed identifier, the
    #    lock per account whichever of its identifiers was typed.
    guesser = requests.Session()

    started: list[float] = []  # when each guess was sent (monotonic; both nodes share this machine's clock)

    def guess(node: str, username: str, password: str, status: int) -> requests.Response:
        started.append(time.monotonic())
        r = attempt(guesser, cl, form_at=node, post_at=node, username=username, password=password)
        r.answered_at = time.monotonic()
        assert r.status_code == status, (f"{password!r} as {username} at node {node}: {r.status_code}, "
                                         f"expected {status}\n{r.text[:300]}")
        return r

    def waits(r: requests.Response) -> None:
        """A refusal before any password check, for the delay (not the address block): then wait it out.
        The delay started with the previous guess (at the other node) and is counted down in whole seconds
        (rounded up): what is left is DELAY less the time since that guess was sent, at most. The page must
        name the same seconds as Retry-After."""
        wait = int(r.headers.get("Retry-After") or 0)
        least = max(1, math.ceil(DELAY - (r.answered_at - started[-2])))
        assert least <= wait <= DELAY, (f"Retry-After {r.headers.get('Retry-After')!r}, expected {least}–{DELAY} s: "
                                        f"the {DELAY} s delay less the time since the previous guess")
        said = {f"Zbyt wiele nieudanych prób. Spróbuj ponownie za {wait} s.",
                f"Too many failed attempts. Try again in {wait} s."}
        assert any(text in r.text for text in said), f"the page does not name the {wait} s delay\n{r.text[:500]}"
        time.sleep(wait + 0.2)

    guess("A", VICTIM["email"], "wrong-password-number-1", 401)
    guess("B", VICTIM["email"], "wrong-password-number-2", 401)
    # A knows of B's attempt: even the right password waits, unchecked.
    waits(guess("A", VICTIM["email"], VICTIM["password"], 429))
    # The album number has a delay of its own (none yet: a delay on the e-mail address must not tell that
    # both belong to one person), but the account's count goes on: the third wrong password locks it.
    guess("B", VICTIM["album"], "wrong-password-number-3", 401)
    # Both nodes now refuse even the right password, under either identifier, and answer it as a wrong one:
    # the lock tells a guesser nothing.
    for node, username in (("A", VICTIM["email"]), ("B", VICTIM["album"])):
        locked = guess(node, username, VICTIM["password"], 401)
        assert any(text in locked.text for text in ("Niepoprawne dane logowania", "Invalid login or password"))
        assert "ticket=" not in (locked.headers.get("Location") or "")
    assert not guesser.cookies.get("idp_tgc")
