"""The helpdesk resets a person's second factor (a lost phone and its recovery codes, after an ID check)."""
from __future__ import annotations

import pyotp
import pytest

from idp.core import helpdesk, mfa
from tests.helpdesk.test_core_actions import WHY, actor, helpdesk_events, staffer  # noqa: F401 (fixtures)


def test_reset_forgets_app_and_codes_and_the_person_enrols_again(app, person, actor, clock):  # noqa: F811
    secret, _ = mfa.totp_begin(person)
    assert mfa.totp_confirm(person, pyotp.TOTP(secret).at(clock.now))
    mfa.issue_recovery_codes(person, 10)
    assert mfa.enrolled(person)
    had = helpdesk.reset_second_factor(person, actor=actor, reason=WHY)
    assert had == {"totp": 1, "keys": 0, "recovery_codes": 10}
    assert not mfa.enrolled(person) and mfa.recovery_codes_left(person) == 0
    [event] = helpdesk_events()
    assert event.action == "helpdesk.reset_second_factor" and event.account_id == person.id
    assert event.actor == actor.name and event.data["why"] == WHY
    assert event.data["before"] == had and event.data["after"] == {"totp": 0, "keys": 0, "recovery_codes": 0}
    assert secret not in str(event.data)
    new_secret, _ = mfa.totp_begin(person)  # a fresh enrolment works
    assert new_secret != secret


def test_reset_needs_a_reason_and_something_to_reset(app, person, actor, clock):  # noqa: F811
    secret, _ = mfa.totp_begin(person)
    assert mfa.totp_confirm(person, pyotp.TOTP(secret).at(clock.now))
    with pytest.raises(helpdesk.ReasonRequired):
        helpdesk.reset_second_factor(person, actor=actor, reason="  ")
    assert mfa.enrolled(person) and helpdesk_events() == []
    helpdesk.reset_second_factor(person, actor=actor, reason=WHY)
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.reset_second_factor(person, actor=actor, reason=WHY)
    assert caught.value.code == "no_second_factor"
    assert len(helpdesk_events()) == 1
