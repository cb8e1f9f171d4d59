"""check_password: length, composition (AGH), personal data, zxcvbn — every violation at once."""
from __future__ import annotations

import pytest

from idp.config import PROJECT_ROOT
from idp.core import policy as policy_mod
from idp.core.policy import PersonData, check_password, load_policy

DEFAULT = load_policy()
AGH = load_policy(PROJECT_ROOT / "policies" / "agh.toml")
STRONG = "Wiatrak-Pomidor-Latarnia-42"

LUKASZ = PersonData(
    first_name="Łukasz", last_name="Żółkiewski",
    identifiers=("lukasz.zolkiewski@student.example.edu.pl", "kangur77@example.com", "s12345@student.example.edu.pl"),
    album="12345", birth_date="2004-03-15",
)
ZOFIA = PersonData(first_name="Zofia", last_name="Wiśniewska", identifiers=("zosia.w@example.com",),
                   album="98760", birth_date="1985-11-29")


def codes(password: str, person: PersonData = LUKASZ, policy=DEFAULT) -> list[str]:
    return [v.code for v in check_password(password, person, policy)]


def with_rules(**rules):
    return load_policy(None, {f"password.{k}": v for k, v in rules.items()})


def test_a_strong_passphrase_is_accepted():
    assert codes(STRONG) == []
    assert codes(STRONG, policy=AGH) == []
    assert codes("Korsarz-Wisła-1987-Tramwaj", ZOFIA) == []


def test_too_short():
    assert "too_short" in codes("Wiatrak-Pomi")  # 12 < 15
    assert "too_short" not in codes("Wiatrak-Pomidor")  # exactly 15
    assert "too_short" in codes("Wi4!-Kp", policy=AGH)
    assert "too_short" not in codes("Wi4!-Kp9", policy=AGH)  # exactly 8


def test_length_counts_characters_not_bytes():
    # 15 characters, 30 bytes in UTF-8
    assert "too_short" not in codes("żółćżółćżółćżół", policy=with_rules(min_score=0))


def test_too_long_is_refused_without_zxcvbn(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("zxcvbn must not run on over-long input")

    monkeypatch.setattr(policy_mod, "_zxcvbn_score", boom)
    assert codes("x" * 129) == ["too_long"]
    assert codes("Łukasz" * 1000) == ["too_long"]  # not a personal-data scan either
    assert codes("a" * 10_000_000) == ["too_long"]


def test_max_length_itself_is_allowed_and_long_input_does_not_crash_zxcvbn():
    # zxcvbn raises above 72 characters; the policy allows up to 128
    assert codes("Wiatrak-Pomidor-Latarnia-" * 5 + "xyz") == []  # 128 characters
    assert len("Wiatrak-Pomidor-Latarnia-" * 5 + "xyz") == 128
    assert codes("Wiatrak-Pomidor-Latarnia-" * 3 + "q") == []  # 76 characters
    assert codes("a" * 100) == ["weak"]


def test_agh_composition_rules():
    assert set(codes("wiatrak-pomidor-9", policy=AGH)) == {"no_upper"}
    assert set(codes("WIATRAK-POMIDOR-9", policy=AGH)) == {"no_lower"}
    assert set(codes("WiatrakPomidorLatarnia", policy=AGH)) == {"no_digit_or_special"}
    assert codes("Wiatrak Pomidor Latarnia", policy=AGH) == []  # a space is a special character
    assert codes("WiatrakPomidorLatarnia7", policy=AGH) == []
    assert codes("Żółwik-Ćma-Źrebię", policy=AGH) == []  # Polish letters count as letters of both cases
    # the default (NIST) policy has no composition rules
    assert codes("wiatrak pomidor latarnia") == []


def test_agh_refuses_what_only_composition_admits():
    # "hasło"/"password" are context words too (NIST: context-specific words), and weak
    assert codes("Haslo123!", ZOFIA, AGH) == ["context", "weak"]
    assert codes("Password1!", ZOFIA, AGH) == ["context", "weak"]
    assert codes("Kwiatek123!", ZOFIA, AGH) == ["weak"]


@pytest.mark.parametrize("password", [
    "Łukasz-Wiatrak-Pomidor-9", "lukasz-wiatrak-pomidor-9", "LUKASZ-wiatrak-pomidor-9", "Ukasz-wiatrak-pomidor",
    "Żółkiewski-Wiatrak-Pomidor", "zolkiewski-wiatrak-pomidor", "ZOLKIEWSKI-wiatrak-pomidor",
    "Wiatrak-Pomidor-Żółk-Latarnia", "Wiatrak-Pomidor-kiew-Latarnia",
    "Wiatrak-Pomidor-12345-Latarnia", "Wiatrak-Pomidor-2345-Latarnia",  # album and a fragment of it
    "Wiatrak-Kangur-Pomidor-Latarnia",  # e-mail local part
    "Wiatrak-Pomidor-s12345-Latarnia",  # alias local part
    "Wiatrak-Pomidor-Latarnia-20040315", "Wiatrak-Pomidor-Latarnia-15032004",
    "Wiatrak-Pomidor-Latarnia-150304", "Wiatrak-Pomidor-Latarnia-040315",
    "ｌｕｋａｓｚ-wiatrak-pomidor-latarnia",  # full-width letters: NFKC first
    "Z\u0307o\u0301\u0142kiewski-wiatrak-pomidor",  # decomposed diacritics (NFD input)
])
def test_personal_data_fragments(password):
    """Case- and diacritics-insensitive (Łukasz = lukasz, Żółkiewski = zolkiewski), any 4-character piece."""
    assert "personal_data" in codes(password)


def test_personal_data_of_the_other_person_is_fine():
    jan = PersonData(first_name="Jan", last_name="Nowak", identifiers=("jan.nowak@example.com",), album="555")
    assert "personal_data" not in codes("Wiśniewska-Wiatrak-Pomidor-9", jan)
    assert "personal_data" in codes("Wiśniewska-Wiatrak-Pomidor-9", ZOFIA)
    assert "personal_data" in codes("wisniewska-wiatrak-pomidor-9", ZOFIA)
    assert "personal_data" in codes("WISNIEWSKA-wiatrak-pomidor-9", ZOFIA)


def test_the_domain_of_an_address_is_not_personal_data():
    assert "personal_data" not in codes("Wiatrak-Example-Pomidor-Latarnia")
    assert "personal_data" not in codes("Wiatrak-Pomidor-Student-Latarnia")


def test_short_names_are_below_the_fragment_length():
    jan = PersonData(first_name="Jan", last_name="Kos", identifiers=("jan.kos@example.com",), album="7")
    assert "personal_data" not in codes("Jan-Kos-Wiatrak-Pomidor-Latarnia", jan)
    assert "personal_data" in codes("Jan-Kos-Wiatrak-Pomidor-Latarnia", jan, with_rules(fragment_length=3))


def test_personal_data_rule_can_be_switched_off():
    assert "personal_data" not in codes("Łukasz-Wiatrak-Pomidor-9", policy=with_rules(forbid_personal_data=False))


@pytest.mark.parametrize("password", ["słoneczko123456", "aaaaaaaaaaaaaaaaaaaa",
                                      "qwertyuiopasdfgh", "123456789012345"])
def test_weak_passwords_are_refused(password):
    assert codes(password, ZOFIA) == ["weak"]


def test_a_context_word_is_refused_on_top_of_weakness():
    assert codes("password1234567", ZOFIA) == ["context", "weak"]


def test_min_score_zero_never_refuses_for_strength(monkeypatch):
    # the score still feeds the strength meter, but a policy without a minimum refuses nothing for it
    monkeypatch.setattr(policy_mod, "_zxcvbn_score", lambda *a: 0)
    assert codes("aaaaaaaaaaaaaaaa", ZOFIA, with_rules(min_score=0)) == []


def test_personal_data_lowers_the_zxcvbn_score():
    # zxcvbn is given the person's data too: a name plus a common word is guessable
    person = PersonData(first_name="Grzegorz", last_name="Brzęczyszczykiewicz")
    assert "weak" in codes("brzeczyszczykiewicz1", person, with_rules(forbid_personal_data=False))


def test_every_violation_at_once():
    assert set(codes("łukasz", policy=AGH)) == {"too_short", "no_upper", "no_digit_or_special", "personal_data",
                                                "weak"}
    assert set(codes("ŁUKASZ", policy=AGH)) == {"too_short", "no_lower", "no_digit_or_special", "personal_data",
                                                "weak"}
    assert set(codes("kot")) == {"too_short", "weak"}
    assert set(codes("")) == {"too_short", "weak"}  # zxcvbn itself crashes on ""
    assert set(codes("", policy=AGH)) == {"too_short", "no_lower", "no_upper", "no_digit_or_special", "weak"}


def test_messages_are_readable():
    [v] = check_password("x" * 200, LUKASZ, DEFAULT)
    assert "128" in str(v.message)
    violations = check_password("kot", LUKASZ, DEFAULT)
    assert any("15" in str(v.message) for v in violations)
