"""Helpers for the activation tests: fill the pages as a browser does, and solve the proof-of-work."""
from __future__ import annotations

import hashlib
import html as html_mod
import re

from tests.conftest import csrf_token

EN = {"lang": "en"}
NEW = "Parowóz-Klarnet-Zima-1954"
#: Valid PESELs (right length and check digit) that are not the person's (tests.factories.PESEL).
OTHER_PESEL = "02070803628"


def text(r) -> str:
    return r.get_data(as_text=True)


def main_text(page: str) -> str:
    """The visible text of <main>, tags dropped, entities decoded, whitespace collapsed."""
    match = re.search(r"<main[^>]*>(.*?)</main>", page, re.S)
    assert match, "no <main> on the page"
    return " ".join(html_mod.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


def challenge_of(page: str) -> tuple[str, int] | None:
    """The proof-of-work challenge a page carries (token, bits), or None."""
    match = re.search(r'id="pow" data-challenge="([^"]+)" data-bits="(\d+)"', page)
    return (html_mod.unescape(match.group(1)), int(match.group(2))) if match else None


def solve(token: str, bits: int) -> str:
    """What the browser's pow.js does, in Python."""
    counter = 0
    while True:
        digest = hashlib.sha256(f"{token}:{counter}".encode()).digest()
        if int.from_bytes(digest, "big") >> (256 - bits) == 0:
            return str(counter)
        counter += 1


def wrong_solution(token: str, bits: int) -> str:
    counter = 0
    while True:
        digest = hashlib.sha256(f"{token}:{counter}".encode()).digest()
        if int.from_bytes(digest, "big") >> (256 - bits) != 0:
            return str(counter)
        counter += 1


def form_data(client, album: str, secret: str, surname: str, *, solve_challenge: bool = True) -> dict:
    """Open /activate and fill its form; a challenge on the page is solved unless told otherwise."""
    page = client.get("/activate", query_string=EN)
    assert page.status_code == 200, text(page)
    html = text(page)
    data = {"csrf_token": csrf_token(html), "album": album, "secret": secret, "surname": surname}
    found = challenge_of(html)
    if found:
        data["challenge"] = found[0]
        data["solution"] = solve(*found) if solve_challenge else ""
    return data


def submit(client, album: str, secret: str, surname: str, **kwargs):
    return client.post("/activate", query_string=EN, data=form_data(client, album, secret, surname, **kwargs))


def set_password(client, password: str = NEW, confirm: str | None = None):
    page = client.get("/activate/password", query_string=EN)
    assert page.status_code == 200, text(page)
    return client.post("/activate/password", query_string=EN,
                       data={"csrf_token": csrf_token(text(page)), "new_password": password,
                             "confirm": password if confirm is None else confirm})
