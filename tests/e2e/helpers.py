"""Browser helpers shared by the end-to-end tests (Playwright, sync API)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, Response


def ticket_of(url: str) -> str:
    """The CAS service ticket a URL carries."""
    return parse_qs(urlsplit(url).query)["ticket"][0]


def query_of(url: str) -> dict[str, str]:
    """A URL's query parameters (first value of each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def redirect_chain(response: Response) -> list[tuple[str, int]]:
    """Every hop of a navigation, first to last, with its status."""
    hops = []
    request = response.request
    while request is not None:
        r = request.response()
        hops.append((request.url, r.status if r else 0))
        request = request.redirected_from
    return list(reversed(hops))


def submit_login(page: Page, username: str, password: str) -> Response:
    """Fill the IdP's login form and submit it; the response of the navigation that follows."""
    page.locator('input[name="username"]').fill(username)
    page.locator('input[name="password"]').fill(password)
    with page.expect_navigation() as nav:
        page.locator('form button[type="submit"]').click()
    return nav.value


class Documents:
    """Every top-level document a page received, redirects included, as (URL, status): a record of
    what the person was shown (or was sent through) that a test can assert on."""

    def __init__(self, page: Page):
        self.seen: list[tuple[str, int]] = []
        self._page = page
        page.on("response", self._record)

    def _record(self, response: Response) -> None:
        request = response.request
        if request.resource_type == "document" and request.frame == self._page.main_frame:
            self.seen.append((response.url, response.status))

    def mark(self) -> int:
        return len(self.seen)

    def since(self, mark: int) -> list[tuple[str, int]]:
        return self.seen[mark:]


#: Rules that compare with stored passwords: the live checklist leaves them pending (checked on submit,
#: never as someone types — see idp/core/policy.py evaluate(defer_stored=True)).
CHECKED_ON_SUBMIT = {"reused", "same_as_current"}


def all_ok(states: dict[str, str]) -> bool:
    """Every rule shown as met, but those only the submit checks (shown pending)."""
    return all(state == ("pending" if code in CHECKED_ON_SUBMIT else "ok") for code, state in states.items())
