"""Answers and completions racing on one link. The PESEL question is the hurdle for whoever got hold of
the link (~10^4 candidates once the birth date is known), so its wrong-answer limit must hold when answers
arrive in parallel, and a link is used once even when the form is sent twice at the same moment.

Each "browser" below is its own app context (its own database session), as two gunicorn workers are.
"""
from __future__ import annotations

from idp.core import accounts, recovery
from idp.extensions import db
from idp.models import Account, ResetRequest
from tests.recovery.helpers import (
    NEW,
    OLD,
    OTHER_PESELS,
    RIGHT_PESEL,
    USER,
    main_text,
    path_of,
    queued_link,
    request_link,
    submit_answer,
    text,
    token_of,
)

MAX_WRONG = 5


def link_token(client) -> str:
    assert request_link(client, USER).status_code == 200
    return token_of(queued_link(USER))


def open_link(app, token: str):
    """A worker that has loaded the link (check_link) and not yet counted the answer: its own session."""
    ctx = app.app_context()
    ctx.push()
    state = recovery.check_link(token, app.extensions["idp.policy"])
    assert state.status == "ok"
    return ctx, state


def answer_in(app, ctx, state, given: str) -> str:
    try:
        return recovery.answer(state, given, app.extensions["idp.policy"], client_ip="192.0.2.1")
    finally:
        db.session.remove()
        ctx.pop()


def row(token: str) -> ResetRequest:
    db.session.expire_all()
    return db.session.scalars(db.select(ResetRequest).order_by(ResetRequest.id.desc())).first()


def test_two_wrong_answers_read_at_the_same_time_both_count(app, client, person):
    token = link_token(client)
    first = open_link(app, token)
    second = open_link(app, token)
    assert answer_in(app, *second, OTHER_PESELS[0]) == recovery.WRONG
    assert answer_in(app, *first, OTHER_PESELS[1]) == recovery.WRONG
    assert row(token).wrong_answers == 2


def test_parallel_wrong_answers_never_exceed_the_limit(app, client, person):
    """As many wrong answers in flight as an attacker likes: at most the limit are ever judged."""
    token = link_token(client)
    opened = [open_link(app, token) for _ in range(MAX_WRONG * 2)]
    outcomes = [answer_in(app, ctx, state, OTHER_PESELS[i % len(OTHER_PESELS)])
                for i, (ctx, state) in enumerate(reversed(opened))]
    assert outcomes.count(recovery.WRONG) == MAX_WRONG - 1
    assert outcomes.count(recovery.KILLED) == 1
    assert row(token).wrong_answers == MAX_WRONG and row(token).ended_reason == "killed"
    assert recovery.check_link(token, app.extensions["idp.policy"]).status == "killed"


def test_the_right_answer_read_before_the_link_was_killed_is_not_accepted_after(app, client, person):
    token = link_token(client)
    late = open_link(app, token)  # loaded while the link was still open
    for pesel in OTHER_PESELS[:MAX_WRONG]:
        ctx, state = open_link(app, token)
        answer_in(app, ctx, state, pesel)
    assert row(token).ended_reason == "killed"
    assert answer_in(app, *late, RIGHT_PESEL) != recovery.RIGHT


def test_the_right_answer_read_before_the_link_was_superseded_is_not_accepted_after(app, client, person):
    token = link_token(client)
    late = open_link(app, token)
    assert request_link(client, USER).status_code == 200  # a newer link ends this one
    assert answer_in(app, *late, RIGHT_PESEL) != recovery.RIGHT


def test_a_link_completed_twice_at_once_sets_the_password_once(app, client, person):
    token = link_token(client)
    policy = app.extensions["idp.policy"]
    first = open_link(app, token)
    second = open_link(app, token)

    def complete(ctx, state, password):
        try:
            recovery.complete(state, password, policy, lang="pl", client_ip="192.0.2.1")
            return "done"
        except recovery.LinkGone:
            db.session.rollback()
            return "gone"
        finally:
            db.session.remove()
            ctx.pop()

    assert complete(*second, NEW) == "done"
    assert complete(*first, "Kwitnące-Jabłonie-Nad-Wisłą-73") == "gone"
    db.session.expire_all()
    assert accounts.verify_password(db.session.get(Account, person.id), NEW)
    assert recovery.check_link(token, policy).status == "used"


def test_a_link_ended_while_the_form_is_handled_shows_its_page_and_changes_nothing(app, client, person, monkeypatch):
    """Over HTTP: between the answer and the password change, another worker ends the link (a newer
    request): the person sees the link's own page, and the password stays as it was."""
    assert request_link(client, USER).status_code == 200
    link = queued_link(USER)
    real = accounts.set_password

    def another_worker_ends_the_link_first(*args, **kwargs):
        with db.engine.begin() as conn:
            conn.execute(db.update(ResetRequest).values(ended_at=ResetRequest.created_at, ended_reason="superseded"))
        return real(*args, **kwargs)

    monkeypatch.setattr(recovery.accounts, "set_password", another_worker_ends_the_link_first)
    r = submit_answer(client, link, RIGHT_PESEL, NEW)
    assert r.status_code == 410, main_text(text(r))
    assert '<a class="button" href="/password/reset">' in text(r)
    monkeypatch.setattr(recovery.accounts, "set_password", real)
    db.session.expire_all()
    account = db.session.get(Account, person.id)
    assert accounts.verify_password(account, OLD) and not accounts.verify_password(account, NEW)
    assert client.get(path_of(link)).status_code == 410
