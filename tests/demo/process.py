"""`idp demo` started as a person starts it (a subprocess in its own process group, as a terminal's
foreground job), on five free ports, with its own TMPDIR so that what it leaves behind can be seen.

Nothing here imports the demo: it is observed through its output, its ports, its processes and its folder.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: Seconds for the demo to print its banner (instance set-up, `idp serve` answering), and to stop.
START_TIMEOUT = 90
STOP_TIMEOUT = 30
PORT_OPTIONS = ("--port", "--usosweb-port", "--elearning-port", "--mail-port", "--smtp-port")


@dataclass
class DemoRun:
    process: subprocess.Popen
    ports: dict[str, int]
    tmpdir: Path
    stdout: Path
    stderr: Path
    #: Every process the demo started, seen while it ran (pid -> command line).
    children: dict[int, str] = field(default_factory=dict)

    def url(self, option: str) -> str:
        return f"http://127.0.0.1:{self.ports[option]}"

    @property
    def idp(self) -> str:
        return self.url("--port")

    @property
    def usosweb(self) -> str:
        return self.url("--usosweb-port")

    @property
    def elearning(self) -> str:
        return self.url("--elearning-port")

    @property
    def mail(self) -> str:
        return self.url("--mail-port")

    def output(self) -> str:
        return self.stdout.read_text(encoding="utf-8", errors="replace")

    def errors(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")

    def instance(self) -> Path:
        found = re.search(r"^Instance (\S+) ", self.output(), re.MULTILINE)
        assert found, self.output()
        return Path(found.group(1))


def free_ports(count: int) -> list[int]:
    """`count` different ports nothing listens on right now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def descendants(pid: int) -> dict[int, str]:
    """Every living process below `pid` (from /proc), with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, todo = {}, [pid]
    while todo:
        current = todo.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                try:
                    found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    found[child] = "?"
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def idp_executable() -> Path:
    exe = Path(sys.executable).parent / "idp"
    if not exe.exists():
        pytest.fail(f"console script {exe} not found: install the project first (pip install -e '.[test]')",
                    pytrace=False)
    return exe


def demo_env(tmpdir: Path) -> dict[str, str]:
    """The caller's environment without IDP_* settings, with a TMPDIR of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(TMPDIR=str(tmpdir), PYTHONUNBUFFERED="1")
    return env


def launch(tmp_path: Path, ports: dict[str, int], *extra: str) -> DemoRun:
    """`idp demo` with these ports, in its own process group (SIGINT to the group is a terminal's Ctrl-C)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    stdout, stderr = tmp_path / "demo.out", tmp_path / "demo.err"
    args = [str(idp_executable()), "demo", *[x for opt, port in ports.items() for x in (opt, str(port))], *extra]
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen(args, env=demo_env(tmpdir), cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
    return DemoRun(proc, ports, tmpdir, stdout, stderr)


def wait_started(run: DemoRun) -> DemoRun:
    """Until the banner is printed; then remember the demo's processes. On any failure it is stopped."""
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if run.process.poll() is not None:
                pytest.fail(f"`idp demo` exited {run.process.returncode} before it was ready\n"
                            f"stdout:\n{run.output()}\nstderr:\n{run.errors()}", pytrace=False)
            if "Ctrl-C" in run.output() and "IdP log" in run.output():
                run.children = descendants(run.process.pid)
                return run
            time.sleep(0.2)
        pytest.fail(f"`idp demo` printed no banner within {START_TIMEOUT} s\nstdout:\n{run.output()}\n"
                    f"stderr:\n{run.errors()}", pytrace=False)
    except BaseException:  # a failure above, or the test's time limit
        stop(run)
        raise


def start_demo(tmp_path: Path, *extra: str) -> DemoRun:
    ports = dict(zip(PORT_OPTIONS, free_ports(len(PORT_OPTIONS)), strict=True))
    return wait_started(launch(tmp_path, ports, *extra))


def stop(run: DemoRun, sig: int = signal.SIGTERM) -> int | None:
    """Signal the demo's process group and wait; whatever is left (it should be nothing) is killed."""
    if run.process.poll() is None:
        try:
            os.killpg(run.process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            run.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    for pid in [run.process.pid, *run.children]:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        run.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    return run.process.returncode
