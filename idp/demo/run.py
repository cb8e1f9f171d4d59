"""`idp demo`: a throw-away instance with demo people, the IdP, two sample relying apps and a mail viewer.

What runs, all on one host (127.0.0.1 by default):
- the IdP, `idp serve` (gunicorn, as in production) in a child process group, on a temporary instance
  folder filled by idp/demo/seed.py (schema, keys, people.csv, passwords, a helpdesk role, a registry
  pointing at the sample apps), mailing through the sink below;
- in this process, each on its own thread: "USOSweb" (a CAS client, usosweb.py), "e-learning" (an OpenID
  Connect client, elearning.py), the SMTP sink and its web viewer (mailview.py).
Every port is bound (or checked, for the IdP's) before anything starts, so a port in use is told by name
and nothing is left running. SIGINT (Ctrl-C) and SIGTERM stop the IdP's process group, the servers and
remove the folder (unless --keep); the exit status is then 0.
"""
from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from flask_babel import lazy_gettext as _l
from werkzeug.serving import BaseWSGIServer

from idp.demo import elearning, mailview, seed, usosweb
from idp.demo.web import bind, serve_on

#: Seconds for the instance set-up, for the IdP to answer, and for it to stop before it is killed.
SEED_TIMEOUT = 120
START_TIMEOUT = 60
STOP_TIMEOUT = 10
#: gunicorn workers of the demo IdP: two are plenty for one person clicking.
WORKERS = 2
MAIL_WORKER_INTERVAL = 0.5


class DemoError(Exception):
    """Why the demo cannot run (a port in use, the IdP did not start): one line for the person."""


@dataclass(frozen=True)
class Ports:
    """The demo's ports; unless given, the sample apps, the viewer and the sink take the IdP's next four."""
    idp: int
    usosweb: int
    elearning: int
    mailview: int
    smtp: int

    @classmethod
    def after(cls, idp: int, *, usosweb: int | None = None, elearning: int | None = None,
              mailview: int | None = None, smtp: int | None = None) -> Ports:
        ports = cls(idp, usosweb or idp + 1, elearning or idp + 2, mailview or idp + 3, smtp or idp + 4)
        for name, value in ports.named():
            if not 1 <= value <= 65535:
                raise DemoError(f"the port of {name} would be {value}: choose ports between 1 and 65535")
        values = [value for _name, value in ports.named()]
        if len(set(values)) != len(values):
            raise DemoError(f"the demo needs five different ports, got {', '.join(map(str, values))}")
        return ports

    def named(self) -> list[tuple[str, int]]:
        return [("the IdP (--port)", self.idp), ("USOSweb (--usosweb-port)", self.usosweb),
                ("e-learning (--elearning-port)", self.elearning), ("the mail viewer (--mail-port)", self.mailview),
                ("the SMTP sink (--smtp-port)", self.smtp)]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_host(host: str) -> None:
    try:
        if ipaddress.ip_address(host).is_unspecified:
            raise DemoError(f"--host {host} is not an address a browser can open: every URL of the demo "
                            "carries it (use 127.0.0.1, or this machine's name or address)")
    except ValueError:
        pass  # a name


def _die_with_parent() -> None:
    """In the IdP's child, before exec: SIGTERM it should this process die without cleaning up (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the child's process group (gunicorn master and workers), SIGKILL what is left after a while."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):  # workers may outlive the master by a moment
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@dataclass
class Demo:
    host: str
    ports: Ports
    keep: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    #: Set by SIGINT/SIGTERM: stop everything and exit 0.
    stop: threading.Event = field(default_factory=threading.Event)
    folder: Path | None = None
    _idp: subprocess.Popen | None = None
    _servers: list[tuple[BaseWSGIServer, threading.Thread]] = field(default_factory=list)
    _smtp: mailview.SmtpSink | None = None

    # --- URLs -----------------------------------------------------------------------------------------

    def url(self, port: int) -> str:
        return f"http://{_url_host(self.host)}:{port}"

    @property
    def idp_url(self) -> str:
        return self.url(self.ports.idp)

    # --- the whole run ------------------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, wait for a signal, stop everything. 0 when stopped by a signal, 1 when the IdP
        stopped by itself; DemoError when it cannot start."""
        _check_host(self.host)
        sockets = self._bind_all()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.folder = Path(tempfile.mkdtemp(prefix="idp-demo-"))
            secret = secrets.token_urlsafe(32)
            self._write_instance(secret)
            if not self._seed():
                return 0
            self._start_idp()
            self._start_apps(sockets, secret)
            sockets = {}
            if not self._wait_ready():
                return 0
            self._banner()
            while not self.stop.wait(0.5):
                if self._idp.poll() is not None:
                    print(f"idp demo: the IdP stopped by itself (exit code {self._idp.returncode}); "
                          f"its last log lines:\n{_tail(self._log)}", file=self.err)
                    return 1
            print("idp demo: stopping …", file=self.err)
            return 0
        finally:
            for sock in sockets.values():
                sock.close()
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, _signum, _frame) -> None:
        self.stop.set()

    @property
    def _log(self) -> Path:
        return self.folder / "idp.log"

    # --- steps --------------------------------------------------------------------------------------

    def _bind_all(self) -> dict[str, socket.socket]:
        """Every port this process serves, bound now; the IdP's checked. Nothing is left open on failure."""
        keys = ("idp", "usosweb", "elearning", "mailview", "smtp")
        bound: dict[str, socket.socket] = {}
        for key, (name, port) in zip(keys, self.ports.named(), strict=True):
            try:
                if key == "idp":
                    bind(self.host, port).close()  # `idp serve` binds it itself, in a moment
                else:
                    bound[key] = bind(self.host, port)
            except OSError as exc:
                for sock in bound.values():
                    sock.close()
                raise DemoError(f"port {port} for {name} cannot be used on {self.host} "
                                f"({exc.strerror or exc}): stop what uses it or choose another port") from None
        return bound

    def _write_instance(self, elearning_secret: str) -> None:
        assert self.folder is not None
        (self.folder / "idp.toml").write_text(
            "# Written by `idp demo`: a throw-away instance.\n"
            f'base_url = "{self.idp_url}"\n'
            f'mail_server = "{self.host}"\n'
            f"mail_port = {self.ports.smtp}\n"
            f"mail_worker_interval = {MAIL_WORKER_INTERVAL}\n"
            'log_format = "text"\n'
            "allow_loopback_callbacks = true\n", encoding="utf-8")
        (self.folder / "services.toml").write_text(seed.registry(
            usosweb_url=self.url(self.ports.usosweb), elearning_url=self.url(self.ports.elearning),
            elearning_secret=elearning_secret), encoding="utf-8")

    def _env(self) -> dict[str, str]:
        """The children's environment: the caller's without IDP_* (never their real database or mail server)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        env.update(IDP_INSTANCE=str(self.folder), PYTHONUNBUFFERED="1", XDG_RUNTIME_DIR=str(self.folder))
        return env

    def _seed(self) -> bool:
        """Fill the instance (a child process); False when a signal came first."""
        log = self.folder / "seed.log"
        with log.open("w", encoding="utf-8") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "idp.demo.seed", str(self.folder),
                                     str(self.folder / "services.toml")],
                                    env=self._env(), cwd=str(self.folder), stdin=subprocess.DEVNULL, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + SEED_TIMEOUT
        try:
            while proc.poll() is None:
                if self.stop.is_set():
                    return False
                if time.monotonic() > deadline:
                    raise DemoError(f"setting up the demo instance took more than {SEED_TIMEOUT} s")
                time.sleep(0.1)
        finally:
            _stop_group(proc)
        if proc.returncode != 0:
            print(_tail(log), file=self.err)
            raise DemoError(f"setting up the demo instance failed (exit code {proc.returncode}), see above")
        return True

    def _start_idp(self) -> None:
        with self._log.open("w", encoding="utf-8") as fh:
            self._idp = subprocess.Popen(
                [sys.executable, "-m", "idp.cli", "serve", "--host", self.host, "--port", str(self.ports.idp),
                 "--workers", str(WORKERS)],
                env=self._env(), cwd=str(self.folder), stdin=subprocess.DEVNULL, stdout=fh,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509

    def _start_apps(self, sockets: dict[str, socket.socket], elearning_secret: str) -> None:
        links = [("USOSweb", self.url(self.ports.usosweb) + "/"),
                 ("e-learning", self.url(self.ports.elearning) + "/"),
                 (_l("Mail viewer"), self.url(self.ports.mailview) + "/"),
                 (_l("Your account"), self.idp_url + "/account")]
        mailbox = mailview.Mailbox()
        self._smtp = mailview.SmtpSink(sockets["smtp"], mailbox).start()
        apps = {
            "usosweb": usosweb.create_app(self.url(self.ports.usosweb), self.idp_url, links),
            "elearning": elearning.create_app(self.url(self.ports.elearning), self.idp_url, elearning_secret, links),
            "mailview": mailview.create_app(mailbox, f"{self.host}:{self.ports.smtp}", links),
        }
        for key, app in apps.items():
            server = serve_on(sockets[key], app)
            thread = threading.Thread(target=server.serve_forever, name=f"idp-demo-{key}", daemon=True)
            thread.start()
            self._servers.append((server, thread))

    def _wait_ready(self) -> bool:
        """Wait until the IdP answers /readyz; False when a signal came first."""
        deadline = time.monotonic() + START_TIMEOUT
        while not self.stop.is_set():
            if self._idp.poll() is not None:
                print(_tail(self._log), file=self.err)
                raise DemoError(f"the IdP did not start (exit code {self._idp.returncode}), see its log above")
            if time.monotonic() > deadline:
                print(_tail(self._log), file=self.err)
                raise DemoError(f"the IdP did not answer within {START_TIMEOUT} s, see its log above")
            try:
                with urllib.request.urlopen(f"{self.idp_url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            self.stop.wait(0.2)
        return False

    def _shutdown(self) -> None:
        """Stop whatever was started, the IdP first (it may be delivering mail or logging someone out).
        Each step runs even when an earlier one failed: the instance folder (keys, database) must go."""
        steps = []
        if self._idp is not None:
            steps.append(lambda: _stop_group(self._idp))
        for server, thread in self._servers:
            steps.append(lambda server=server, thread=thread: (server.shutdown(), server.server_close(),
                                                              thread.join(timeout=5)))
        if self._smtp is not None:
            steps.append(self._smtp.stop)
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                print(f"idp demo: while stopping: {exc}", file=self.err)
        self._servers.clear()
        self._smtp = None
        if self.folder is not None and not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)
        if self.folder is not None and self.keep:
            print(f"idp demo: the instance stays in {self.folder} (IDP_INSTANCE={self.folder} idp …)",
                  file=self.err)

    def _banner(self) -> None:
        idp = self.idp_url
        rows = [("IdP login page", f"{idp}/cas/login"),
                ("Your account", f"{idp}/account"),
                ("Helpdesk console", f"{idp}/helpdesk"),
                ("USOSweb (CAS)", self.url(self.ports.usosweb) + "/"),
                ("e-learning (OIDC)", self.url(self.ports.elearning) + "/"),
                ("Mail viewer", self.url(self.ports.mailview) + "/"
                 + f"   (SMTP sink {self.host}:{self.ports.smtp})")]
        lines = ["", "idp demo is running: a throw-away IdP with demo people and sample apps. Ctrl-C stops it all.",
                 ""]
        lines += [f"  {label:<19} {url}" for label, url in rows]
        lines += ["", "Demo people (log in with any of their addresses or the album number):"]
        width = max(len(p.login) for p in seed.PEOPLE)
        for person in seed.PEOPLE:
            lines.append(f"  {person.login:<{width}}  {person.password or '(no password yet)'}")
            lines.append(f"  {'':<{width}}  {person.note}")
        lines += ["",
                  "Try: log in to USOSweb, then open e-learning (no password asked); log out in either and",
                  "both ask again. \"Forgot your password?\" on the login page: the link arrives in the mail viewer.",
                  "",
                  f"Instance {self.folder} ({'kept' if self.keep else 'removed'} at exit), "
                  f"IdP log {self._log}", ""]
        print("\n".join(lines), file=self.out, flush=True)


def run(host: str, ports: Ports, keep: bool = False) -> int:
    """Run the demo until SIGINT/SIGTERM; the exit status (DemoError when it cannot start)."""
    return Demo(host, ports, keep).run()
