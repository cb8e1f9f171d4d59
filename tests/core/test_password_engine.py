"""The password rule engine (idp.core.policy.evaluate) with Polish people and Polish passwords.

Every rule on its own, then the verdict as a whole (checklist, strength, all violations at once), the
cost bounds (maximum length before anything expensive, zxcvbn on a bounded prefix) and NFKC. The
history rule and everything set_password does around the engine: tests/core/test_password_lifecycle.py.
"""
from __future__ import annotations

import datetime as dt
import unicodedata

import pytest
import zxcvbn as zxcvbn_pkg
from flask_babel import force_locale

from idp.config import PROJECT_ROOT
from idp.core import policy as policy_mod
from idp.core.passwords import Passwords
from idp.core.pesel import keyed_hash
from idp.core.policy import (
    BLOCKLIST_SIZE,
    GENERIC_CONTEXT_WORDS,
    NFKC_MAX_SHRINK,
    ZXCVBN_PREFIX,
    PersonData,
    Verdict,
    check_password,
    context_words,
    evaluate,
    load_policy,
    normalise,
)
from tests.core.helpers import make_pesel

DEFAULT = load_policy()
AGH = load_policy(PROJECT_ROOT / "policies" / "agh.toml")
STRONG = "Wiatrak-Pomidor-Latarnia-42"  # zxcvbn 4, no one's data, no context word
KEY = "klucz-instancji-testowej"

LUKASZ = PersonData(
    first_name="Łukasz", last_name="Żółkiewski",
    identifiers=("lukasz.zolkiewski@student.example.edu.pl", "kangur77@example.com",
                 "s12345@student.example.edu.pl"),
    album="12345", birth_date="2004-03-15",
)
ZOFIA_PESEL = make_pesel(dt.date(1985, 11, 29), "0123")
ZOFIA = PersonData(first_name="Zofia", last_name="Wiśniewska", identifiers=("zosia.w@example.com",),
                   album="98760", birth_date="1985-11-29")
ANNA = PersonData(first_name="Anna", last_name="Nowak-Jeziorańska",
                  identifiers=("anna.nowak-jezioranska@student.uni.opole.pl",), album="54321")
NOBODY = PersonData()


def codes(password: str, person: PersonData = LUKASZ, policy=DEFAULT) -> list[str]:
    return [v.code for v in check_password(password, person, policy)]


def with_rules(base=None, **rules):
    return load_policy(base, {f"password.{k}": v for k, v in rules.items()})


def test_the_examples_used_below_are_clean():
    """The carrier passwords break no rule, so each test below sees only the rule it is about."""
    for person in (LUKASZ, ZOFIA, ANNA, NOBODY):
        for policy in (DEFAULT, AGH):
            assert codes(STRONG, person, policy) == []
            assert codes("Korsarz-Wisła-1987-Tramwaj", person, policy) == []


# --- personal data: names ------------------------------------------------------------------------------

@pytest.mark.parametrize("password", [
    "Łukasz-Wiatrak-Pomidor-9", "łukasz-wiatrak-pomidor-9", "ŁUKASZ-wiatrak-pomidor-9",
    "Lukasz-Wiatrak-Pomidor-9", "lukasz-wiatrak-pomidor-9", "LUKASZ-wiatrak-pomidor-9", "LuKaSz-wiatrak-pomidor",
    "Wiatrak-Pomidor-9-łukasz",  # anywhere in the password
    "Żółkiewski-Wiatrak-Pomidor", "żółkiewski-wiatrak-pomidor", "ŻÓŁKIEWSKI-wiatrak-pomidor",
    "Zolkiewski-Wiatrak-Pomidor", "zolkiewski-wiatrak-pomidor", "ZOLKIEWSKI-wiatrak-pomidor",
    "Zółkiewski-Wiatrak-Pomidor", "Żolkiewski-Wiatrak-Pomidor",  # half the diacritics
    "Wiatrak-Żółk-Pomidor-Latarnia", "Wiatrak-KIEW-Pomidor-Latarnia",  # a 4-character fragment
    "Wiatrak-Ukas-Pomidor-Latarnia",
])
def test_first_and_last_name_in_any_case_with_or_without_diacritics(password):
    assert codes(password) == ["personal_data"]


@pytest.mark.parametrize("password", [
    "Wiśniewska-Wiatrak-Pomidor-9", "wisniewska-wiatrak-pomidor-9", "WIŚNIEWSKA-wiatrak-pomidor-9",
    "WISNIEWSKA-wiatrak-pomidor-9", "Wiatrak-Pomidor-niew-Latarnia", "Zofia-Wiatrak-Pomidor-9",
])
def test_wisniewska(password):
    assert codes(password, ZOFIA) == ["personal_data"]
    jan = PersonData(first_name="Jan", last_name="Nowak", identifiers=("jan.nowak@example.com",), album="555")
    assert codes(password, jan) == []  # someone else's name is just a word


@pytest.mark.parametrize("password", [
    "Nowak-Jeziorańska-Wiatrak-9", "nowak-jezioranska-wiatrak-9", "Jeziorańska-Wiatrak-Pomidor",
    "JEZIORANSKA-wiatrak-pomidor", "Wiatrak-Nowak-Pomidor-Latarnia", "nowakjezioranska-wiatrak",
    "Wiatrak-Pomidor-Zior-Latarnia",
])
def test_each_part_of_a_hyphenated_surname(password):
    assert codes(password, ANNA) == ["personal_data"]


def test_fragment_length_comes_from_the_policy():
    jan = PersonData(first_name="Jan", last_name="Kos", identifiers=("jan.kos@example.com",), album="7")
    assert codes("Jan-Kos-Wiatrak-Pomidor-Latarnia", jan) == []  # 3 letters < fragment_length 4
    assert codes("Jan-Kos-Wiatrak-Pomidor-Latarnia", jan, with_rules(fragment_length=3)) == ["personal_data"]
    assert codes("Wiatrak-Łuka-Pomidor-Latarnia") == ["personal_data"]
    assert codes("Wiatrak-Łuka-Pomidor-Latarnia", policy=with_rules(fragment_length=5)) == []
    assert codes("Wiatrak-Łukas-Pomidor-Latarnia", policy=with_rules(fragment_length=5)) == ["personal_data"]


def test_the_rule_can_be_switched_off():
    assert codes("Łukasz-Wiatrak-Pomidor-9", policy=with_rules(forbid_personal_data=False)) == []
    assert "personal_data" not in [r.code for r in evaluate("", LUKASZ, with_rules(forbid_personal_data=False)).rules]


# --- personal data: login, e-mail, alias, album ---------------------------------------------------------

@pytest.mark.parametrize("password", [
    "Wiatrak-Kangur77-Pomidor",  # local part of the private e-mail
    "Wiatrak-Pomidor-kangur-Latarnia",  # ... and a piece of it
    "Wiatrak-Pomidor-s12345-Latarnia",  # the alias s<album>
    "Wiatrak-Pomidor-12345-Latarnia", "Wiatrak-Pomidor-2345-Latarnia",  # album and a fragment of it
    "Wiatrak-Pomidor-Lukasz.Zolkiewski",  # the university e-mail's local part
])
def test_login_email_alias_and_album(password):
    assert codes(password) == ["personal_data"]


def test_each_word_of_a_dotted_local_part():
    zosia = PersonData(first_name="Zofia", last_name="Wiśniewska", identifiers=("zosia.kwiatuszek@example.com",))
    assert codes("Wiatrak-Kwiatuszek-Pomidor", zosia) == ["personal_data"]
    assert codes("Wiatrak-Zosia-Pomidor-Latarnia", zosia) == ["personal_data"]


def test_the_mail_domain_is_not_personal_data():
    assert codes("Wiatrak-Example-Pomidor-Latarnia") == []
    assert codes("Wiatrak-Pomidor-Latarnia-edu-pl") == []


# --- personal data: PESEL ------------------------------------------------------------------------------

def pesel_forms(pesel: str) -> list[str]:
    return [
        f"Wiatrak-Pomidor-{pesel}",
        f"{pesel}-Wiatrak-Pomidor",
        f"Wiatrak{pesel}Pomidor",  # surrounded by letters
        f"WiatrakPomidor{pesel}x",
        f"Wiatrak-Pomidor-{pesel[:6]}-{pesel[6:]}",  # with separators
        f"Wiatrak-Pomidor-{pesel[:3]} {pesel[3:6]} {pesel[6:9]} {pesel[9:]}",
        f"Wiatrak-{pesel[:4]}.Pomidor.{pesel[4:]}",
        f"7Wiatrak-{pesel}-Pomidor9",  # other digits around it
    ]


@pytest.mark.parametrize("password", pesel_forms(ZOFIA_PESEL))
def test_a_typed_pesel_inside_the_password(password):
    """On the reset page the person types the PESEL: PersonData.pesel holds it for the check."""
    typed = PersonData(first_name="Zofia", last_name="Wiśniewska", pesel=ZOFIA_PESEL)
    assert codes(password, typed) == ["personal_data"]


@pytest.mark.parametrize("password", pesel_forms(ZOFIA_PESEL))
def test_a_pesel_recognised_through_its_keyed_hash_only(password):
    """The IdP keeps no PESEL: only HMAC(PESEL, instance key). No plain PESEL and no birth date here, so
    nothing but the hash can recognise it."""
    hashed = PersonData(first_name="Zofia", last_name="Wiśniewska",
                        pesel_hash=keyed_hash(ZOFIA_PESEL, KEY), pesel_key=KEY)
    assert not hashed.pesel and not hashed.birth_date
    assert codes(password, hashed) == ["personal_data"]


def test_another_pesel_or_another_key_is_not_a_match():
    other = make_pesel(dt.date(1985, 11, 29), "0456")  # same birth date, another person
    assert other != ZOFIA_PESEL
    hashed = PersonData(pesel_hash=keyed_hash(ZOFIA_PESEL, KEY), pesel_key=KEY)
    assert codes(f"Wiatrak-Pomidor-{other}", hashed) == []
    assert codes(f"Wiatrak-Pomidor-{ZOFIA_PESEL[:10]}", hashed) == []  # ten digits are not the PESEL
    wrong_key = PersonData(pesel_hash=keyed_hash(ZOFIA_PESEL, "inny-klucz"), pesel_key=KEY)
    assert codes(f"Wiatrak-Pomidor-{ZOFIA_PESEL}", wrong_key) == []
    assert codes(f"Wiatrak-Pomidor-{ZOFIA_PESEL}", PersonData(pesel=other)) == []


def test_the_pesel_hash_scan_is_bounded_on_a_long_run_of_digits():
    hashed = PersonData(pesel_hash=keyed_hash(ZOFIA_PESEL, KEY), pesel_key=KEY)
    policy = with_rules(max_length=1024, min_score=0)
    assert codes("7" * 1000 + ZOFIA_PESEL, hashed, policy) == ["personal_data"]
    assert codes("7" * 1013, hashed, policy) == []


# --- personal data: the birth date ---------------------------------------------------------------------

BORN = PersonData(birth_date="2004-03-15")  # the date only: nothing else can match


@pytest.mark.parametrize("form", ["20040315", "15032004", "150304", "040315", "15.03.2004", "15-03-2004",
                                  "2004-03-15", "15/03/2004", "15.03.04", "2004.03.15"])
@pytest.mark.parametrize("template", ["Wiatrak-Pomidor-Latarnia-{}", "{}-Wiatrak-Pomidor-Latarnia",
                                      "Wiatrak{}Pomidor"])
def test_the_birth_date_in_its_usual_forms(form, template):
    assert codes(template.format(form), BORN) == ["personal_data"]


@pytest.mark.parametrize("password", [
    "Wiatrak-Pomidor-Latarnia-2004", "2004-Wiatrak-Pomidor-Latarnia", "Wiatrak2004Pomidor-Latarnia",
    "Wiatrak-Pomidor-Latarnia-1503",  # day and month alone
    "Wiatrak-Pomidor-Latarnia-20041",
])
def test_a_bare_year_is_not_the_birth_date(password):
    assert codes(password, BORN) == []


def test_the_birth_date_of_an_older_person():
    assert codes("Wiatrak-Pomidor-29.11.1985", ZOFIA) == ["personal_data"]
    assert codes("Wiatrak-Pomidor-19851129", ZOFIA) == ["personal_data"]
    assert codes("Wiatrak-Pomidor-291185", ZOFIA) == ["personal_data"]
    assert codes("Wiatrak-Pomidor-Latarnia-1985", ZOFIA) == []


# --- strength: Polish words with digits ------------------------------------------------------------------

@pytest.mark.parametrize("password", ["słoneczko123456", "kochanie2024", "Kochanie2024", "sloneczko123456",
                                      "Katarzyna1985!", "Krzysztof2000", "Warszawa1234567"])
def test_a_polish_dictionary_word_with_digits_is_weak(password):
    """zxcvbn alone knows English words only; zxcvbn-pl makes these guessable."""
    assert "weak" in codes(password, NOBODY)
    assert "weak" in codes(password, NOBODY, AGH)
    assert evaluate(password, NOBODY, DEFAULT).score < DEFAULT.password.min_score


def test_weakness_alone_under_the_agh_rules():
    # long enough and with all three classes: only the strength check stands between it and acceptance
    assert codes("Kochanie2024", NOBODY, AGH) == ["weak"]
    assert codes("Katarzyna1985!", NOBODY, AGH) == ["weak"]
    assert codes("Słoneczko123456", NOBODY, AGH) == ["weak"]


@pytest.mark.parametrize("password", ["brzeczyszczykiewicz1", "brzęczyszczykiewicz1", "Brzęczyszczykiewicz1",
                                      "BRZĘCZYSZCZYKIEWICZ1"])
def test_the_persons_own_data_lowers_the_score(password):
    """zxcvbn gets the person's words as user inputs, as written and without diacritics (zxcvbn lower-cases
    but does not fold): the own surname is guessable typed either way. The strength meter shows this even
    where a policy does not forbid personal data."""
    person = PersonData(first_name="Grzegorz", last_name="Brzęczyszczykiewicz")
    no_pd = with_rules(forbid_personal_data=False)
    assert codes(password, person, no_pd) == ["weak"]
    assert codes(password, NOBODY, no_pd) == []  # an unknown word to anyone else


def test_concurrent_scoring_keeps_each_persons_data_apart():
    """zxcvbn keeps the user inputs of a call in a module-level dict: without a lock, a thread could score
    one person's password against another person's data (here: Grzegorz's own surname scored "strong")."""
    import sys
    import threading

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads as often as possible
    no_pd = with_rules(forbid_personal_data=False)
    grzegorz = PersonData(first_name="Grzegorz", last_name="Brzęczyszczykiewicz")
    jan = PersonData(first_name="Jan", last_name="Nowak")
    scores: list[int] = []

    def own_surname():
        for _ in range(150):
            scores.append(evaluate("brzeczyszczykiewicz1", grzegorz, no_pd).score)

    def someone_else():
        for _ in range(150):
            evaluate("Wiatrak-Pomidor-Latarnia-Kominek", jan, no_pd)

    threads = [threading.Thread(target=own_surname), threading.Thread(target=someone_else),
               threading.Thread(target=someone_else)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(scores) == 150 and set(scores) == {1}


# --- the common-password blocklist --------------------------------------------------------------------

BLOCKLIST_ONLY = with_rules(min_length=8, min_score=0)  # isolates the blocklist from length and strength


def test_the_blocklist_is_the_top_of_zxcvbns_leaked_password_list():
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    passwords = FREQUENCY_LISTS["passwords"]
    assert BLOCKLIST_SIZE >= 5000  # "at least the top few thousand"
    assert len(policy_mod._blocklist()) == BLOCKLIST_SIZE
    assert {"password1", "iloveyou", "zaq12wsx", "misiaczek", "kochamcie", "agnieszka"} <= policy_mod._blocklist()
    assert passwords.index("qwerty123456789") >= BLOCKLIST_SIZE  # in the list, but below the cut


@pytest.mark.parametrize("password", ["iloveyou", "ILoveYou", "ILOVEYOU", "zaq12wsx", "ZAQ12WSX", "Zaq12wsx",
                                      "misiaczek", "Misiaczek", "KochamCie", "Agnieszka", "1qaz2wsx3edc4rfv",
                                      "monkey12"])
def test_a_common_password_is_refused_whatever_its_case(password):
    assert password.lower() in policy_mod._blocklist()
    assert codes(password, NOBODY, BLOCKLIST_ONLY) == ["common"]


def test_long_common_passwords_under_the_default_policy():
    assert codes("1qaz2wsx3edc4rfv", NOBODY) == ["common", "weak"]
    assert codes("QAZWSXEDCRFVTGB", NOBODY) == ["common", "weak"]


def test_the_blocklist_is_a_whole_password_match():
    assert codes("iloveyou-Wiatrak-Pomidor", NOBODY) == []
    assert codes("Wiatrak-Pomidor-misiaczek", NOBODY) == []
    assert codes("iloveyou7x", NOBODY, BLOCKLIST_ONLY) == []  # not in the list itself


def test_below_the_cut_is_left_to_zxcvbn():
    assert codes("qwerty123456789", NOBODY) == ["weak"]


def test_the_blocklist_can_be_switched_off():
    policy = with_rules(min_length=8, min_score=0, blocklist=False)
    assert codes("iloveyou", NOBODY, policy) == []
    assert not {"common", "context"} & {r.code for r in evaluate("", NOBODY, policy).rules}


# --- context words -----------------------------------------------------------------------------------

def test_context_words_of_a_policy():
    words = context_words(AGH)
    assert {"agh", "krakow", "staszic", "usos", "usosweb", "student"} <= set(words)  # short name, city, own
    assert all(w == policy_mod._fold(w) for w in words)  # folded once, compared folded
    assert set(GENERIC_CONTEXT_WORDS) <= set(context_words(DEFAULT))
    assert all(len(w) >= 3 for w in words)


@pytest.mark.parametrize("password", [
    "Wiatrak-Kraków-Pomidor", "Wiatrak-krakow-Pomidor", "Wiatrak-KRAKÓW-Pomidor", "Wiatrak-KRAKOW-Pomidor",
    "WiatrakKrakowiakPomidor1",  # contained anywhere
    "Wiatrak-AGH-Pomidor", "Wiatrak-agh-Pomidor",  # short name
    "Wiatrak-Staszic-Pomidor",  # the policy's context_words
    "Wiatrak-Usos-Pomidor", "Wiatrak-USOSweb-Pomidor", "Wiatrak-Student-Pomidor", "Wiatrak-Hasło-Pomidor",
])
def test_context_words_anywhere_in_any_case_without_diacritics(password):
    assert codes(password, NOBODY, AGH) == ["context"]


def test_generic_context_words_under_every_policy():
    for word in ("usos", "USOS", "student", "Studentka", "uczelnia", "Hasło", "haslo"):
        assert "context" in codes(f"Wiatrak-{word}-Pomidor-Latarnia", NOBODY), word


def test_mail_domain_label_and_city_are_context_words():
    policy = load_policy(None, {"institution.city": "Wrocław", "institution.mail_domains": ["uwr.edu.pl"]})
    assert codes("Wiatrak-Pomidor-Uwr-Latarnia", NOBODY, policy) == ["context"]
    assert codes("Wiatrak-Pomidor-WROCLAW-Latarnia", NOBODY, policy) == ["context"]
    assert codes("Wiatrak-Pomidor-Wrocław-Latarnia", NOBODY, policy) == ["context"]
    assert codes("Wiatrak-Pomidor-Uwr-Latarnia", NOBODY) == []  # not under another institution


def test_policy_context_words_are_folded_too():
    policy = load_policy(None, {"password.context_words": ["Łódź", "Żak"]})
    for password in ("Wiatrak-Łódź-Pomidor", "Wiatrak-lodz-Pomidor", "Wiatrak-ŁÓDŹ-Pomidor", "Wiatrak-ZAK-Pomidor"):
        assert codes(password, NOBODY, policy) == ["context"], password
    assert codes(STRONG, NOBODY, load_policy(None, {"password.context_words": ["pomidor"]})) == ["context"]


# --- AGH composition rules ---------------------------------------------------------------------------

def test_agh_composition_each_with_its_own_code():
    assert codes("żółwik-pomidor-9", NOBODY, AGH) == ["no_upper"]
    assert codes("ŻÓŁWIK-POMIDOR-9", NOBODY, AGH) == ["no_lower"]
    assert codes("ŻółwikPomidorLatarnia", NOBODY, AGH) == ["no_digit_or_special"]
    assert codes("ŻółwikPomidorLatarnia9", NOBODY, AGH) == []
    assert codes("Żółwik Pomidor Latarnia", NOBODY, AGH) == []  # a space is a special character
    assert codes("Żółwik-Pomidor-Latarnia", NOBODY, AGH) == []
    assert codes("Źrebię-Ćma-Łoś", NOBODY, AGH) == []  # Polish capitals are upper case letters


def test_agh_minimum_of_eight():
    assert "too_short" in codes("Wi4!-Kp", NOBODY, AGH)  # 7
    assert "too_short" not in codes("Wi4!-Kp9", NOBODY, AGH)  # 8
    assert "too_short" not in codes("Żółć-Gęś", NOBODY, AGH)  # 8 characters, 13 bytes


def test_default_policy_has_no_composition_rules():
    assert codes("wiatrak pomidor latarnia", NOBODY) == []
    assert codes("WIATRAK POMIDOR LATARNIA", NOBODY) == []
    assert codes("wiatrakpomidorlatarnia", NOBODY) == []


# --- all at once ---------------------------------------------------------------------------------------

def test_every_violation_is_reported_at_once():
    assert codes("łukasz", LUKASZ, AGH) == ["too_short", "no_upper", "no_digit_or_special", "personal_data", "weak"]
    assert codes("ŁUKASZ", LUKASZ, AGH) == ["too_short", "no_lower", "no_digit_or_special", "personal_data", "weak"]
    assert codes("krakow", LUKASZ, AGH) == ["too_short", "no_upper", "no_digit_or_special", "context", "weak"]
    assert codes("Password1", LUKASZ, AGH) == ["common", "context", "weak"]
    assert codes("Usos-Łukasz", LUKASZ) == ["too_short", "personal_data", "context", "weak"]
    assert codes("", NOBODY, AGH) == ["too_short", "no_lower", "no_upper", "no_digit_or_special", "weak"]


# --- messages in Polish and English ----------------------------------------------------------------------

#: code -> (a password breaking it under AGH with history 5, the English message, the Polish message).
#: Polish wording follows the manuals ("Hasło musi mieć co najmniej 8 znaków").
MESSAGES = {
    "too_long": ("x" * 129, "The password may have at most 128 characters.",
                 "Hasło może mieć najwyżej 128 znaków."),
    "too_short": ("Wi4!-Kp", "The password must have at least 8 characters.",
                  "Hasło musi mieć co najmniej 8 znaków."),
    "no_lower": ("ŻÓŁWIK-POMIDOR-9", "The password must contain a lower case letter.",
                 "Hasło musi zawierać małą literę."),
    "no_upper": ("żółwik-pomidor-9", "The password must contain an upper case letter.",
                 "Hasło musi zawierać wielką literę."),
    "no_digit_or_special": ("ŻółwikPomidorLatarnia", "The password must contain a digit or a special character.",
                            "Hasło musi zawierać cyfrę lub znak specjalny."),
    "personal_data": ("Łukasz-Wiatrak-Pomidor-9",
                      "The password must not contain fragments of your personal data or your login.",
                      "Hasło nie może zawierać fragmentów Twoich danych osobowych ani loginu."),
    "common": ("Zaq12wsx", "This password is on the list of the most commonly used passwords.",
               "To hasło jest na liście najczęściej używanych haseł."),
    "context": ("Wiatrak-Kraków-Pomidor",
                "The password must not contain the university's name or words such as usos or student.",
                "Hasło nie może zawierać nazwy uczelni ani słów takich jak usos czy student."),
    "weak": ("Kochanie2024", "The password is too easy to guess (strength: fair). Add more unusual words.",
             "Hasło jest zbyt łatwe do odgadnięcia (siła hasła: średnie). Dodaj więcej nietypowych słów."),
    "reused": (STRONG, "The password must be different from your previous 5 passwords.",
               "Hasło musi się różnić od poprzednich haseł (ostatnich: 5)."),
}


def _message(app, code: str, lang: str) -> str:
    password, _, _ = MESSAGES[code]
    with app.app_context(), app.test_request_context(f"/?lang={lang}"):
        verdict = evaluate(password, LUKASZ, AGH, seen_before=lambda pw: True)
        [violation] = [v for v in verdict.violations if v.code == code]
        return str(violation.message)


def test_each_example_breaks_its_rule():
    for code, (password, _, _) in MESSAGES.items():
        assert code in [v.code for v in evaluate(password, LUKASZ, AGH, seen_before=lambda pw: True).violations]


@pytest.mark.parametrize("code", list(MESSAGES))
def test_english_message(app, code):
    assert _message(app, code, "en") == MESSAGES[code][1]


@pytest.mark.parametrize("code", list(MESSAGES))
def test_polish_message_is_translated(app, code):
    assert _message(app, code, "pl") != MESSAGES[code][1]


@pytest.mark.parametrize("code", list(MESSAGES))
def test_polish_message_is_worded_like_the_manuals(app, code):
    assert _message(app, code, "pl") == MESSAGES[code][2]


def test_a_violation_is_rendered_in_the_readers_language_when_shown(app):
    """Messages are lazy: one verdict, rendered later in whichever language the page is in."""
    [violation] = check_password("Wi4!-Kp9x", NOBODY, with_rules(AGH.path, min_length=10))
    with force_locale("en"):
        assert str(violation.message) == "The password must have at least 10 characters."
    with force_locale("pl"):
        assert str(violation.message) == "Hasło musi mieć co najmniej 10 znaków."


#: The checklist labels (evaluated when the verdict is made, in the current language).
LABELS = {
    "too_short": "at least 8 characters", "no_lower": "a lower case letter", "no_upper": "an upper case letter",
    "no_digit_or_special": "a digit or a special character",
    "personal_data": "no fragments of your personal data or your login",
    "common": "not a commonly used password",
    "context": "not the university's name or words such as usos or student",
    "weak": "strength at least: strong", "reused": "different from your previous 5 passwords",
}


def _labels(app, lang: str) -> dict[str, str]:
    with app.app_context(), app.test_request_context(f"/?lang={lang}"):
        return {r.code: r.label for r in evaluate("", NOBODY, AGH).rules}


def test_english_checklist_labels(app):
    assert _labels(app, "en") == LABELS


@pytest.mark.parametrize("code", list(LABELS))
def test_polish_checklist_labels_are_translated(app, code):
    assert _labels(app, "pl")[code] != LABELS[code]


# --- the verdict ---------------------------------------------------------------------------------------

def test_the_checklist_lists_the_policys_rules():
    assert [r.code for r in evaluate("", NOBODY, DEFAULT).rules] == [
        "too_short", "personal_data", "common", "context", "weak"]  # NIST: no composition, no history
    assert [r.code for r in evaluate("", NOBODY, AGH).rules] == [
        "too_short", "no_lower", "no_upper", "no_digit_or_special", "personal_data", "common", "context", "weak",
        "reused"]
    bare = with_rules(forbid_personal_data=False, blocklist=False, min_score=0)
    assert [r.code for r in evaluate("", NOBODY, bare).rules] == ["too_short"]
    assert [r.code for r in evaluate("", NOBODY, with_rules(require_upper=True, history=1)).rules] == [
        "too_short", "no_upper", "personal_data", "common", "context", "weak", "reused"]


@pytest.mark.parametrize("password", ["", "kot", "łukasz", "Łukasz-Wiatrak-Pomidor-9", "Password1", "Kochanie2024",
                                      STRONG, "Żółwik Pomidor Latarnia", "iloveyou", "x" * 129])
@pytest.mark.parametrize("policy", [DEFAULT, AGH], ids=["default", "agh"])
def test_ok_iff_no_violations_and_the_checklist_agrees(password, policy):
    verdict = evaluate(password, LUKASZ, policy)
    assert isinstance(verdict, Verdict)
    assert verdict.ok is (not verdict.violations)
    # what the page marks failed is what the server refuses: the same codes, in the same order
    assert [r.code for r in verdict.rules if r.ok is False] == [v.code for v in verdict.violations]
    assert verdict.ok is all(r.ok for r in verdict.rules)
    # a rule the server did not run (history after another failure) is "not checked yet", never ticked
    for r in verdict.rules:
        if r.code in ("reused", "same_as_current"):
            assert r.ok is (None if verdict.violations else True)


@pytest.mark.parametrize("score, label", [(0, "very weak"), (1, "weak"), (2, "fair"), (3, "strong"),
                                          (4, "very strong")])
def test_strength_label_by_score(monkeypatch, score, label):
    monkeypatch.setattr(policy_mod, "_zxcvbn_score", lambda password, user_inputs: score)
    verdict = evaluate(STRONG, NOBODY, DEFAULT)
    assert verdict.score == score and verdict.strength == label
    # min_score 3: "The strength of the password should show: strong"
    assert verdict.ok is (score >= 3)
    assert [v.code for v in verdict.violations] == ([] if score >= 3 else ["weak"])


@pytest.mark.parametrize("score, polish", list(enumerate(["bardzo słabe", "słabe", "średnie", "silne", "bardzo silne"])))
def test_strength_labels_in_polish(app, monkeypatch, score, polish):
    monkeypatch.setattr(policy_mod, "_zxcvbn_score", lambda password, user_inputs: score)
    verdict = evaluate(STRONG, NOBODY, DEFAULT)
    with force_locale("en"):
        english = verdict.strength
    with force_locale("pl"):
        assert verdict.strength == polish != english


def test_real_scores_map_to_labels():
    assert evaluate(STRONG, NOBODY, DEFAULT).strength == "very strong"
    assert evaluate("aaaaaaaaaaaaaaaa", NOBODY, DEFAULT).strength == "very weak"
    assert evaluate("", NOBODY, DEFAULT).strength == "very weak"


def test_min_score_zero_refuses_nothing_for_strength(monkeypatch):
    monkeypatch.setattr(policy_mod, "_zxcvbn_score", lambda password, user_inputs: 0)
    verdict = evaluate("aaaaaaaaaaaaaaaa", NOBODY, with_rules(min_score=0))
    assert verdict.ok and verdict.strength == "very weak"


def test_the_history_check_runs_only_when_everything_else_passes():
    calls = []

    def seen(password):
        calls.append(password)
        return True

    policy = with_rules(history=3)
    assert [v.code for v in evaluate("kot", NOBODY, policy, seen_before=seen).violations] == ["too_short", "weak"]
    assert calls == []
    verdict = evaluate(STRONG, NOBODY, policy, seen_before=seen)
    assert [v.code for v in verdict.violations] == ["reused"] and calls == [STRONG]
    assert evaluate(STRONG, NOBODY, policy, seen_before=lambda pw: False).ok
    assert evaluate(STRONG, NOBODY, policy).ok  # nothing to compare with (the live check of a new account)


# --- cost bounds -----------------------------------------------------------------------------------------

def _forbid(monkeypatch, *names):
    def boom(*args, **kwargs):
        raise AssertionError("must not run on over-long input")

    for name in names:
        monkeypatch.setattr(policy_mod, name, boom)


@pytest.mark.parametrize("password", ["x" * 129, "Łukasz" * 1000, "7" * 5000, "a" * 2_000_000])
def test_max_length_is_refused_before_zxcvbn_and_every_other_rule(monkeypatch, password):
    _forbid(monkeypatch, "_zxcvbn_score", "_personal", "_blocklist", "context_words")
    verdict = evaluate(password, LUKASZ, DEFAULT, seen_before=lambda pw: pytest.fail("history on long input"))
    assert [v.code for v in verdict.violations] == ["too_long"]
    assert [r.code for r in verdict.rules] == ["too_long"]
    assert not verdict.ok


def test_far_too_long_input_is_refused_before_normalising(monkeypatch):
    """NFKC of a 2 MB field costs about a second: input that cannot shrink to max_length is refused raw."""
    _forbid(monkeypatch, "normalise", "_zxcvbn_score")
    assert codes("\ufdfa" * (NFKC_MAX_SHRINK * 128 + 1)) == ["too_long"]
    assert codes("a" * 2_000_000) == ["too_long"]


def test_nfkc_never_shrinks_more_than_the_raw_bound():
    """The bound behind the raw check: no code point has a canonical decomposition longer than
    NFKC_MAX_SHRINK, so an NFKC result is never shorter than len(input) / NFKC_MAX_SHRINK."""
    import sys

    longest = max(len(unicodedata.normalize("NFD", chr(c))) for c in range(sys.maxunicode + 1))
    assert longest <= NFKC_MAX_SHRINK
    # the extreme case: decomposed input that composes to exactly max_length characters is still judged
    decomposed = unicodedata.normalize("NFD", "\u1f82") * 128
    assert len(decomposed) == NFKC_MAX_SHRINK * 128
    assert len(normalise(decomposed)) == 128
    assert "too_long" not in codes(decomposed, NOBODY)


def test_the_maximum_itself_is_allowed():
    assert codes((STRONG * 10)[:128], NOBODY) == []
    assert codes((STRONG * 10)[:129], NOBODY) == ["too_long"]
    assert len("Zażółć-gęślą-jaźń-" * 7) == 126
    assert codes("Zażółć-gęślą-jaźń-" * 7 + "ść", NOBODY) == []  # 128 characters, far more bytes


def test_zxcvbn_scores_a_bounded_prefix(monkeypatch):
    seen = []
    original = zxcvbn_pkg.zxcvbn

    def spy(password, user_inputs=None, **kwargs):
        seen.append(password)
        return original(password, user_inputs=user_inputs, **kwargs)

    monkeypatch.setattr(zxcvbn_pkg, "zxcvbn", spy)
    policy = with_rules(max_length=1024)
    long = (STRONG + "-") * 40
    password = long[:1000]
    verdict = evaluate(password, LUKASZ, policy)  # zxcvbn itself raises above 72 characters
    assert verdict.ok and verdict.score == 4
    assert seen == [password[:ZXCVBN_PREFIX]]
    assert 15 <= ZXCVBN_PREFIX <= 72
    with pytest.raises(ValueError):
        original("a" * 73)  # why the prefix exists
    assert [v.code for v in evaluate("a" * 1000, NOBODY, policy).violations] == ["weak"]
    assert all(len(p) <= ZXCVBN_PREFIX for p in seen)


def test_rules_other_than_strength_see_the_whole_password():
    """Only zxcvbn gets the prefix: personal data past character 64 is still found."""
    policy = with_rules(max_length=1024)
    tail = "x" * 200 + "Łukasz"
    assert codes(STRONG + tail, LUKASZ, policy) == ["personal_data"]
    assert codes(STRONG + "x" * 200 + "Kraków", NOBODY, load_policy(AGH.path, {"password.max_length": 1024})) == [
        "context"]


# --- NFKC ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed, plain", [
    ("Ｗｉａｔｒａｋ-Ｐｏｍｉｄｏｒ-Ｌａｔａｒｎｉａ-４２", "Wiatrak-Pomidor-Latarnia-42"),  # full-width
    ("Deﬁlada-Pomidor-Latarnia-42", "Defilada-Pomidor-Latarnia-42"),  # the "ﬁ" ligature
    ("Z\u0307o\u0301\u0142wik-Pomidor-Latarnia", "Żółwik-Pomidor-Latarnia"),  # decomposed diacritics
    ("Wiatrak\u2002Pomidor\u2002Latarnia", "Wiatrak Pomidor Latarnia"),  # en space
])
def test_compatibility_characters_are_the_same_password(typed, plain):
    assert typed != plain and normalise(typed) == normalise(plain)
    for policy in (DEFAULT, AGH):
        a, b = evaluate(typed, LUKASZ, policy), evaluate(plain, LUKASZ, policy)
        assert (a.ok, a.score, [v.code for v in a.violations]) == (b.ok, b.score, [v.code for v in b.violations])
        assert a.ok
    pw = Passwords(1, 8, 1)
    assert pw.verify(pw.hash(typed), plain) and pw.verify(pw.hash(plain), typed)


def test_compatibility_characters_do_not_hide_personal_data_or_common_passwords():
    assert codes("ｌｕｋａｓｚ-wiatrak-pomidor-latarnia") == ["personal_data"]
    assert codes("Wiatrak-ＵＳＯＳ-Pomidor-Latarnia", NOBODY) == ["context"]
    assert codes("ｉｌｏｖｅｙｏｕ", NOBODY, BLOCKLIST_ONLY) == ["common"]
    assert codes("Wiatrak-Pomidor-" + "".join(chr(0xFF10 + int(d)) for d in ZOFIA_PESEL),
                 PersonData(pesel_hash=keyed_hash(ZOFIA_PESEL, KEY), pesel_key=KEY)) == ["personal_data"]


def test_length_counts_characters_after_nfkc():
    # 14 characters as typed, 15 after the ligature becomes "fi"
    typed = "ﬁ" + "Wiatrak-Pomid"
    assert len(typed) == 14 and len(normalise(typed)) == 15
    assert "too_short" not in codes(typed, NOBODY, with_rules(min_score=0))
    assert "too_short" in codes("Wiatrak-Pomido", NOBODY, with_rules(min_score=0))
    # 15 characters, 30 bytes in UTF-8
    assert "too_short" not in codes("żółćżółćżółćżół", NOBODY, with_rules(min_score=0))


def test_no_truncation_when_hashing():
    pw = Passwords(1, 8, 1)
    long = "".join(chr(ord("a") + i % 26) for i in range(200))
    stored = pw.hash(long)
    assert pw.verify(stored, long)
    assert not pw.verify(stored, long[:199])
    assert not pw.verify(stored, long[:72])
    assert not pw.verify(stored, long + "a")
