"""Loading and validating policies/*.toml: a malformed policy stops start-up with file, key and reason."""
from __future__ import annotations

import pytest

from idp import create_app
from idp.config import PROJECT_ROOT
from idp.core.policy import DEFAULT_POLICY, SCHEMA, PolicyError, load_policy
from tests.conftest import CHEAP_ARGON2

SHIPPED = sorted((PROJECT_ROOT / "policies").glob("*.toml"))


def write(tmp_path, text: str, name: str = "uczelnia.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_five_policies_ship():
    assert {p.name for p in SHIPPED} >= {"default.toml", "agh.toml", "kpu-krosno.toml", "uni-opole.toml",
                                          "politechnika-opolska.toml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_policy_loads(path):
    policy = load_policy(path)
    assert policy.path == path
    assert policy.name("pl")
    assert policy.identifier_hint("pl") and policy.identifier_hint("en")
    rules = policy.data["password"]
    assert 8 <= rules["min_length"] <= rules["max_length"]
    assert policy.login.canonical_identifier in ("university_email", "private_email", "album")


def test_institution_file_is_merged_over_default():
    agh = load_policy(PROJECT_ROOT / "policies" / "agh.toml")
    assert agh.institution.short_name == "AGH"
    assert agh.password.min_length == 8 and agh.password.require_upper is True
    assert agh.password.max_length == 128  # from default.toml
    assert agh.session.idle_minutes == 120
    assert agh.name("en") == "AGH University of Krakow"
    assert agh.name("pl").startswith("Akademia Górniczo-Hutnicza")
    kpu = load_policy(PROJECT_ROOT / "policies" / "kpu-krosno.toml")
    assert kpu.login.identifiers == ["private_email"]
    assert kpu.password.first_login_change is True
    assert load_policy().path == DEFAULT_POLICY


def test_overrides_are_validated_and_applied():
    policy = load_policy(None, {"password.min_length": 20, "login.identifiers": ["album"]})
    assert policy.password.min_length == 20
    assert policy.login.identifiers == ["album"]
    with pytest.raises(PolicyError, match=r"<overrides>.*password\.min_length"):
        load_policy(None, {"password.min_length": 3})
    with pytest.raises(PolicyError, match=r"unknown key password\.nope"):
        load_policy(None, {"password.nope": 3})


def _error(tmp_path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert str(path) in message, message  # every message names the file
    return message


def test_unknown_section(tmp_path):
    assert "[pasword]" in _error(tmp_path, "[pasword]\nmin_length = 12\n")


def test_top_level_key_outside_a_section(tmp_path):
    assert "min_length" in _error(tmp_path, "min_length = 12\n")


def test_section_that_is_not_a_table(tmp_path):
    assert "[password]" in _error(tmp_path, "password = 12\n")


def test_unknown_key(tmp_path):
    assert "password.minimum_length" in _error(tmp_path, "[password]\nminimum_length = 12\n")


@pytest.mark.parametrize("section, key, value, expected", [
    ("password", "min_length", '"12"', "integer"),
    ("password", "min_length", "12.0", "integer"),
    ("password", "min_length", "true", "integer"),  # a TOML boolean is not a number here
    ("password", "require_upper", "1", "boolean"),
    ("password", "require_upper", '"yes"', "boolean"),
    ("institution", "name", "42", "string"),
    ("institution", "mail_domains", '"agh.edu.pl"', "list of strings"),
    ("institution", "mail_domains", "[1, 2]", "list of strings"),
    ("login", "identifiers", '"university_email"', "list of strings"),
    ("help", "contacts", '["pomoc@example.edu.pl"]', "list of tables"),
    ("session", "idle_minutes", "{ minutes = 5 }", "integer"),
])
def test_wrong_type(tmp_path, section, key, value, expected):
    message = _error(tmp_path, f"[{section}]\n{key} = {value}\n")
    assert f"{section}.{key}" in message and expected in message


@pytest.mark.parametrize("section, key, value", [
    ("password", "min_length", "7"),
    ("password", "min_length", "65"),
    ("password", "max_length", "63"),
    ("password", "max_length", "100000"),
    ("password", "min_score", "5"),
    ("password", "min_score", "-1"),
    ("password", "fragment_length", "2"),
    ("session", "idle_minutes", "0"),
    ("session", "absolute_hours", "100000"),
    ("login", "identifiers", "[]"),
    ("login", "identifiers", '["pesel"]'),
    ("login", "canonical_identifier", '"alias"'),
    ("login", "default_language", '"de"'),
    ("migration", "schedule", '["6:30"]'),
    ("migration", "schedule", '["24:00"]'),
    ("migration", "schedule", '["06:60"]'),
    ("help", "contacts", '[{ label_pl = "Pomoc" }]'),
    ("help", "contacts", '[{ email = "pomoc@example.edu.pl" }]'),
    ("help", "contacts", '[{ label_pl = "Pomoc", email = "pomoc@example.edu.pl", phone = "123" }]'),
    ("help", "contacts", '[{ label_pl = 5, email = "pomoc@example.edu.pl" }]'),
    ("help", "contacts", '[{ label_pl = "Pomoc", url = ["https://pomoc.example.edu.pl"] }]'),
])
def test_out_of_range_or_invalid_value(tmp_path, section, key, value):
    message = _error(tmp_path, f"[{section}]\n{key} = {value}\n")
    assert f"{section}.{key}" in message


def test_min_length_greater_than_max_length_is_refused(tmp_path):
    # min_length is capped at 64 and max_length starts at 64, so min > max cannot pass validation.
    message = _error(tmp_path, "[password]\nmin_length = 80\nmax_length = 64\n")
    assert "password.min_length" in message
    with pytest.raises(PolicyError):
        load_policy(None, {"password.max_length": 64, "password.min_length": 65})
    # the boundary itself is fine
    assert load_policy(write(tmp_path, "[password]\nmin_length = 64\nmax_length = 64\n", "edge.toml")).password.min_length == 64


@pytest.mark.parametrize("text", [
    "[password\nmin_length = 12\n",
    "[password]\nmin_length = \n",
    "[password]\nmin_length = 12\nmin_length = 13\n",
    "[password]\nmin_length = 12 12\n",
])
def test_malformed_toml(tmp_path, text):
    assert "not valid TOML" in _error(tmp_path, text)


def test_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="not found") as info:
        load_policy(tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in str(info.value)


def test_relative_path_inside_the_project_works_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    policy = load_policy("policies/agh.toml")
    assert policy.institution.short_name == "AGH"
    # ... while a relative path that exists where the command runs is taken from there
    (tmp_path / "policies").mkdir()
    write(tmp_path / "policies", '[institution]\nshort_name = "TU"\n', "agh.toml")
    assert load_policy("policies/agh.toml").institution.short_name == "TU"


def test_utf8_policy(tmp_path):
    path = write(tmp_path, '[institution]\nname = "Uniwersytet Łódzki — Żółć"\n')
    assert load_policy(path).name("pl") == "Uniwersytet Łódzki — Żółć"


def test_create_app_stops_on_a_bad_policy(tmp_path, monkeypatch, database_url):
    path = write(tmp_path, "[password]\nmin_length = 3\n")
    monkeypatch.setenv("IDP_POLICY", str(path))
    with pytest.raises(PolicyError) as info:
        create_app({"TESTING": True, "DATABASE_URL": database_url, **CHEAP_ARGON2}, instance=tmp_path / "inst")
    assert str(path) in str(info.value) and "password.min_length" in str(info.value)


def test_create_app_uses_the_chosen_policy(tmp_path, monkeypatch, database_url):
    monkeypatch.setenv("IDP_POLICY", str(PROJECT_ROOT / "policies" / "agh.toml"))
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, **CHEAP_ARGON2}, instance=tmp_path / "inst")
    assert app.extensions["idp.policy"].institution.short_name == "AGH"


def test_a_directory_or_non_utf8_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path)
    path = tmp_path / "cp1250.toml"
    path.write_bytes('[institution]\nname = "Łódź"\n'.encode("cp1250"))
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(path)


# --- what each institution's manual says ------------------------------------------------------------------

def _shipped(name: str):
    return load_policy(PROJECT_ROOT / "policies" / name)


def test_default_policy_follows_nist():
    rules = load_policy().data["password"]
    assert rules["min_length"] >= 15 and rules["max_length"] >= 64  # a password used alone
    assert not (rules["require_lower"] or rules["require_upper"] or rules["require_digit_or_special"])
    assert rules["max_age_days"] == 0  # no periodic expiry
    assert rules["history"] == 0
    assert rules["blocklist"] is True and rules["forbid_personal_data"] is True
    assert rules["first_login_change"] is False
    reset = load_policy().data["reset"]
    assert reset["reveal_unknown_identifier"] is False
    assert reset["send_to"] == ["university_email"]
    assert 5 <= reset["link_lifetime_minutes"]


def test_kpu_krosno_carries_its_manual():
    """"Loginem na platformie jest prywatny mail", "Przy pierwszym logowaniu jest wymagana zmiana hasła",
    the reset link goes to the private e-mail from IRK."""
    kpu = _shipped("kpu-krosno.toml")
    assert kpu.login.identifiers == ["private_email"]
    assert kpu.password.first_login_change is True
    assert kpu.reset.send_to == ["private_email"]
    assert kpu.institution.short_name == "KPU" and kpu.institution.city == "Krosno"
    assert {"kpu", "krosno"} <= set(kpu.password.context_words)
    assert kpu.password.min_length == 15  # the manual prints no length: NIST default


def test_agh_carries_its_manual():
    """"at least 8 characters; a lower case letter, an upper case letter, a digit or a special character;
    not fragments of your personal data or your login; different than previous ones; the strength should
    show: strong"; log in with the university e-mail; reset link to it; "Nie znaleziono użytkownika"."""
    agh = _shipped("agh.toml")
    rules = agh.data["password"]
    assert rules["min_length"] == 8
    assert rules["require_lower"] and rules["require_upper"] and rules["require_digit_or_special"]
    assert rules["forbid_personal_data"] is True
    assert rules["history"] > 0
    assert rules["min_score"] == 3  # "strong"
    assert agh.login.identifiers[0] == "university_email" and "album" not in agh.login.identifiers
    assert agh.login.canonical_identifier == "university_email"
    assert agh.reset.send_to == ["university_email"]
    assert agh.reset.reveal_unknown_identifier is True
    assert agh.reset.security_question == "pesel"
    assert agh.institution.city == "Kraków"


@pytest.mark.parametrize("name", ["uni-opole.toml", "politechnika-opolska.toml"])
def test_opole_universities_reset_to_the_private_address(name):
    policy = _shipped(name)
    assert policy.reset.send_to == ["private_email"]
    assert policy.institution.city == "Opole"
    assert policy.reset.reveal_unknown_identifier is False  # the manuals say nothing: the default
    assert policy.password.min_length == 15 and not policy.password.require_upper


def test_only_kpu_forces_a_first_login_change():
    assert {p.name for p in SHIPPED if load_policy(p).password.first_login_change} == {"kpu-krosno.toml"}


# --- the lifecycle keys -------------------------------------------------------------------------------------

@pytest.mark.parametrize("section, key, value, expected", [
    ("password", "history", "-1", "between 0 and 24"),
    ("password", "history", "25", "between 0 and 24"),
    ("password", "history", '"3"', "integer"),
    ("password", "history", "true", "integer"),
    ("password", "max_age_days", "-1", "between 0 and 3650"),
    ("password", "max_age_days", "3651", "between 0 and 3650"),
    ("password", "max_age_days", "90.0", "integer"),
    ("password", "blocklist", '"yes"', "boolean"),
    ("password", "context_words", '"agh"', "list of strings"),
    ("password", "context_words", "[1]", "list of strings"),
    ("reset", "send_to", "[]", "must not be empty"),
    ("reset", "send_to", '["sms"]', "sms"),
    ("reset", "send_to", '["private_email", "alias"]', "alias"),
    ("reset", "send_to", '"private_email"', "list of strings"),
    ("reset", "security_question", '"mothers_maiden_name"', "pesel"),
    ("reset", "security_question", "false", "string"),
    ("reset", "link_lifetime_minutes", "4", "between 5"),
    ("reset", "link_lifetime_minutes", "100000", "between 5"),
    ("reset", "max_wrong_answers", "0", "between 1 and 20"),
    ("reset", "max_wrong_answers", "21", "between 1 and 20"),
    ("reset", "reveal_unknown_identifier", '"true"', "boolean"),
])
def test_lifecycle_keys_are_validated(tmp_path, section, key, value, expected):
    message = _error(tmp_path, f"[{section}]\n{key} = {value}\n")  # names the file
    assert f"{section}.{key}" in message and expected in message, message


def test_unknown_reset_key(tmp_path):
    assert "reset.send_link_to" in _error(tmp_path, '[reset]\nsend_link_to = ["private_email"]\n')


@pytest.mark.parametrize("section, key, value", [
    ("password", "history", 0), ("password", "history", 24), ("password", "max_age_days", 0),
    ("password", "max_age_days", 3650), ("password", "blocklist", False), ("password", "context_words", []),
    ("reset", "send_to", ["university_email", "private_email"]), ("reset", "security_question", "none"),
    ("reset", "link_lifetime_minutes", 5), ("reset", "max_wrong_answers", 20),
])
def test_lifecycle_key_boundaries_load(tmp_path, section, key, value):
    import json

    path = write(tmp_path, f"[{section}]\n{key} = {json.dumps(value)}\n")
    assert load_policy(path).data[section][key] == value


def test_lifecycle_overrides_are_validated():
    assert load_policy(None, {"password.history": 3}).password.history == 3
    assert load_policy(None, {"password.max_age_days": 90}).password.max_age_days == 90
    with pytest.raises(PolicyError, match=r"<overrides>.*password\.history"):
        load_policy(None, {"password.history": 25})
    with pytest.raises(PolicyError, match=r"<overrides>.*reset\.send_to"):
        load_policy(None, {"reset.send_to": ["sms"]})


def test_every_key_is_documented():
    """The issue: "Document every key in policies/README.md"."""
    readme = (PROJECT_ROOT / "policies" / "README.md").read_text(encoding="utf-8")
    for section, keys in SCHEMA.items():
        assert f"`[{section}]`" in readme, section
        for key in keys:
            assert f"`{key}`" in readme, f"{section}.{key}"


def test_every_key_has_a_default():
    data = load_policy().data
    assert {s: set(k) for s, k in SCHEMA.items()} == {s: set(v) for s, v in data.items()}
