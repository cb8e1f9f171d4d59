"""Helpers for the reset-by-link tests: fill the pages the way a browser does (GET the form, POST it with
its CSRF token), read the pages' text, and say what a string is in a page's language."""
from __future__ import annotations

import html as html_mod
import re
from urllib.parse import urlsplit

from flask_babel import force_locale, gettext

from idp.core import mail
from idp.extensions import db
from idp.models import OutboxMessage
from tests.conftest import csrf_token
from tests.factories import PASSWORD, PESEL
from tests.smtp_sink import link_in

USER = "lukasz.zolkiewski@student.example.edu.pl"
PRIVATE = "lukasz.z@example.com"
ALIAS = "s12345@student.example.edu.pl"
USER_MASKED = "l***@student.example.edu.pl"
PRIVATE_MASKED = "l***@example.com"
OLD = PASSWORD
NEW = "Parowóz-Klarnet-Zima-1954"
#: Valid PESELs (right length and check digit) that are not the person's.
OTHER_PESELS = ["02070803628", "44051401359", "90090515836", "85042712348", "99121012348", "61101012343"]
RIGHT_PESEL = PESEL


def text(r) -> str:
    return r.get_data(as_text=True)


def t(msgid: str, lang: str = "pl", **kwargs) -> str:
    """What the page shows for `msgid` in `lang` (the catalogue's translation; the msgid in English)."""
    with force_locale(lang):
        return gettext(msgid, **kwargs)


def main_text(page: str) -> str:
    """The visible text of <main>, tags dropped, entities decoded, whitespace collapsed."""
    match = re.search(r"<main[^>]*>(.*?)</main>", page, re.S)
    assert match, "no <main> on the page"
    body = re.sub(r"<[^>]+>", " ", match.group(1))
    return " ".join(html_mod.unescape(body).split())


def flat(text_: str) -> str:
    return " ".join(text_.split())


def shows(page: str, msgid: str, lang: str = "pl", **kwargs) -> bool:
    """Whether <main> says `msgid` in `lang`."""
    return flat(t(msgid, lang, **kwargs)) in main_text(page)


def lang_query(lang: str | None) -> dict:
    return {"lang": lang} if lang else {}


def request_link(client, identifier: str, *, lang: str | None = None):
    """Open /password/reset and send the form with `identifier`; the response to the POST."""
    page = client.get("/password/reset", query_string=lang_query(lang))
    assert page.status_code == 200, text(page)
    return client.post("/password/reset", query_string=lang_query(lang),
                       data={"csrf_token": csrf_token(text(page)), "identifier": identifier})


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def token_of(link: str) -> str:
    return urlsplit(link).path.rsplit("/", 1)[1]


def queued_link(address: str = USER) -> str:
    """The reset link in the newest queued message to `address` (read from the outbox, without sending)."""
    db.session.expire_all()
    row = db.session.scalars(db.select(OutboxMessage).where(OutboxMessage.to_addr == address,
                                                            OutboxMessage.purpose == "reset_link")
                             .order_by(OutboxMessage.id.desc())).first()
    assert row is not None, f"no reset link queued for {address}"
    return link_in(row.body_text)


def deliver() -> mail.DeliveryReport:
    report = mail.deliver_due()
    db.session.expire_all()
    return report


def submit_answer(client, link: str, answer: str | None, new: str = NEW, confirm: str | None = None):
    """Open the link page and send the form: the security answer (None: no answer field sent), the new
    password twice. The response to the POST."""
    page = client.get(path_of(link))
    assert page.status_code == 200, text(page)
    data = {"csrf_token": csrf_token(text(page)), "new_password": new, "confirm": new if confirm is None else confirm}
    if answer is not None:
        data["answer"] = answer
    return client.post(path_of(link), data=data)


def offers_a_new_link(page: str) -> bool:
    return '<a class="button" href="/password/reset">' in page


def outbox_rows(**where) -> list[OutboxMessage]:
    db.session.expire_all()
    query = db.select(OutboxMessage).order_by(OutboxMessage.id)
    for key, value in where.items():
        query = query.where(getattr(OutboxMessage, key) == value)
    return list(db.session.scalars(query))


def answer_field_label(page: str) -> str:
    match = re.search(r'<label for="answer">(.*?)</label>', page, re.S)
    assert match, "no security question on the page"
    return html_mod.unescape(match.group(1)).strip()
