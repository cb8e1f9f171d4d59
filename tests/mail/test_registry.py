"""The registry key of a mail service: `grant_types = ["password_verification"]` on a confidential OIDC
client (docs/mail.md). The example in docs/mail.md loads as it stands."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from idp.core import registry
from idp.core.registry import RegistryError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mail.md"


def test_the_example_in_the_docs_loads():
    block = re.search(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S).group(1)
    [entry] = registry.parse(block, "docs/mail.md")
    assert entry["grant_types"] == ["password_verification"] and "redirect_uris" not in entry


def test_a_public_client_cannot_have_passwords_checked():
    text = '[[service]]\nname = "Poczta"\nprotocol = "oidc"\nclient_id = "dovecot"\ngrant_types = ["password_verification"]\n'
    with pytest.raises(RegistryError, match="password_verification needs a client_secret"):
        registry.parse(text, "services.toml")


def test_a_cas_service_has_no_grant_types():
    text = ('[[service]]\nname = "Poczta"\nprotocol = "cas"\nservice_pattern = "^https://poczta/.*"\n'
            'grant_types = ["password_verification"]\n')
    with pytest.raises(RegistryError, match="unknown key 'grant_types'"):
        registry.parse(text, "services.toml")


def test_a_misspelt_grant_type_is_named():
    text = ('[[service]]\nname = "Poczta"\nprotocol = "oidc"\nclient_id = "dovecot"\nclient_secret = "x"\n'
            'grant_types = ["password-verification"]\n')
    with pytest.raises(RegistryError, match=r"unknown grant type\(s\) \['password-verification'\]"):
        registry.parse(text, "services.toml")


def test_it_combines_with_other_grants():
    text = ('[[service]]\nname = "Webmail"\nprotocol = "oidc"\nclient_id = "webmail"\nclient_secret = "x"\n'
            'redirect_uris = ["https://poczta.example.edu.pl/oauth"]\n'
            'grant_types = ["authorization_code", "refresh_token", "password_verification"]\n')
    [entry] = registry.parse(text, "services.toml")
    assert "password_verification" in entry["grant_types"]
