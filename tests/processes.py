"""Stopping a server the tests started in its own process group (Apache, Dovecot): shared by their harnesses."""
from __future__ import annotations

import os
import signal
import subprocess


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group (the parent stops its children), SIGKILL what is left, then once more
    SIGKILL the group: children that outlived their parent."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
