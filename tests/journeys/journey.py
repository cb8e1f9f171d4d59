"""One person's walk through the IdP, recorded: numbered screenshots and an accessibility check per step.

A step's screenshot goes to <artifacts>/journeys/<journey>-<lang>/NN-<step>.png. Every step shown by the IdP
itself (not by a relying app) is also checked: with axe-core; for unique ids (WCAG 2.1 4.1.1, which axe 4
no longer checks); and for WCAG 1.4.10 Reflow, which axe cannot judge — at 320 CSS pixels wide (a phone,
or 1280 px zoomed to 400 %) the page must not scroll sideways (a wide table may scroll inside its own box,
which 1.4.10 allows for data tables). The violations are gathered so that a journey walks to its end and
leaves every screenshot behind; `assert_accessible()` then fails it with the list.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from playwright.sync_api import Page

from tests.journeys import axe

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def artifacts_root() -> Path:
    """IDP_TEST_ARTIFACTS, else test-artifacts/ in the project (gitignored)."""
    return Path(os.environ.get("IDP_TEST_ARTIFACTS") or PROJECT_ROOT / "test-artifacts")


def duplicate_ids(page: Page, label: str) -> list[axe.Violation]:
    """WCAG 2.1 success criterion 4.1.1 (Parsing): no two elements share an id. axe 4.x no longer checks it
    (WCAG 2.2 dropped 4.1.1), yet a duplicate id breaks what refers to it: a <label for>, an
    aria-describedby — the second field goes unnamed, or is described by another field's error."""
    dupes = page.evaluate("""() => {
        const seen = {};
        for (const el of document.querySelectorAll('[id]')) seen[el.id] = (seen[el.id] || 0) + 1;
        return Object.keys(seen).filter(k => seen[k] > 1);
    }""")
    if not dupes:
        return []
    return [axe.Violation(page=label, rule="duplicate-id (WCAG 2.1 4.1.1)", impact="serious",
                          help="Every id must be unique, or labels and descriptions point at the wrong element",
                          help_url="https://www.w3.org/WAI/WCAG21/Understanding/parsing.html",
                          targets=tuple(f"#{d}" for d in dupes), summary="the same id on several elements")]


#: WCAG 1.4.10: content reflows at a width equivalent to 320 CSS pixels.
REFLOW_WIDTH = 320


def reflow(page: Page, label: str, shot: Path | None = None) -> list[axe.Violation]:
    """Whether the page, 320 CSS pixels wide, scrolls sideways; the elements sticking out if it does
    (and then a screenshot at that width to `shot`)."""
    size = page.viewport_size
    page.set_viewport_size({"width": REFLOW_WIDTH, "height": 640})
    try:
        wide = page.evaluate(
            """(width) => {
                if (document.documentElement.scrollWidth <= width) return [];
                // The elements that cause it: sticking out while their parent fits (or scrolls them in a box
                // that fits), or positioned absolutely and not clipped by any scrolling box that fits.
                const out = [];
                const sticksOut = (el) => el.getBoundingClientRect().right > width + 1;
                const scrolls = (el) => getComputedStyle(el).overflowX !== 'visible';
                for (const el of document.body.querySelectorAll('*')) {
                    if (el.offsetParent === null || !sticksOut(el)) continue;
                    const parent = el.parentElement;
                    if (getComputedStyle(el).position === 'absolute') {
                        let clipped = false;
                        for (let a = el.offsetParent; a && !clipped; a = a.parentElement)
                            clipped = scrolls(a) && !sticksOut(a) && a !== document.body;
                        if (clipped) continue;
                    } else if (parent && (scrolls(parent) ? !sticksOut(parent) : sticksOut(parent))) {
                        continue;
                    }
                    const id = el.id ? '#' + el.id : '';
                    const cls = el.classList.length ? '.' + [...el.classList].join('.') : '';
                    const right = Math.round(el.getBoundingClientRect().right);
                    out.push(el.tagName.toLowerCase() + id + cls + ' (right edge ' + right + ')');
                }
                return out.length ? out : ['html (scrollWidth ' + document.documentElement.scrollWidth + ')'];
            }""", REFLOW_WIDTH)
        if wide and shot is not None:
            page.screenshot(path=str(shot), full_page=True)
    finally:
        if size:
            page.set_viewport_size(size)
    if not wide:
        return []
    return [axe.Violation(page=label, rule="reflow (WCAG 1.4.10)", impact="serious",
                          help=f"Content must fit {REFLOW_WIDTH} CSS pixels without scrolling sideways",
                          help_url="https://www.w3.org/WAI/WCAG21/Understanding/reflow.html",
                          targets=tuple(wide), summary="the page is wider than the viewport")]


class Journey:
    """Screenshots and axe results of one journey in one language."""

    def __init__(self, name: str, lang: str, idp_urls: list[str], axe_script: Path):
        self.name = name
        self.lang = lang
        self.folder = artifacts_root() / "journeys" / f"{name}-{lang}"
        shutil.rmtree(self.folder, ignore_errors=True)  # only this run's steps, numbered from 01
        self.folder.mkdir(parents=True)
        self._idp_urls = idp_urls
        self._axe = axe_script
        self._count = 0
        self.checked: list[str] = []
        self.violations: list[axe.Violation] = []

    def step(self, page: Page, step: str, *, check: bool = True) -> Path:
        """Save the page as the next numbered screenshot; run axe on it when the IdP shows it."""
        self._count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        path = self.folder / f"{self._count:02d}-{slug}.png"
        page.screenshot(path=str(path), full_page=True)
        if check and any(page.url.startswith(url + "/") for url in self._idp_urls):
            shown = page.locator("html").get_attribute("lang")
            assert shown == self.lang, f"step {step}: the page is in {shown!r}, the journey in {self.lang!r}"
            label = f"{self.name}-{self.lang} step {self._count:02d} {slug} ({page.url.split('?')[0]})"
            self.checked.append(label)
            self.violations.extend(axe.check(page, self._axe, label))
            self.violations.extend(duplicate_ids(page, label))
            self.violations.extend(reflow(page, label, path.with_name(f"{path.stem}-{REFLOW_WIDTH}px.png")))
        return path

    def assert_accessible(self) -> None:
        assert self.checked, "no page of the IdP was checked"
        assert not self.violations, axe.report(self.violations)
