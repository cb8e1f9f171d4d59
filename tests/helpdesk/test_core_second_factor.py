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


def test_only_an_admin_acts_on_a_staff_account(app, person, actor, staffer):  # noqa: F811
    """Otherwise a helpdesk person could add their own address to an admin's account, or set its password,
    and log in as the admin."""
    from idp.core import assisted_recovery, staff
    from idp.extensions import db
    from idp.models import Account

    colleague = person
    staff.grant(colleague, "admin", actor="cli")
    policy = app.extensions["idp.policy"]
    for attempt in (lambda: helpdesk.add_identifier(colleague, "alias", "mine@example.com", actor=actor, reason=WHY),
                    lambda: helpdesk.set_temporary_password(colleague, "Parowóz-Klarnet-Zima-1954", actor=actor,
                                                            reason=WHY, policy=policy),
                    lambda: helpdesk.reset_second_factor(colleague, actor=actor, reason=WHY),
                    lambda: assisted_recovery.issue(colleague, actor=actor, reason=WHY, policy=policy)):
        with pytest.raises(helpdesk.Refused) as caught:
            attempt()
        assert caught.value.code == "staff_account"
    assert helpdesk_events() == []
    staff.grant(staffer, "admin", actor="cli")  # an admin may
    helpdesk.add_identifier(colleague, "alias", "colleague@example.com", actor=actor, reason=WHY)
    assert "colleague@example.com" in [i.value for i in db.session.get(Account, colleague.id).identifiers]
    cli = helpdesk.Actor(name="cli", account_id=None, client_ip=None, via="cli")  # the operator may too
    helpdesk.add_identifier(colleague, "alias", "colleague2@example.com", actor=cli, reason=WHY)
