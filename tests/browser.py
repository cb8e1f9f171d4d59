"""The one headless Chromium of a test session (Debian's, driven by Playwright; never `playwright install`).

Registered once, in tests/conftest.py: Playwright's sync API runs one event loop per thread, so two
session-wide `sync_playwright()` (say one for tests/demo and one for tests/e2e) cannot both be open in
one pytest process — the second fails with "using Playwright Sync API inside the asyncio loop".
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
# INTEROP.md: without these Chromium tries to reach the internet at start and stalls.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
#: Playwright's per-action and per-navigation limit.
STEP_TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` package (or set E2E_CHROMIUM). "
                    "The e2e tests do not download browsers (never run `playwright install`).", pytrace=False)
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                   timeout=STEP_TIMEOUT_MS * 3)
        except Error as exc:
            pytest.fail(f"Chromium at {CHROMIUM} did not start: {exc}", pytrace=False)
        yield b
        b.close()
