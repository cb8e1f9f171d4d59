"""The login page as a person meets it: language, hints, help, accessibility basics."""
import re

import pytest

from tests.conftest import USOSWEB, cas_login
from tests.factories import PASSWORD


def text(r):
    return r.get_data(as_text=True)


def test_polish_by_default_with_institution_hint_and_help(client):
    page = text(client.get("/cas/login", query_string={"service": USOSWEB}))
    assert '<html lang="pl">' in page
    assert "Zaloguj się" in page and "Hasło" in page
    assert "Ostrzegaj mnie przed zalogowaniem na innych serwerach" in page
    assert "Logujesz się do USOSweb" in page
    assert 'href="/password/reset"' in page


@pytest.mark.settings(POLICY="policies/agh.toml")
def test_policy_name_hint_and_contacts(client):
    page = text(client.get("/cas/login"))
    assert "Akademia Górniczo-Hutnicza" in page
    assert "adres e-mail w domenie uczelni" in page
    assert "pomoc-usos@agh.edu.pl" in page


def test_english_by_query_sticks_in_cookie(client):
    page = text(client.get("/cas/login?lang=en"))
    assert '<html lang="en">' in page and "Log in" in page
    assert "Warn me before logging me into other sites" in page
    # The choice sticks without the parameter.
    page = text(client.get("/cas/login"))
    assert '<html lang="en">' in page


def test_english_from_accept_language(client):
    page = text(client.get("/cas/login", headers={"Accept-Language": "en-GB,en;q=0.9"}))
    assert '<html lang="en">' in page


def test_language_switch_link_keeps_service(client):
    page = text(client.get("/cas/login", query_string={"service": USOSWEB}))
    link = re.search(r'<a href="([^"]+)" lang="en"', page).group(1)
    assert "service=https%3A%2F%2Fusosweb.example.edu.pl" in link and "lang=en" in link


def test_inputs_have_labels_and_autocomplete(client):
    page = text(client.get("/cas/login"))
    for name, autocomplete in (("username", "username"), ("password", "current-password")):
        field = re.search(rf'<input[^>]*name="{name}"[^>]*>', page).group(0)
        assert f'autocomplete="{autocomplete}"' in field
        field_id = re.search(r'\bid="([^"]+)"', field).group(1)
        assert f'<label for="{field_id}">' in page
    assert 'name="warn"' in page
    assert "toggle-pw" in page and "Caps Lock" in page or "Włączony jest Caps Lock" in page


def test_no_external_assets(client):
    page = text(client.get("/cas/login"))
    for url in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert not url.startswith(("http://", "https://", "//")), url


def test_wrong_password_message_in_both_languages(client, person):
    r = cas_login(client, "lukasz.zolkiewski@student.example.edu.pl", "wrong")
    assert r.status_code == 401 and "Niepoprawne dane logowania" in text(r)
    r = cas_login(client, "lukasz.zolkiewski@student.example.edu.pl", "wrong", extra={"lang": "en"})
    assert "Invalid login or password" in text(r)


def test_caps_lock_and_toggle_script_served(client):
    js = client.get("/static/idp.js")
    assert js.status_code == 200 and b"CapsLock" in js.data and b"toggle-pw" in js.data


def test_landing_page_after_login(client, person):
    r = cas_login(client, "12345", PASSWORD, service=None)
    assert r.status_code == 200 and "Jesteś zalogowany" in text(r)
    assert "Jesteś zalogowany" in text(client.get("/"))


def test_reset_link_leads_to_the_reset_request_page(client):
    login_page = text(client.get("/cas/login"))
    assert "Nie pamiętasz hasła? Zresetuj je" in login_page and 'href="/password/reset"' in login_page
    page = text(client.get("/password/reset"))
    assert "Resetuj hasło" in page and 'name="identifier"' in page
