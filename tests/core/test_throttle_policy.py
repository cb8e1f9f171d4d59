"""The brute-force keys of `[login]`: defaults, and a malformed value stops start-up with file, key and reason."""
from __future__ import annotations

import pytest

from idp.config import PROJECT_ROOT
from idp.core.policy import PolicyError, load_policy

SHIPPED = sorted((PROJECT_ROOT / "policies").glob("*.toml"))


def _error(tmp_path, text: str) -> str:
    path = tmp_path / "uczelnia.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert str(path) in message, message
    return message


def test_the_defaults():
    login = load_policy().data["login"]
    assert {k: login[k] for k in ("lockout_threshold", "lockout_minutes", "lockout_max_minutes",
                                  "permanent_lockout_after", "failure_reset_hours", "delay_after", "delay_seconds",
                                  "delay_max_seconds", "address_failures", "address_window_minutes",
                                  "address_block_minutes", "exempt_networks", "address_rate_limit")} == {
        "lockout_threshold": 10, "lockout_minutes": 15, "lockout_max_minutes": 240, "permanent_lockout_after": 0,
        "failure_reset_hours": 12, "delay_after": 3, "delay_seconds": 2, "delay_max_seconds": 60,
        "address_failures": 100, "address_window_minutes": 10, "address_block_minutes": 10, "exempt_networks": [],
        "address_rate_limit": "600/minute"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_no_shipped_policy_locks_for_good(path):
    """Permanent locks are a choice an institution makes, not a default (none of the manuals asks for it)."""
    assert load_policy(path).data["login"]["permanent_lockout_after"] == 0


def test_good_values_load(tmp_path):
    path = tmp_path / "uczelnia.toml"
    path.write_text('[login]\nexempt_networks = ["192.0.2.0/24", "2001:db8::/48", "198.51.100.7"]\n'
                    'address_rate_limit = "10 per second;1000/hour"\npermanent_lockout_after = 3\n'
                    'address_failures = 0\ndelay_after = 0\n', encoding="utf-8")
    login = load_policy(path).data["login"]
    assert login["exempt_networks"][1] == "2001:db8::/48" and login["permanent_lockout_after"] == 3
    assert load_policy(None, {"login.address_rate_limit": ""}).data["login"]["address_rate_limit"] == ""


@pytest.mark.parametrize(("line", "expected"), [
    ('exempt_networks = ["10.0.0.0/33"]', "login.exempt_networks '10.0.0.0/33' is not a network in CIDR notation"),
    ('exempt_networks = ["10.0.0.1/8"]', "has host bits set"),
    ('exempt_networks = ["kampus"]', "login.exempt_networks 'kampus' is not a network"),
    ('exempt_networks = "10.0.0.0/8"', "login.exempt_networks must be a list of strings"),
    ('address_rate_limit = "lots"', "login.address_rate_limit must be a rate limit such as"),
    ('address_rate_limit = "5/fortnight"', "login.address_rate_limit must be a rate limit"),
    ("address_rate_limit = 600", "login.address_rate_limit must be a string"),
    ("delay_seconds = 0", "login.delay_seconds must be between 1 and 3600, got 0"),
    ("failure_reset_hours = 0", "login.failure_reset_hours must be between 1 and 720"),
    ("permanent_lockout_after = -1", "login.permanent_lockout_after must be between 0 and 100"),
    ("address_window_minutes = 0", "login.address_window_minutes must be between 1 and 1440"),
    ("lockout_max_minutes = 10", "login.lockout_minutes is greater than login.lockout_max_minutes"),
    ("delay_max_seconds = 1", "login.delay_seconds is greater than login.delay_max_seconds"),
    ("delay_after = true", "login.delay_after must be an integer"),
])
def test_malformed_values_stop_start_up(tmp_path, line, expected):
    assert expected in _error(tmp_path, f"[login]\n{line}\n")
