"""Fixtures for `idp demo` (tests/demo/process.py starts and stops it) and headless Chromium (Debian's, as
in tests/e2e)."""
from __future__ import annotations

import faulthandler
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import STEP_TIMEOUT_MS
from tests.demo.process import DemoRun, start_demo, stop

TEST_TIMEOUT = int(os.environ.get("E2E_TEST_TIMEOUT", "150"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[DemoRun]:
    """One demo shared by a module's browser journeys (each journey has its own cookie jar)."""
    run = start_demo(tmp_path_factory.mktemp("demo"))
    yield run
    stop(run)


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[list[DemoRun]]:
    """Demos a test starts itself (append them): each is stopped at teardown, whatever the test did."""
    runs: list[DemoRun] = []
    yield runs
    for run in runs:
        stop(run)


@pytest.fixture(autouse=True)
def time_limit(request) -> Iterator[None]:
    """Bound each test (SIGALRM in the main thread), with a hard stop behind it."""
    def expired(_signum, _frame):
        raise TimeoutError(f"{request.node.nodeid} ran longer than {TEST_TIMEOUT} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT)
    faulthandler.dump_traceback_later(TEST_TIMEOUT + 60, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def page(browser):
    """A page in a fresh browser context (its own cookies), English as the browser's language."""
    context = browser.new_context(locale="en-US")
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
    yield context.new_page()
    context.close()
