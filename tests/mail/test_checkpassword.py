"""contrib/dovecot/idp-checkpassword as Dovecot runs it: the checkpassword interface (login and password on
fd 3, the reply program as the last argument, the client's address in TCPREMOTEIP), against a stand-in
IdP that answers what the test says. What Dovecot sees: the exit code, and what the reply program got."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.mail.dovecot import CONTRIB, SYSTEM_PYTHON

SCRIPT = CONTRIB / "idp-checkpassword"
PYTHON = SYSTEM_PYTHON
SECRET = "s3cret:with/odd+chars"


class _IdP(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        self.server.calls.append({"path": self.path, "headers": dict(self.headers),
                                  "form": parse_qs(self.rfile.read(length).decode())})
        status, body = self.server.answer
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def idp():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _IdP)
    server.calls, server.answer = [], (200, {"ok": True, "username": "lukasz@student.example.edu.pl"})
    server.url = f"http://127.0.0.1:{server.server_address[1]}/mail/verify-password"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def config(tmp_path, idp) -> Path:
    path = tmp_path / "idp-checkpassword.conf"
    path.write_text(f"# settings\nurl = {idp.url}\nclient_id = dovecot\nclient_secret = {SECRET}\n"
                    "timeout = 5\nlanguage = pl\n", encoding="utf-8")
    return path


@pytest.fixture
def reply(tmp_path) -> Path:
    """Stands in for Dovecot's checkpassword-reply: records what it was given."""
    path = tmp_path / "reply"
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    f"json.dump({{k: os.environ.get(k) for k in ('USER', 'EXTRA', 'NOLOGIN', 'REASON')}}, "
                    f"open({str(tmp_path / 'reply.json')!r}, 'w'))\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def run(config: Path, reply: Path, login: str = "12345", password: str | bytes = "Korsarz-Wisła-1987",
        **env: str) -> tuple[int, str, dict | None]:
    """Run the program the way Dovecot does; (exit code, stderr, what the reply program got or None)."""
    result_file = reply.parent / "reply.json"
    result_file.unlink(missing_ok=True)
    data = login.encode() + b"\0" + (password if isinstance(password, bytes) else password.encode()) + b"\0\0"
    environment = {"PATH": "/usr/bin:/bin", "TCPREMOTEIP": "203.0.113.7", "SERVICE": "imap", **env}
    done = subprocess.run(["sh", "-c", 'exec "$@" 3<&0', "sh", PYTHON, str(SCRIPT), str(config), str(reply)],
                          input=data, capture_output=True, env=environment, timeout=30)
    got = json.loads(result_file.read_text()) if result_file.exists() else None
    return done.returncode, done.stderr.decode(), got


def test_a_right_password_hands_dovecot_the_canonical_username(idp, config, reply):
    code, err, got = run(config, reply)
    assert (code, got) == (0, {"USER": "lukasz@student.example.edu.pl", "EXTRA": None, "NOLOGIN": None,
                               "REASON": None}), err
    [call] = idp.calls
    assert call["path"] == "/mail/verify-password"
    assert call["form"] == {"username": ["12345"], "password": ["Korsarz-Wisła-1987"],
                            "client_ip": ["203.0.113.7"], "protocol": ["imap"]}
    scheme, token = call["headers"]["Authorization"].split()
    # RFC 6749 §2.3.1: each part form-encoded before Basic, so a ":" in the secret survives.
    assert scheme == "Basic" and base64.b64decode(token).decode() == "dovecot:s3cret%3Awith%2Fodd%2Bchars"
    assert call["headers"]["Accept-Language"] == "pl"


def test_a_wrong_password_is_a_failed_login(idp, config, reply):
    idp.answer = (403, {"ok": False, "reason": "invalid_credentials", "message": "Niepoprawne dane logowania"})
    code, _err, got = run(config, reply)
    assert (code, got) == (1, None)


def test_throttled_is_a_temporary_failure(idp, config, reply):
    idp.answer = (429, {"ok": False, "reason": "throttled", "retry_after": 8, "message": "…"})
    code, err, got = run(config, reply)
    assert (code, got) == (111, None)
    assert "retry after 8 s" in err


def test_a_refusal_after_the_correct_password_is_shown_in_ascii(idp, config, reply):
    message = "Dane uczelni wskazują, że nie studiujesz ani nie pracujesz już na uczelni. Kod dla pomocy: E42"
    idp.answer = (403, {"ok": False, "reason": "account_left", "message": message, "reference": "E42"})
    code, err, got = run(config, reply, login="s12345@student.example.edu.pl")
    assert code == 0, err
    assert got == {"USER": "s12345@student.example.edu.pl", "EXTRA": "NOLOGIN REASON", "NOLOGIN": "Y",
                   "REASON": "Dane uczelni wskazuja, ze nie studiujesz ani nie pracujesz juz na uczelni. Kod dla pomocy: E42"}


def test_a_lock_is_never_told_apart_from_a_wrong_password(idp, config, reply):
    # The IdP no longer answers "locked" (a lock would confirm a guessed password); should an older IdP
    # still do so, the helper answers as for any refusal it does not know: a failed login.
    idp.answer = (403, {"ok": False, "reason": "locked", "message": "…", "reference": "E42"})
    code, _err, got = run(config, reply)
    assert (code, got) == (1, None)


def test_an_unknown_refusal_is_a_failed_login(idp, config, reply):
    idp.answer = (403, {"ok": False, "reason": "something_new", "message": "?"})
    code, _err, got = run(config, reply)
    assert (code, got) == (1, None)


@pytest.mark.parametrize("answer", [(401, {"error": "invalid_client", "error_description": "Unknown client"}),
                                    (403, {"error": "unauthorized_client"}), (503, {"error": "temporarily_unavailable"}),
                                    (502, "<html>Bad Gateway</html>"), (200, {"ok": True})],
                         ids=["wrong client secret", "not a mail service", "unavailable", "not JSON", "no username"])
def test_when_the_idp_refuses_the_request_itself_logins_fail_temporarily(idp, config, reply, answer):
    idp.answer = answer
    code, err, got = run(config, reply)
    assert (code, got) == (111, None)
    assert err.startswith("idp-checkpassword: ") and "Korsarz" not in err  # never the password


def test_an_unreachable_idp_is_a_temporary_failure(tmp_path, reply):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    config = tmp_path / "c.conf"
    config.write_text(f"url = http://127.0.0.1:{port}/mail/verify-password\nclient_id = d\nclient_secret = s\n")
    code, err, got = run(config, reply)
    assert (code, got) == (111, None) and "did not answer" in err


def test_an_empty_password_fails_without_asking(idp, config, reply):
    code, _err, got = run(config, reply, password="")
    assert (code, got, idp.calls) == (1, None, [])


@pytest.mark.parametrize("text, problem", [("url = http://x/\nclient_id = d\n", "client_secret is required"),
                                           ("url = http://x/\nclient_id = d\nclient_secret = s\nsecret = s\n",
                                            "unknown key(s) secret"),
                                           ("just words\n", "expected key = value")])
def test_a_bad_configuration_is_a_temporary_failure_that_says_why(tmp_path, reply, text, problem):
    config = tmp_path / "bad.conf"
    config.write_text(text)
    code, err, got = run(config, reply)
    assert (code, got) == (111, None) and problem in err


def test_a_secret_may_contain_a_hash_sign(idp, tmp_path, reply):
    config = tmp_path / "c.conf"
    config.write_text(f"url = {idp.url}\nclient_id = dovecot\nclient_secret = abc#def\n")
    assert run(config, reply)[0] == 0
    token = idp.calls[0]["headers"]["Authorization"].split()[1]
    assert base64.b64decode(token).decode() == "dovecot:abc%23def"


def test_as_a_userdb_it_refuses(idp, config, reply):
    code, err, got = run(config, reply, AUTHORIZED="1")
    assert (code, got, idp.calls) == (111, None, []) and "passdb" in err


def test_without_a_client_address_none_is_sent(idp, config, reply):
    code, _err, _got = run(config, reply, TCPREMOTEIP="")
    assert code == 0 and "client_ip" not in idp.calls[0]["form"]


def test_a_redirect_is_not_followed(idp, config, reply):
    """urllib would resend the client secret and the password to wherever a redirect points, and believe
    that server's verdict: a redirect is a temporary failure instead."""
    idp.answer = (302, {"ok": True, "username": "someone-else"})
    code, err, got = run(config, reply)
    assert (code, got) == (111, None)
    assert [c["path"] for c in idp.calls] == ["/mail/verify-password"]


def test_plain_http_only_to_the_same_machine(tmp_path, reply):
    path = tmp_path / "remote.conf"
    path.write_text("url = http://login.example.edu.pl/mail/verify-password\nclient_id = dovecot\n"
                    "client_secret = x\n", encoding="utf-8")
    code, err, got = run(path, reply)
    assert (code, got) == (111, None)
    assert "url must be https://" in err


def test_a_password_that_is_not_utf8_fails_without_a_trace_in_the_log(idp, config, reply):
    idp.answer = (403, {"ok": False, "reason": "invalid_credentials", "message": "Niepoprawne dane logowania"})
    code, err, got = run(config, reply, password=b"\xb3ukasz-Latin-2")
    assert (code, got) == (1, None)
    assert err == ""
    [call] = idp.calls
    assert call["form"]["password"] == ["\ufffdukasz-Latin-2"]  # the bytes as sent; the IdP decides
