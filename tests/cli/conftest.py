"""Fixtures for the `idp` command: a throw-away instance folder (and, on PostgreSQL, a schema of its own),
the real console script in a subprocess, and click's CliRunner in-process for the cheaper checks."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from idp.cli import main
from tests.databases import postgres_base, postgres_schema

IDP = Path(sys.executable).with_name("idp")  # the console script installed next to this interpreter
#: The production floor (TESTING cannot be set from outside): the cheapest argon2 a real instance allows.
FLOOR_ARGON2 = {"IDP_ARGON2_TIME_COST": "2", "IDP_ARGON2_MEMORY_COST": "19456", "IDP_ARGON2_PARALLELISM": "1"}


@dataclass
class Instance:
    folder: Path
    env: dict[str, str]

    def run(self, *args: str, input: str | None = None, cwd: str | Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """The real `idp` console script, as an operator runs it."""
        full = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        full.update(self.env)
        full.update(env or {})
        return subprocess.run([str(IDP), *args], input=input, capture_output=True, text=True,
                              cwd=str(cwd or self.folder.parent), env=full, timeout=60)

    def invoke(self, *args: str, input: str | None = None, env: dict[str, str] | None = None):
        """The same command in-process (click's CliRunner): fast, for checks that need no real process."""
        full: dict[str, str | None] = {k: None for k in os.environ if k.startswith("IDP_")}
        full.update(self.env)
        full.update(env or {})
        return CliRunner().invoke(main, list(args), input=input, env=full, catch_exceptions=False)


@pytest.fixture(autouse=True)
def _restore_log_levels():
    """The CLI quiets the idp and alembic loggers; in-process runs must not leak that into other tests."""
    names = ("idp", "alembic")
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def instance(tmp_path) -> Instance:
    """An uninitialised instance folder; on PostgreSQL runs, a fresh schema as its database."""
    folder = tmp_path / "instance"
    folder.mkdir()
    env = {"IDP_INSTANCE": str(folder), **FLOOR_ARGON2}
    base = postgres_base()
    if not base:
        yield Instance(folder, env)
        return
    with postgres_schema(base, "idp_cli") as url:
        env["IDP_DATABASE_URL"] = url
        yield Instance(folder, env)


@pytest.fixture
def ready(instance) -> Instance:
    """An instance after `idp init`."""
    result = instance.invoke("init")
    assert result.exit_code == 0, result.output
    return instance
