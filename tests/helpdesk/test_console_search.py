"""The console's search box (GET /helpdesk/?q=…): album number, any address or alias, a name without
Polish letters, a PESEL (never shown back), a reference code from an error page; one hit goes straight
to the person, more are listed and paginated."""
from __future__ import annotations

import datetime as dt

import pytest

from idp.core import audit
from tests.core.helpers import make_pesel
from tests.factories import PESEL, create_account
from tests.helpdesk.console import Desk, location, plain, rows, text

PER_PAGE = 20


@pytest.fixture
def desk(client, clock):
    return Desk.open(client, clock)


@pytest.fixture
def people(app, person):
    return [person,
            create_account("A77b", first_name="Łukasz", last_name="Żółć", university_email="lukasz.zolc@uni.example.edu.pl",
                           private_email="lz@example.com", aliases=("zolc@uni.example.edu.pl",),
                           pesel=make_pesel(dt.date(1999, 5, 17)))]


@pytest.mark.parametrize("query", ["12345", " 12345 ", "lukasz.zolkiewski@student.example.edu.pl",
                                   "S12345@Student.Example.edu.pl", "lukasz.z@example.com", PESEL])
def test_one_hit_goes_straight_to_the_person(desk, people, query):
    r = desk.get("/helpdesk/", query_string={"q": query})
    assert r.status_code == 302 and location(r) == "/helpdesk/people/12345"


@pytest.mark.parametrize("query", ["lukasz", "ŁUKASZ", "Lukasz Z"])
def test_a_name_lists_everyone_it_matches_without_diacritics(desk, people, query):
    page = desk.page("/helpdesk/", query_string={"q": query})
    found = rows(page)
    assert sorted(r[1] for r in found) == ["12345", "A77b"]  # (their order is the database's collation)
    assert "2 people found." in plain(page)
    assert 'href="/helpdesk/people/A77b"' in page
    assert f'value="{query}"' in page  # the query stays in the box


def test_nothing_found_says_so(desk, people):
    page = desk.page("/helpdesk/", query_string={"q": "Grzegorz Brzęczyszczykiewicz"})
    assert "Nobody was found." in page
    page = desk.page("/helpdesk/", query_string={"q": "99999"})
    assert "Nobody was found." in page


def test_the_search_box_posts_and_lands_on_a_get_url(desk, people):
    r = desk.post("/helpdesk/", {"q": "Łukasz"})
    assert r.status_code == 302 and location(r) == "/helpdesk/?q=%C5%81ukasz"
    r = desk.post("/helpdesk/", {"q": "12345"})
    assert r.status_code == 302 and location(r) == "/helpdesk/?q=12345"
    assert location(desk.get(location(r))) == "/helpdesk/people/12345"


def test_a_pesel_never_lands_in_a_url_and_is_never_shown_back(desk, people):
    r = desk.post("/helpdesk/", {"q": PESEL})  # answered from the POST: straight to the person
    assert r.status_code == 302 and location(r) == "/helpdesk/people/12345"
    assert PESEL not in text(desk.get(location(r)))
    unknown = make_pesel(dt.date(1980, 1, 2), "5555")
    r = desk.post("/helpdesk/", {"q": unknown})
    assert r.status_code == 200
    assert unknown not in text(r)
    assert "Nobody was found." in text(r) and "Searched by PESEL" in text(r)
    # typed into the address bar by hand it still works, and the page does not repeat it as text
    page = desk.page("/helpdesk/", query_string={"q": unknown})
    assert f'value="{unknown}"' not in page and "Searched by PESEL" in page


def test_a_search_post_needs_its_csrf_token(desk, people):
    r = desk.post("/helpdesk/", {"q": "12345"}, token=False)
    assert r.status_code == 400


def test_a_reference_code_shows_the_event_and_its_person(desk, people):
    event = audit.record("login.failed", account_id=people[0].id, reason="wrong_password", client_ip="192.0.2.7",
                         data={"service": "USOSweb"})
    code = audit.reference(event)
    page = desk.page("/helpdesk/", query_string={"q": code.lower()})
    words = plain(page)
    assert f"Reference code {code}" in words
    assert "Login refused: wrong password" in words and "USOSweb" in words and "192.0.2.7" in words
    assert 'href="/helpdesk/people/12345"' in page


def test_a_reference_without_a_person_and_an_unknown_one(desk, people):
    event = audit.record("login.failed", reason="unknown_identifier", data={"identifier": "kto@example.com"})
    page = desk.page("/helpdesk/", query_string={"q": audit.reference(event)})
    assert "unknown login" in page and "not about a known account" in page
    r = desk.get("/helpdesk/", query_string={"q": "E999999"})
    assert r.status_code == 404 and "No event has this reference code" in text(r)


def test_many_results_are_paginated_with_previous_and_next(desk, person):
    for n in range(PER_PAGE + 5):
        create_account(f"7{n:04d}", first_name="Jan", last_name=f"Kowalski{n:02d}", university_email=None,
                       private_email=f"jk{n}@example.com", aliases=(), pesel=None)
    first = desk.page("/helpdesk/", query_string={"q": "kowalski"})
    assert len(rows(first)) == PER_PAGE
    assert "25 people found." in plain(first) and "Page 1 of 2" in plain(first)
    assert 'rel="next"' in first and 'rel="prev"' not in first
    assert rows(first)[0][0] == "Jan Kowalski00"
    second = desk.page("/helpdesk/", query_string={"q": "kowalski", "page": 2})
    assert [r[0] for r in rows(second)] == [f"Jan Kowalski{n:02d}" for n in range(20, 25)]
    assert 'rel="prev"' in second and 'rel="next"' not in second
    assert 'href="/helpdesk/?q=kowalski&amp;page=1"' in second
