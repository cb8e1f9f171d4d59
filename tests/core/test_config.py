"""Configuration: defaults < instance/idp.toml < IDP_* environment < test overrides; unknown keys stop."""
from __future__ import annotations

import stat

import pytest

from idp import create_app
from idp.config import DEFAULTS, PROJECT_ROOT, ConfigError, instance_path, load
from tests.conftest import CHEAP_ARGON2


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "instance"
    path.mkdir()
    return path


def toml(folder, text: str) -> None:
    (folder / "idp.toml").write_text(text, encoding="utf-8")


def test_defaults_without_a_file(folder):
    cfg = load(folder, environ={})
    assert cfg["BASE_URL"] == DEFAULTS["BASE_URL"]
    assert cfg["DATABASE_URL"] == f"sqlite:///{folder / 'idp.sqlite3'}"
    assert cfg["POLICY"] == str(PROJECT_ROOT / "policies" / "default.toml")
    assert cfg["TICKET_LIFETIME"] == 10
    assert cfg["ARGON2_MEMORY_COST"] >= 19456
    assert cfg["ALLOW_LOOPBACK_CALLBACKS"] is True  # the default base URL is loopback
    assert cfg["SECRET_KEY"] and cfg["PESEL_KEY"] and cfg["SECRET_KEY"] != cfg["PESEL_KEY"]


def test_precedence(folder):
    toml(folder, 'base_url = "https://from-file.example.edu.pl/"\nticket_lifetime = 20\nmail_port = 2525\n'
                 'callback_timeout = 5\n')
    cfg = load(folder, environ={})
    assert cfg["BASE_URL"] == "https://from-file.example.edu.pl"  # trailing slash dropped
    assert (cfg["TICKET_LIFETIME"], cfg["MAIL_PORT"], cfg["CALLBACK_TIMEOUT"]) == (20, 2525, 5)
    assert cfg["ALLOW_LOOPBACK_CALLBACKS"] is False

    env = {"IDP_BASE_URL": "https://from-env.example.edu.pl", "IDP_TICKET_LIFETIME": "30",
           "IDP_CALLBACK_TIMEOUT": "2.5", "IDP_ALLOW_LOOPBACK_CALLBACKS": "yes", "UNRELATED": "x"}
    cfg = load(folder, environ=env)
    assert cfg["BASE_URL"] == "https://from-env.example.edu.pl"
    assert cfg["TICKET_LIFETIME"] == 30
    assert cfg["MAIL_PORT"] == 2525  # still from the file
    assert cfg["CALLBACK_TIMEOUT"] == 2.5
    assert cfg["ALLOW_LOOPBACK_CALLBACKS"] is True

    cfg = load(folder, {"TESTING": True, "TICKET_LIFETIME": 40}, environ=env)
    assert cfg["TICKET_LIFETIME"] == 40
    assert cfg["BASE_URL"] == "https://from-env.example.edu.pl"


def test_precedence_through_create_app(folder, monkeypatch, database_url):
    toml(folder, 'base_url = "https://from-file.example.edu.pl"\nticket_lifetime = 20\nmail_server = "smtp.file"\n'
                 'argon2_memory_cost = 20000\nargon2_time_cost = 3\n')
    monkeypatch.setenv("IDP_TICKET_LIFETIME", "25")
    monkeypatch.setenv("IDP_MAIL_SERVER", "smtp.env")
    monkeypatch.setenv("IDP_DATABASE_URL", database_url)
    app = create_app({"TESTING": True, "MAIL_SERVER": "smtp.test"}, instance=folder)
    assert app.config["BASE_URL"] == "https://from-file.example.edu.pl"
    assert app.config["TICKET_LIFETIME"] == 25
    assert app.config["MAIL_SERVER"] == "smtp.test"
    assert app.config["DATABASE_URL"] == database_url
    assert app.config["ARGON2_MEMORY_COST"] == 20000 and app.config["ARGON2_TIME_COST"] == 3
    assert app.config["SESSION_COOKIE_SECURE"] is True  # https base URL
    assert app.instance_path == str(folder)


def test_instance_folder_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("IDP_INSTANCE", raising=False)
    monkeypatch.chdir(PROJECT_ROOT)
    assert instance_path() == PROJECT_ROOT / "instance"
    monkeypatch.chdir(tmp_path)
    assert instance_path() == tmp_path / "instance"  # ./instance, as the contract says
    monkeypatch.setenv("IDP_INSTANCE", str(tmp_path / "a"))
    assert instance_path() == tmp_path / "a"
    assert instance_path(tmp_path / "b") == tmp_path / "b"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IDP_INSTANCE", "rel")
    assert instance_path() == tmp_path / "rel"


def test_unknown_key_in_the_file_is_named(folder):
    toml(folder, 'base_url = "http://127.0.0.1:8000"\nticket_lifetme = 5\n')
    with pytest.raises(ConfigError, match="ticket_lifetme") as info:
        load(folder, environ={})
    assert str(folder / "idp.toml") in str(info.value)


def test_sections_are_unknown_keys_too(folder):
    toml(folder, "[argon2]\ntime_cost = 3\n")
    with pytest.raises(ConfigError, match="argon2"):
        load(folder, environ={})


@pytest.mark.parametrize("text, key", [
    ('ticket_lifetime = "10"', "ticket_lifetime"),
    ("ticket_lifetime = 10.5", "ticket_lifetime"),
    ("ticket_lifetime = true", "ticket_lifetime"),
    ("base_url = 5", "base_url"),
    ("database_url = 5", "database_url"),
    ('allow_loopback_callbacks = "no"', "allow_loopback_callbacks"),
    ("secret_key = []", "secret_key"),
    ('callback_timeout = "3"', "callback_timeout"),
])
def test_wrong_type_in_the_file(folder, text, key):
    toml(folder, text + "\n")
    with pytest.raises(ConfigError, match=key):
        load(folder, environ={})


def test_malformed_file(folder):
    toml(folder, "base_url = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(folder, environ={})


@pytest.mark.parametrize("name, value", [
    ("IDP_TICKET_LIFETIME", "ten"), ("IDP_MAIL_PORT", "25.0"), ("IDP_CALLBACK_TIMEOUT", "fast"),
    ("IDP_ALLOW_LOOPBACK_CALLBACKS", "maybe"),
])
def test_bad_environment_value_names_the_variable(folder, name, value):
    with pytest.raises(ConfigError, match=name):
        load(folder, environ={name: value})


@pytest.mark.parametrize("env", [
    {"IDP_BASE_URL": "ftp://example.edu.pl"}, {"IDP_BASE_URL": "example.edu.pl"},
    {"IDP_TICKET_LIFETIME": "0"}, {"IDP_TICKET_LIFETIME": "301"}, {"IDP_LOG_LEVEL": "LOUD"},
])
def test_invalid_values(folder, env):
    with pytest.raises(ConfigError, match=next(iter(env))[4:]):
        load(folder, environ=env)


def test_secrets_file_is_private_and_stable(folder):
    first = load(folder, environ={})
    path = folder / "secrets.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text()
    second = load(folder, environ={})
    assert (first["SECRET_KEY"], first["PESEL_KEY"]) == (second["SECRET_KEY"], second["PESEL_KEY"])
    assert path.read_text() == content
    assert len(first["PESEL_KEY"]) >= 32


def test_secrets_folder_is_created(tmp_path):
    cfg = load(tmp_path / "new" / "instance", environ={})
    assert (tmp_path / "new" / "instance" / "secrets.toml").exists()
    assert cfg["PESEL_KEY"]


def test_explicit_secrets_win_over_the_file(folder):
    generated = load(folder, environ={})
    cfg = load(folder, environ={"IDP_SECRET_KEY": "from-env"})
    assert cfg["SECRET_KEY"] == "from-env"
    assert cfg["PESEL_KEY"] == generated["PESEL_KEY"]


def test_explicit_secrets_create_no_file(folder):
    load(folder, environ={"IDP_SECRET_KEY": "a", "IDP_PESEL_KEY": "b"})
    assert not (folder / "secrets.toml").exists()


@pytest.mark.parametrize("text", ["secret_key = \n", 'secret_key = "only-one"\n', "secret_key = 5\npesel_key = 6\n"])
def test_broken_secrets_file_is_a_config_error(folder, text):
    (folder / "secrets.toml").write_text(text)
    with pytest.raises(ConfigError, match="secrets.toml"):
        load(folder, environ={})


def test_unknown_test_override(folder):
    with pytest.raises(ConfigError, match="lowercase"):
        load(folder, {"TESTING": True, "lowercase": 1}, environ={})


def test_create_app_with_cheap_argon2_only_when_testing(folder, database_url):
    with pytest.raises(ConfigError, match="below the minimum"):
        create_app({"DATABASE_URL": database_url, **CHEAP_ARGON2}, instance=folder)
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, **CHEAP_ARGON2}, instance=folder)
    assert app.config["ARGON2_MEMORY_COST"] == 8


@pytest.mark.parametrize("url, ok", [
    ("sqlite:////tmp/x.sqlite3", True), ("postgresql://127.0.0.1/idp", True),
    ("postgresql+psycopg://127.0.0.1/idp", True), ("mysql://127.0.0.1/idp", False), ("idp.sqlite3", False),
])
def test_database_url_scheme(folder, url, ok):
    if ok:
        assert load(folder, environ={"IDP_DATABASE_URL": url})["DATABASE_URL"] == url
    else:
        with pytest.raises(ConfigError, match="DATABASE_URL"):
            load(folder, environ={"IDP_DATABASE_URL": url})
