"""axe-core (Deque's accessibility engine, from the npm registry) run inside the test's own browser page.

Public universities in Poland must meet WCAG 2.1 AA (ustawa o dostępności cyfrowej, 2019), so every page a
journey shows is checked with the rules tagged wcag2a, wcag2aa, wcag21a and wcag21aa. The script is
installed once per machine with the machine's npm into a cache folder outside the work tree
(IDP_TEST_AXE_DIR overrides it) and evaluated in the page through the DevTools protocol. Not with
page.add_script_tag: that adds an inline <script>, which the IdP's Content-Security-Policy (script-src
'self' 'nonce-…') rightly blocks — and bypassing the CSP for the browser context would hide CSP problems
from the journeys.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page

#: Pinned: a newer axe may add rules, and that should be a change someone makes on purpose.
AXE_VERSION = "4.14.1"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
INSTALL_TIMEOUT = 180


def axe_dir() -> Path:
    """Where axe-core is installed: IDP_TEST_AXE_DIR, else a cache folder per version."""
    configured = os.environ.get("IDP_TEST_AXE_DIR")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "idp-tests" / f"axe-core-{AXE_VERSION}"


def ensure_axe() -> Path:
    """The path of axe.min.js, installing axe-core with npm when it is not there yet.

    Raises RuntimeError (with npm's output) when it cannot be installed: the tests then fail, never skip."""
    folder = axe_dir()
    script = folder / "node_modules" / "axe-core" / "axe.min.js"
    if script.is_file():
        return script
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found: install Debian's `npm` package (apt-get install -y npm); "
                           "the accessibility checks install axe-core from the npm registry with it")
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--no-save",
           "--no-package-lock", "--no-progress", f"axe-core@{AXE_VERSION}"]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                          env=dict(os.environ, CI="true", npm_config_update_notifier="false"))
    if done.returncode != 0 or not script.is_file():
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return script


_sources: dict[Path, str] = {}


def _source(script: Path) -> str:
    if script not in _sources:
        _sources[script] = script.read_text(encoding="utf-8")
    return _sources[script]


@dataclass(frozen=True)
class Violation:
    """One failed axe rule on one page, with the elements it failed on."""

    page: str
    rule: str
    impact: str
    help: str
    help_url: str
    targets: tuple[str, ...]
    summary: str

    def describe(self) -> str:
        where = "; ".join(self.targets[:5]) + (f" (+{len(self.targets) - 5} more)" if len(self.targets) > 5 else "")
        return (f"{self.page}: [{self.impact}] {self.rule} — {self.help}\n"
                f"    on: {where}\n    {self.summary}\n    {self.help_url}")


def check(page: Page, script: Path, label: str) -> list[Violation]:
    """Run axe on what the page shows now; its WCAG 2.1 A/AA violations (empty when it passes)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(_source(script))
    result = page.evaluate(
        """async (tags) => {
            const r = await window.axe.run(document, {runOnly: {type: 'tag', values: tags},
                                                      resultTypes: ['violations']});
            return r.violations.map(v => ({
                id: v.id, impact: v.impact || '', help: v.help, helpUrl: v.helpUrl,
                targets: v.nodes.map(n => n.target.join(' ')),
                summary: (v.nodes[0] && v.nodes[0].failureSummary || '').replace(/\\s+/g, ' ').trim(),
            }));
        }""", TAGS)
    return [Violation(page=label, rule=v["id"], impact=v["impact"], help=v["help"], help_url=v["helpUrl"],
                      targets=tuple(v["targets"]), summary=v["summary"]) for v in result]


def report(violations: list[Violation]) -> str:
    """A readable list for an assertion message."""
    return f"{len(violations)} WCAG 2.1 AA violation(s) found by axe-core {AXE_VERSION}:\n" + "\n".join(
        v.describe() for v in violations)
