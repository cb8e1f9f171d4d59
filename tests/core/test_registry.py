"""The service registry: parse and validate the TOML, replace the set, match service URLs in full (RE2)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from idp.core.registry import (
    RegistryError,
    by_name,
    compile_pattern,
    load_file,
    match_cas_service,
    parse,
    replace_all,
)
from idp.extensions import db
from idp.models import Service

DESIGN = Path("/work/shared/DESIGN.md")


def design_example() -> str:
    """The services file printed in DESIGN.md section 2, taken from the document itself."""
    text = DESIGN.read_text(encoding="utf-8")
    match = re.search(r"`idp services load FILE\.toml`.*?```toml\n(.*?)```", text, re.S)
    assert match, "the example is no longer in DESIGN.md"
    return match.group(1)


EXAMPLE = '''
[[service]]
name = "USOSweb"
protocol = "cas"
service_pattern = '^https://usosweb\\.example\\.edu\\.pl/.*'
attributes = ["mail", "album", "given_name", "family_name", "role"]
logout_url = "https://usosweb.example.edu.pl/logout"
requires_entitlement = true
username_attribute = "album"

[[service]]
name = "e-learning"
protocol = "oidc"
client_id = "elearning"
client_secret = "change-me"
redirect_uris = ["https://elearning.example.edu.pl/oidc/callback"]
scopes = ["openid", "profile", "email"]
grant_types = ["authorization_code", "refresh_token"]
post_logout_redirect_uris = ["https://elearning.example.edu.pl/"]
backchannel_logout_uri = "https://elearning.example.edu.pl/oidc/logout"
first_party = true
'''


def error(text: str) -> str:
    with pytest.raises(RegistryError) as info:
        parse(text, "services.toml")
    return str(info.value)


@pytest.mark.skipif(not DESIGN.exists(), reason="DESIGN.md not available")
def test_the_design_example_parses():
    entries = parse(design_example(), "DESIGN.md")
    assert [(e["name"], e["protocol"]) for e in entries] == [("USOSweb", "cas"), ("e-learning", "oidc")]


def test_the_example_loads_both_services(app):
    report = replace_all(parse(EXAMPLE))
    # the app fixture registered USOSweb and Moodle (tests/conftest.py)
    assert report.added == ["e-learning"]
    assert report.changed == ["USOSweb"]
    assert report.removed == ["Moodle"]
    assert report.unchanged == []
    names = sorted(s.name for s in db.session.scalars(sa.select(Service)))
    assert names == ["USOSweb", "e-learning"]
    usos = by_name("USOSweb")
    assert usos.protocol == "cas" and usos.requires_entitlement and usos.username_attribute == "album"
    assert usos.logout_url == "https://usosweb.example.edu.pl/logout"
    assert usos.attributes == ["mail", "album", "given_name", "family_name", "role"]
    elearning = by_name("e-learning")
    assert elearning.client_id == "elearning" and elearning.first_party
    assert elearning.client_secret_hash and "change-me" not in elearning.client_secret_hash
    assert elearning.redirect_uris == ["https://elearning.example.edu.pl/oidc/callback"]


def test_report_of_changes(app):
    replace_all(parse(EXAMPLE))
    again = replace_all(parse(EXAMPLE))
    assert (again.added, again.changed, again.removed, again.unchanged) == ([], [], [], ["USOSweb", "e-learning"])
    changed = replace_all(parse(EXAMPLE.replace('"change-me"', '"rotated"')))
    assert changed.changed == ["e-learning"] and changed.unchanged == ["USOSweb"]
    only_one = replace_all(parse(EXAMPLE.split("[[service]]\nname = \"e-learning\"")[0]))
    assert only_one.removed == ["e-learning"] and only_one.unchanged == ["USOSweb"]
    emptied = replace_all(parse(""))
    assert emptied.removed == ["USOSweb"]
    assert db.session.scalars(sa.select(Service)).all() == []


def test_load_file(app, tmp_path):
    path = tmp_path / "services.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert load_file(path).added == ["e-learning"]
    with pytest.raises(RegistryError, match="cannot read"):
        load_file(tmp_path / "nope.toml")


def test_unknown_key_names_service_and_key():
    message = error(EXAMPLE.replace("first_party = true", "first_party = true\nlogo = \"x.png\""))
    assert "e-learning" in message and "'logo'" in message and "services.toml" in message
    message = error(EXAMPLE.replace("requires_entitlement = true", "requires_entitlements = true"))
    assert "USOSweb" in message and "requires_entitlements" in message
    # an OIDC key on a CAS service is unknown there
    message = error(EXAMPLE.replace("username_attribute = \"album\"", "client_id = \"usos\""))
    assert "USOSweb" in message and "client_id" in message


@pytest.mark.parametrize("pattern", ["^https://(a.pl/", "^https://a\\.pl/(?=x)", "^(a)\\1$", "[z-a]"])
def test_bad_regex(pattern):
    message = error(f"[[service]]\nname = \"Bad\"\nprotocol = \"cas\"\nservice_pattern = '{pattern}'\n")
    assert "Bad" in message and "service_pattern" in message
    assert "b'" not in message  # a readable message, not a bytes repr


@pytest.mark.parametrize("text, words", [
    ('[[service]]\nprotocol = "cas"\nservice_pattern = "x"\n', ["name"]),
    ('[[service]]\nname = "A"\nprotocol = "saml"\n', ["A", "protocol"]),
    ('[[service]]\nname = "A"\nprotocol = "cas"\n', ["A", "service_pattern"]),
    ('[[service]]\nname = "A"\nprotocol = "oidc"\nclient_id = "a"\n', ["A", "redirect_uris"]),
    ('[[service]]\nname = "A"\nprotocol = "cas"\nservice_pattern = "x"\nattributes = "mail"\n', ["A", "attributes"]),
    ('[[service]]\nname = "A"\nprotocol = "cas"\nservice_pattern = "x"\nattributes = ["pesel"]\n', ["A", "pesel"]),
    ('[[service]]\nname = "A"\nprotocol = "cas"\nservice_pattern = "x"\nattributes = [1]\n', ["A", "attributes"]),
    ('[[service]]\nname = "A"\nprotocol = "cas"\nservice_pattern = "x"\nusername_attribute = "name"\n',
     ["A", "username_attribute"]),
    ('[[service]]\nname = "A"\nprotocol = "cas"\nservice_pattern = "x"\ndefault_roles = ["dean"]\n', ["A", "dean"]),
    ('[[service]]\nname = "A"\nprotocol = "cas"\nservice_pattern = "x"\nrequires_entitlement = "yes"\n',
     ["A", "requires_entitlement"]),
    ('[[service]]\nname = "A"\nprotocol = "cas"\nservice_pattern = "x"\n'
     '[[service]]\nname = "A"\nprotocol = "cas"\nservice_pattern = "y"\n', ["A", "twice"]),
    ('[[service]]\nname = "A"\nprotocol = "oidc"\nclient_id = "c"\nredirect_uris = ["https://a.pl/cb"]\n'
     '[[service]]\nname = "B"\nprotocol = "oidc"\nclient_id = "c"\nredirect_uris = ["https://b.pl/cb"]\n',
     ["c", "twice"]),
    ('[[service]]\nname = "A"\nprotocol = "cas"\nservice_pattern = "x"\n'
     '[[service]]\nname = "a"\nprotocol = "cas"\nservice_pattern = "y"\n', ["a", "twice"]),
    ('[[service]]\nname = "A"\nprotocol = "oidc"\nclient_id = "c"\nredirect_uris = []\n',
     ["A", "redirect_uris", "at least one"]),
    ('[[service]]\nname = "A"\nprotocol = "cas"\nservice_pattern = "x"\nlogout_url = "not a url"\n',
     ["A", "logout_url", "not a url"]),
    ('[[service]]\nname = "A"\nprotocol = "cas"\nservice_pattern = "x"\nlogout_url = "https://a..pl/slo"\n',
     ["A", "logout_url"]),
    ('[[service]]\nname = "A"\nprotocol = "oidc"\nclient_id = "c"\nredirect_uris = ["https://a.pl/cb"]\n'
     'backchannel_logout_uri = "also not a url"\n', ["A", "backchannel_logout_uri"]),
    ('[[service]]\nname = "A"\nprotocol = "oidc"\nclient_id = "c"\nclient_secret = ""\n'
     'grant_types = ["client_credentials"]\n', ["A", "client_secret", "empty"]),
    ('[[service]]\nname = "A"\nprotocol = "oidc"\nclient_id = "' + "c" * 101 + '"\nredirect_uris = ["https://a.pl/cb"]\n',
     ["A", "client_id", "100"]),
    ('services = []\n', ["services"]),
    ('service = 5\n', ["service"]),
    ('service = [1, 2]\n', ["service"]),
    ('[[service]\nname = "A"\n', ["not valid TOML"]),
])
def test_invalid_entries(text, words):
    message = error(text)
    for word in words:
        assert word in message, (word, message)


def _register(pattern: str, name: str = "Target") -> None:
    replace_all([{"name": name, "protocol": "cas", "service_pattern": pattern}])


@pytest.mark.parametrize("url, ok", [
    ("https://a.pl/", True),
    ("https://a.pl/kontroler.php?_action=news", True),
    ("https://a.pl.evil.com/", False),
    ("https://a.pl", False),
    ("https://evil.com/?https://a.pl/", False),
    ("xhttps://a.pl/", False),
    ("http://a.pl/", False),
    ("https://aXpl/", False),  # the dot is escaped
    ("https://a.pl/\nhttps://evil.com/", False),
    (" https://a.pl/", False),
])
def test_patterns_match_in_full(app, url, ok):
    _register(r"^https://a\.pl/.*")
    found = match_cas_service(url)
    assert (found is not None) is ok
    if ok:
        assert found.name == "Target"


def test_patterns_without_anchors_still_match_in_full(app):
    _register(r"https://a\.pl/app")
    assert match_cas_service("https://a.pl/app")
    assert match_cas_service("https://a.pl/app/evil") is None
    assert match_cas_service("https://evil.com/https://a.pl/app") is None


def test_only_cas_services_match(app):
    replace_all(parse(EXAMPLE))
    assert match_cas_service("https://elearning.example.edu.pl/oidc/callback") is None
    assert match_cas_service("https://usosweb.example.edu.pl/kontroler.php").name == "USOSweb"
    assert match_cas_service(None) is None and match_cas_service("") is None


def test_a_large_registry_finds_the_service_and_sees_a_reload_at_once(app):
    apps = [{"name": f"app{k}", "protocol": "cas", "service_pattern": rf"^https://app{k}\.uczelnia\.pl/.*$",
             "attributes": ["mail"]} for k in range(120)]
    target = {"name": "Target", "protocol": "cas", "service_pattern": r"^https://a\.pl/.*$",
              "attributes": ["album", "mail"], "allow_proxy": False}
    replace_all(apps + [target])
    found = match_cas_service("https://a.pl/x")
    assert (found.name, found.attributes, found.allow_proxy) == ("Target", ["album", "mail"], False)
    assert match_cas_service("https://app77.uczelnia.pl/").name == "app77"
    # Overlapping patterns: the service registered first wins.
    replace_all(apps + [target, {"name": "Wide", "protocol": "cas", "service_pattern": r"^https://.*$"}])
    assert match_cas_service("https://a.pl/x").name == "Target"
    assert match_cas_service("https://b.pl/").name == "Wide"
    # A reload is seen by the next request: nothing of the registry is kept between lookups.
    replace_all(apps + [dict(target, service_pattern=r"^https://b\.pl/.*$")])
    assert match_cas_service("https://a.pl/x") is None
    assert match_cas_service("https://b.pl/").name == "Target"


@pytest.mark.parametrize("change", ["pattern", "removed"])
def test_a_load_between_the_two_reads_gives_the_registry_as_it_now_is(app, monkeypatch, change):
    """The patterns and the matching row are two reads; `idp services load` may commit between them."""
    import idp.core.registry as registry

    replace_all([{"name": "Old", "protocol": "cas", "service_pattern": r"^https://a\.pl/.*$"},
                 {"name": "Other", "protocol": "cas", "service_pattern": r"^https://(a|b)\.pl/.*$"}])
    seen_before = registry._cas_patterns()
    if change == "pattern":
        replace_all([{"name": "Old", "protocol": "cas", "service_pattern": r"^https://c\.pl/.*$"},
                     {"name": "Other", "protocol": "cas", "service_pattern": r"^https://(a|b)\.pl/.*$"}])
    else:
        replace_all([{"name": "Other", "protocol": "cas", "service_pattern": r"^https://(a|b)\.pl/.*$"}])
    monkeypatch.setattr(registry, "_cas_patterns", lambda: seen_before)  # the first read came before the load
    assert match_cas_service("https://a.pl/x").name == "Other"


def test_every_pattern_of_a_large_registry_stays_compiled():
    import idp.core.registry as registry

    patterns = [rf"^https://svc{k}\.uczelnia\.pl/.*$" for k in range(600)]
    for p in patterns:
        compile_pattern(p, "test")
    misses = registry._compiled.cache_info().misses
    for p in patterns:  # a second lookup walking all 600 in order compiles none of them again
        compile_pattern(p, "test")
    assert registry._compiled.cache_info().misses == misses


def test_overlong_urls_are_refused(app):
    _register(r"^https://a\.pl/.*")
    assert match_cas_service("https://a.pl/" + "x" * 4000)
    assert match_cas_service("https://a.pl/" + "x" * 10_000) is None


def test_catastrophic_backtracking_pattern_is_linear():
    # With Python's re this takes longer than the age of the universe; RE2 answers at once.
    evil = compile_pattern(r"^(a+)+$", "test")
    assert evil.fullmatch("a" * 50_000 + "b") is None
    assert evil.fullmatch("a" * 50_000) is not None


def test_catastrophic_pattern_through_the_registry(app):
    _register(r"^https://x\.pl/(a+)+$")
    assert match_cas_service("https://x.pl/" + "a" * 4000 + "b") is None
    assert match_cas_service("https://x.pl/" + "a" * 4000).name == "Target"


def test_renaming_a_client_keeps_its_client_id(app):
    replace_all(parse(EXAMPLE))
    report = replace_all(parse(EXAMPLE.replace('name = "e-learning"', 'name = "Moodle"')))
    assert report.added == ["Moodle"] and report.removed == ["e-learning"]
    assert by_name("Moodle").client_id == "elearning"
    assert by_name("e-learning") is None
