"""Where the time goes: py-spy samples of one gunicorn worker, grouped by library.

A sample is charged to the innermost frame that belongs to a known group; standard-library frames (socket,
re, hashlib, ...) are charged to their caller's group, except logging, which is a group of its own.
Idle time (a worker waiting in accept) is not sampled: the shares are of the worker's busy time.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PY_SPY = str(Path(sys.executable).with_name("py-spy"))

DRIVER_GROUP = "DB driver (sqlite3/psycopg) + SQLite engine"
#: (group, path fragments) in priority order: the first match of a frame's file names its group.
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("argon2", ("argon2/", "_argon2_cffi_bindings/")),
    (DRIVER_GROUP, ("sqlite3/", "psycopg/", "psycopg_binary/", "psycopg_c/", "psycopg_pool/")),
    ("Redis client", ("redis/",)),
    ("SQLAlchemy", ("sqlalchemy/", "flask_sqlalchemy/")),
    ("Jinja", ("jinja2/", "markupsafe/")),
    ("authlib / JOSE / crypto", ("authlib/", "joserfc/", "cryptography/", "jwt/")),
    ("Flask-WTF / Babel / Limiter", ("flask_wtf/", "wtforms/", "flask_babel/", "babel/", "flask_limiter/",
                                     "limits/", "itsdangerous/")),
    ("Flask / Werkzeug", ("flask/", "werkzeug/", "blinker/")),
    ("WSGI / gunicorn (HTTP, sockets)", ("gunicorn/",)),
    ("logging", ("logging/", "pythonjsonlogger/")),
    ("idp (our code)", ("idp/",)),
]
OTHER = "other"
#: SQLAlchemy functions whose own time is the driver's C code and, for SQLite, the database engine itself
#: (sqlite3 and psycopg's C parts have no Python frames of their own).
DRIVER_CALLS = {"do_execute", "do_executemany", "do_execute_no_params", "do_commit", "do_rollback", "do_close",
                "_fetchall_impl", "_fetchone_impl", "_fetchmany_impl", "fetchall", "fetchone", "connect",
                "do_ping"}
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def available() -> bool:
    return Path(PY_SPY).exists() or shutil.which("py-spy") is not None


def install() -> bool:
    """py-spy into the running virtualenv (the `bench` extra); False when pip cannot get it."""
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], capture_output=True, text=True)
    return out.returncode == 0 and available()


def _group(file: str) -> str | None:
    for name, fragments in GROUPS:
        if any(f in file for f in fragments):
            return name
    return None


@dataclass
class Profile:
    title: str
    samples: int = 0
    groups: Counter = field(default_factory=Counter)
    own_inclusive: Counter = field(default_factory=Counter)   # idp functions, time including callees
    own_self: Counter = field(default_factory=Counter)        # idp functions, time charged to them
    leaves: Counter = field(default_factory=Counter)          # any function, self time
    error: str | None = None

    def share(self, n: int) -> float:
        return 100.0 * n / self.samples if self.samples else 0.0


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> str | None:
    """Sample the process for `seconds`; None when fine, else why not."""
    exe = PY_SPY if Path(PY_SPY).exists() else shutil.which("py-spy")
    try:
        proc = subprocess.run([exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                               "--rate", str(rate), "--format", "raw", "--nonblocking", "-o", str(out)],
                              capture_output=True, text=True, timeout=seconds + 30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"py-spy failed: {exc}"
    if proc.returncode != 0 or not out.exists():
        return "py-spy failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    return None


def analyse(raw: Path, title: str) -> Profile:
    """Group the collapsed stacks py-spy wrote (`frame;frame;... count` per line, outermost first)."""
    prof = Profile(title)
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = []
        for f in stack.split(";"):
            m = _FRAME.match(f)
            frames.append((m.group("func"), m.group("file")) if m else (f, ""))
        prof.samples += n
        leaf_func, leaf_file = frames[-1]
        prof.leaves[f"{leaf_func} ({_short(leaf_file)})"] += n
        group = None
        charged = None
        if "sqlalchemy/" in leaf_file and leaf_func.rsplit(".", 1)[-1] in DRIVER_CALLS:
            group = DRIVER_GROUP
        for func, file in ([] if group else reversed(frames)):
            group = _group(file)
            if group is not None:
                charged = (func, file)
                break
        prof.groups[group or OTHER] += n
        if group == "idp (our code)" and charged is not None:
            prof.own_self[_own(*charged)] += n
        seen = set()
        for func, file in frames:
            if _group(file) == "idp (our code)" and "idp/serving.py" not in file:
                key = _own(func, file)
                if key not in seen:
                    seen.add(key)
                    prof.own_inclusive[key] += n
    return prof


def _short(file: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return file


def _own(func: str, file: str) -> str:
    path = file[file.index("idp/"):] if "idp/" in file else file
    return f"{path.removesuffix('.py').replace('/', '.')}.{func}"


def render(prof: Profile, top: int = 8) -> list[str]:
    """Plain-text lines for the console (the Markdown report reuses them in a code block)."""
    if prof.error:
        return [f"{prof.title}: {prof.error}"]
    lines = [f"{prof.title}  ({prof.samples} samples of one busy worker)"]
    for name, n in prof.groups.most_common():
        lines.append(f"    {prof.share(n):5.1f}%  {name}")
    if prof.own_inclusive:
        lines.append("  our functions, time including what they call:")
        for name, n in prof.own_inclusive.most_common(top):
            lines.append(f"    {prof.share(n):5.1f}%  {name}")
    lines.append("  hottest leaf functions:")
    for name, n in prof.leaves.most_common(6):
        lines.append(f"    {prof.share(n):5.1f}%  {name}")
    return lines
