"""A real Apache httpd 2.4 (Debian `apache2`) with mod_auth_cas and mod_auth_openidc for the interop tests,
configured from httpd.conf.template under a temporary folder and run in the foreground on a free port of
127.0.0.1 (`apache2 -f CONF -DFOREGROUND`), as the test's own process group.

Everything Apache writes (pid file, runtime files, logs, mod_auth_cas's session files) lives in that
folder. As root (CI) Apache switches its children to Debian's `www-data`, so the folder is readable by
everyone (the CGI page and the config are not secrets) and mod_auth_cas's session folder belongs to
www-data, which must be the only one writing there (its README: whoever can write there can forge a
session). As anyone else every process runs as the current user.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import string
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.processes import stop_group

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "httpd.conf.template"
CGI = HERE / "whoami.cgi"
APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
#: The Debian packages the tests need, by the file each one installs.
PACKAGES = {"apache2": Path(APACHE), "libapache2-mod-auth-cas": MODULES / "mod_auth_cas.so",
            "libapache2-mod-auth-openidc": MODULES / "mod_auth_openidc.so"}
START_TIMEOUT = 20
LOGGED_OUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Logged out</title></head>
<body><main><h1 id="logged-out">You are logged out</h1></main></body></html>
"""


def missing_packages() -> list[str]:
    return [name for name, path in PACKAGES.items() if not path.exists()]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Apache:
    folder: Path
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        """The error log (mod_auth_cas writes its debug lines there) and the access log."""
        parts = []
        for name in ("error.log", "access.log"):
            try:
                parts.append(f"--- {name}\n" + (self.folder / "logs" / name).read_text(errors="replace"))
            except OSError:
                parts.append(f"--- {name}: (none)")
        return "\n".join(parts)

    def stop(self, *, keep_logs_in: Path | None = None) -> None:
        """SIGTERM the process group (the parent stops its children), SIGKILL what is left; copy the logs to
        `keep_logs_in` (apache-error.log, apache-access.log) when given; remove the folder."""
        stop_group(self.process)
        if keep_logs_in is not None:
            for name in ("error.log", "access.log"):
                if (self.folder / "logs" / name).exists():
                    shutil.copy(self.folder / "logs" / name, keep_logs_in / f"apache-{name}")
        shutil.rmtree(self.folder, ignore_errors=True)


def write_config(folder: Path, port: int, *, idp_url: str, client_id: str, client_secret: str) -> Path:
    """httpd.conf and what it serves (the CGI page, the logged-out page) for an IdP at `idp_url` and the
    OIDC client's registry credentials. Returns the path of httpd.conf."""
    for sub in ("run", "logs", "htdocs", "cgi", "cas-cache"):
        (folder / sub).mkdir()
    shutil.copy(CGI, folder / "cgi" / "whoami.cgi")
    (folder / "cgi" / "whoami.cgi").chmod(0o755)
    (folder / "htdocs" / "logged-out.html").write_text(LOGGED_OUT, encoding="utf-8")
    run_as = ""
    if os.geteuid() == 0:
        www = pwd.getpwnam("www-data")
        os.chown(folder / "cas-cache", www.pw_uid, www.pw_gid)
        run_as = "User www-data\nGroup www-data"
    (folder / "cas-cache").chmod(0o700)
    base = f"http://127.0.0.1:{port}"
    text = string.Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        root=str(folder), port=port, run_as=run_as, idp=idp_url, base=base, base_escaped=quote(base, safe=""),
        client_id=client_id, client_secret=client_secret, passphrase=secrets.token_urlsafe(32))
    conf = folder / "httpd.conf"
    conf.write_text(text, encoding="utf-8")
    conf.chmod(0o600)  # the client secret and the passphrase: read by the parent (root) only
    return conf


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /logged-out.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(20).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start(port: int, *, idp_url: str, client_id: str, client_secret: str) -> Apache:
    """Apache in the foreground in a fresh folder, answering on `port`. Raises RuntimeError with the logs
    when it does not come up (OSError's "Address already in use" included: the caller picks another port)."""
    if missing := missing_packages():
        raise RuntimeError(f"not installed: {', '.join(missing)} (apt-get install {' '.join(missing)}; "
                           "docs/interop.md)")
    folder = Path(tempfile.mkdtemp(prefix="idp-apache-"))
    folder.chmod(0o755)  # www-data (when run as root) must reach the CGI page
    try:
        conf = write_config(folder, port, idp_url=idp_url, client_id=client_id, client_secret=client_secret)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    out = (folder / "logs" / "stdout.log").open("w", encoding="utf-8")
    # apache2 reads nothing from the environment here (no APACHE_* variables: the config names every path).
    proc = subprocess.Popen([APACHE, "-f", str(conf), "-DFOREGROUND"], stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=str(folder))
    out.close()
    apache = Apache(folder=folder, port=port, process=proc)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if _answers(port):
            return apache
        time.sleep(0.1)
    logs = apache.log_text() + "\n--- stdout\n" + (folder / "logs" / "stdout.log").read_text(errors="replace")
    apache.stop()
    raise RuntimeError(f"Apache did not answer on 127.0.0.1:{port} within {START_TIMEOUT} s; its logs:\n{logs[-4000:]}")
