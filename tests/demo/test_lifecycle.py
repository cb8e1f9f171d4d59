"""`idp demo` starts and stops as a person expects: Ctrl-C (SIGINT to the terminal's foreground job) or
SIGTERM stops every process it started and removes its throw-away folder, exit status 0; --keep keeps the
folder; a port already in use is named, the exit status is not 0 and nothing is left running or behind.
"""
from __future__ import annotations

import signal
import socket
import subprocess

import pytest

from tests.demo.process import (
    PORT_OPTIONS,
    STOP_TIMEOUT,
    alive,
    free_ports,
    launch,
    listening,
    start_demo,
    stop,
)


def _leftovers(tmpdir) -> list[str]:
    return sorted(p.name for p in tmpdir.iterdir())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_everything_and_removes_the_instance(tmp_path, demos, sig):
    run = start_demo(tmp_path)
    demos.append(run)
    instance = run.instance()
    assert instance.parent == run.tmpdir and (instance / "idp.toml").exists()
    assert any("serve" in cmd for cmd in run.children.values()), run.children  # the IdP, as gunicorn
    assert len(run.children) >= 3, run.children  # gunicorn's master and its two workers
    assert all(listening(port) for port in run.ports.values()), run.ports

    code = stop(run, sig)

    assert code == 0, run.errors()
    assert not [pid for pid in run.children if alive(pid)], run.children
    assert not [port for port in run.ports.values() if listening(port)], run.ports
    assert _leftovers(run.tmpdir) == []  # the instance and `idp serve`'s metrics folder are gone


def test_keep_leaves_the_instance_usable(tmp_path, demos):
    run = start_demo(tmp_path, "--keep")
    demos.append(run)
    instance = run.instance()

    assert stop(run, signal.SIGINT) == 0, run.errors()

    assert not [pid for pid in run.children if alive(pid)], run.children
    assert _leftovers(run.tmpdir) == [instance.name]
    assert (instance / "idp.sqlite3").exists() and (instance / "oidc-keys.json").exists()
    assert str(instance) in run.errors()


@pytest.mark.parametrize("taken", ["--port", "--elearning-port", "--smtp-port"])
def test_a_port_in_use_is_named_and_nothing_is_left(tmp_path, demos, taken):
    ports = dict(zip(PORT_OPTIONS, free_ports(len(PORT_OPTIONS)), strict=True))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as occupant:
        occupant.bind(("127.0.0.1", ports[taken]))
        occupant.listen()
        run = launch(tmp_path, ports)
        demos.append(run)
        try:
            code = run.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`idp demo` kept running with port {ports[taken]} taken:\n{run.output()}\n{run.errors()}")

    assert code == 2
    err = run.errors()
    assert f"port {ports[taken]}" in err and taken in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not [port for port in ports.values() if listening(port)], ports
    assert _leftovers(run.tmpdir) == []
