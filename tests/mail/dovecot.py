"""A real Dovecot (Debian dovecot-imapd 2.3) for the tests, configured from contrib/dovecot/ under a
temporary folder: IMAP on a free port of 127.0.0.1, no TLS (loopback only), mailboxes in the folder.

The authentication part is the one a university would deploy: contrib/dovecot/auth-idp.conf.ext,
dovecot-oauth2.conf.ext and idp-checkpassword.conf with their production paths, URLs and secrets
replaced by the test's; the checkpassword program is contrib/dovecot/idp-checkpassword itself, run by the
system's python3. The rest (where Dovecot keeps its sockets, logs and mail; which users its processes
run as) is what a throw-away instance needs:

- as root (CI): the login processes run as Debian's `dovenull` (Dovecot refuses root there), mailboxes
  belong to `nobody` (Dovecot refuses uid 0 for mail); the folder is outside pytest's root-only tmp;
- as anyone else: every process runs as the current user, without chroot.
"""
from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.processes import stop_group

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONTRIB = PROJECT_ROOT / "contrib" / "dovecot"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
#: The interpreter the checkpassword program runs with, as on a mail server (the test's own otherwise).
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
START_TIMEOUT = 20


def set_keys(text: str, values: dict[str, str]) -> str:
    """A `key = value` settings file with some values replaced (each key must be there, once)."""
    for key, value in values.items():
        text, count = re.subn(rf"(?m)^{re.escape(key)}\s*=.*$", lambda _m, k=key, v=value: f"{k} = {v}", text)
        assert count == 1, f"{key} not in the settings file"
    return text


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Dovecot:
    folder: Path
    port: int
    log: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM the master's process group, SIGKILL what is left; then remove the folder."""
        stop_group(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)


#: Services Dovecot chroots by default besides imap-login: only root may chroot.
_CHROOTED = ("anvil", "ipc", "old-stats", "aggregator", "director", "imap-urlauth-login")


def _users(folder: Path) -> dict[str, str]:
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        return {"internal": me, "internal_group": group, "login": me, "uid": str(os.getuid()),
                "gid": str(os.getgid()), "chroot": "chroot =",
                "services": "".join(f"service {name} {{\n  chroot =\n}}\n" for name in _CHROOTED)}
    nobody = pwd.getpwnam("nobody")
    os.chown(folder / "mail", nobody.pw_uid, nobody.pw_gid)
    return {"internal": "dovecot", "internal_group": "dovecot", "login": "dovenull", "uid": str(nobody.pw_uid),
            "gid": str(nobody.pw_gid), "chroot": "", "services": ""}


def write_config(folder: Path, port: int, *, idp_url: str, client_id: str, client_secret: str) -> Path:
    """dovecot.conf and the contrib files it includes, for an IdP at `idp_url` and the mail service's
    registry credentials. Returns the path of dovecot.conf."""
    for sub in ("run", "state", "mail", "etc"):
        (folder / sub).mkdir()
    etc = folder / "etc"
    from urllib.parse import quote

    scheme, rest = idp_url.split("://", 1)
    (etc / "dovecot-oauth2.conf.ext").write_text(set_keys((CONTRIB / "dovecot-oauth2.conf.ext").read_text(), {
        "introspection_url": f"{scheme}://{quote(client_id, safe='')}:{quote(client_secret, safe='')}@{rest}"
                             "/oidc/introspect"}), encoding="utf-8")
    (etc / "idp-checkpassword.conf").write_text(set_keys((CONTRIB / "idp-checkpassword.conf").read_text(), {
        "url": f"{idp_url}/mail/verify-password", "client_id": client_id, "client_secret": client_secret}),
        encoding="utf-8")
    auth = (CONTRIB / "auth-idp.conf.ext").read_text()
    auth = auth.replace("/etc/dovecot/", f"{etc}/")
    auth = auth.replace("args = /usr/local/lib/dovecot/idp-checkpassword ",
                        f"args = {SYSTEM_PYTHON} {CONTRIB / 'idp-checkpassword'} ")
    assert str(CONTRIB) in auth and f"{etc}/dovecot-oauth2.conf.ext" in auth, "contrib/dovecot/auth-idp.conf.ext changed"
    (etc / "auth-idp.conf.ext").write_text(auth, encoding="utf-8")
    users = _users(folder)
    conf = folder / "dovecot.conf"
    conf.write_text(f"""# A throw-away Dovecot for tests/mail (see tests/mail/dovecot.py).
instance_name = idp-test-{port}
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
listen = 127.0.0.1
protocols = imap
# Loopback only: no TLS, and plain passwords allowed without it.
ssl = no
disable_plaintext_auth = no
# Failed logins answer at once: no fixed 2 s wait, and no growing "auth penalty" per client address
# (Dovecot's documented switch: an anvil-auth-penalty socket nobody may open). The IdP's own throttle is
# what the tests are about; a mail server in production keeps both.
auth_failure_delay = 0
auth_verbose = yes
default_internal_user = {users['internal']}
default_internal_group = {users['internal_group']}
default_login_user = {users['login']}
mail_location = maildir:~/Maildir
!include {etc}/auth-idp.conf.ext
userdb {{
  driver = static
  args = uid={users['uid']} gid={users['gid']} home={folder}/mail/%Lu
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{users['services']}service imap-login {{
  {users['chroot']}
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""", encoding="utf-8")
    return conf


def _greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(100).startswith(b"* OK")
    except OSError:
        return False


def start(*, idp_url: str, client_id: str, client_secret: str) -> Dovecot:
    """Dovecot in the foreground (`dovecot -c CONF -F`) in a fresh folder, answering IMAP on a free port."""
    if not Path(DOVECOT).exists():
        raise RuntimeError("Dovecot is not installed: apt-get install dovecot-imapd (see docs/mail.md)")
    last_log = ""
    for _attempt in range(3):  # a free port can be taken between choosing and binding it
        folder = Path(tempfile.mkdtemp(prefix="idp-dovecot-"))
        folder.chmod(0o755)  # the mail processes (nobody, when run as root) must reach their mailboxes
        port = free_port()
        conf = write_config(folder, port, idp_url=idp_url, client_id=client_id, client_secret=client_secret)
        out = (folder / "stdout.log").open("w", encoding="utf-8")
        proc = subprocess.Popen([DOVECOT, "-c", str(conf), "-F"], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=str(folder))
        out.close()
        dovecot = Dovecot(folder=folder, port=port, log=folder / "dovecot.log", process=proc)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if _greets(port):
                return dovecot
            time.sleep(0.1)
        last_log = dovecot.log_text() + (folder / "stdout.log").read_text(errors="replace")
        dovecot.stop()
        if "Address already in use" not in last_log:
            break
    raise RuntimeError(f"Dovecot did not answer IMAP within {START_TIMEOUT} s; its log:\n{last_log[-4000:]}")
