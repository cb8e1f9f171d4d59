"""Fill a throw-away instance for `idp demo`: schema and keys, the demo people with their passwords, a
helpdesk role, and a registry pointing at the sample apps' ports.

It does what `make run` does with `idp` commands (Makefile, demo-data), in one process: one app instead of
nine command starts. `idp demo` runs it as `python -m idp.demo.seed INSTANCE SERVICES` with the instance's
own environment (no IDP_* of the caller's).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
PEOPLE_CSV = DEMO_DIR / "people.csv"
ELEARNING_CLIENT_ID = "elearning"


@dataclass(frozen=True)
class DemoPerson:
    """A person of people.csv with what the banner says about them."""
    album: str
    login: str
    password: str | None
    temporary: bool = False
    staff_role: str | None = None
    note: str = ""


#: The same people and passwords as `make run` (Makefile, demo-data).
PEOPLE = (
    DemoPerson("12345", "lukasz.zolkiewski@student.example.edu.pl", "Korsarz-Wisła-1987-Tramwaj",
               note="student; also s12345@student.example.edu.pl or album 12345"),
    DemoPerson("T0042", "anna.kowalska@example.edu.pl", "Pociąg-Tatry-Sowa-Klucz-7",
               note="teacher with two more addresses: akowalska@wfis.example.edu.pl, "
                    "anna.kowalska@staff.example.edu.pl"),
    DemoPerson("12347", "olena.shevchenko@student.example.edu.pl", "Tymczasowe-Morze-Latarnia-42", temporary=True,
               note="student with a temporary password: chooses her own at the first login; not in e-learning"),
    DemoPerson("P0007", "marta.nowicka@example.edu.pl", "Biurko-Kalendarz-Herbata-58", staff_role="helpdesk",
               note="helpdesk: /helpdesk asks her to enrol a second factor (any TOTP app) first"),
    DemoPerson("12346", "zofia.wisniewska@student.example.edu.pl", None,
               note="new student: /activate with album 12346, PESEL 05272143213, surname Wiśniewska; "
                    "e-learning only (USOSweb says she has no account there)"),
)


def registry(*, usosweb_url: str, elearning_url: str, elearning_secret: str) -> str:
    """The demo's services.toml: USOSweb (CAS) and e-learning (OIDC) at their URLs of this run."""
    pattern = "^" + re.escape(usosweb_url) + "/.*$"
    return f"""# Written by `idp demo` for this run's ports.
[[service]]
name = "USOSweb"
protocol = "cas"
service_pattern = '{pattern}'
attributes = ["mail", "album", "given_name", "family_name", "role"]
logout_url = "{usosweb_url}/slo"
requires_entitlement = true

[[service]]
name = "e-learning"
protocol = "oidc"
client_id = "{ELEARNING_CLIENT_ID}"
client_secret = "{elearning_secret}"
redirect_uris = ["{elearning_url}/oidc/callback"]
scopes = ["openid", "profile", "email", "university"]
grant_types = ["authorization_code", "refresh_token"]
post_logout_redirect_uris = ["{elearning_url}/logged-out"]
backchannel_logout_uri = "{elearning_url}/oidc/backchannel"
first_party = true
requires_entitlement = true
"""


def seed(instance: Path, services: Path) -> list[str]:
    """Set the instance up; the lines of a report (for a failure's explanation, not shown otherwise)."""
    from flask_migrate import upgrade

    from idp import MIGRATIONS_DIR, create_app
    from idp.core import staff
    from idp.core.accounts import find_any, set_password
    from idp.core.clock import utcnow
    from idp.core.provisioning import import_file
    from idp.core.registry import load_file
    from idp.extensions import db
    from idp.oidc.keys import KeyStore

    app = create_app(instance=instance)
    report = []
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
        KeyStore(Path(app.instance_path)).ensure(utcnow())
        result = import_file(PEOPLE_CSV, app.config["PESEL_KEY"])
        if not result.ok:
            raise SystemExit(f"{PEOPLE_CSV}: " + "; ".join(str(e) for e in result.errors))
        report.append(f"people: added {result.added}")
        loaded = load_file(services)
        report.append(f"services: {', '.join(loaded.added)}")
        policy = app.extensions["idp.policy"]
        for person in PEOPLE:
            account = find_any(person.login)
            if account is None:
                raise SystemExit(f"{person.login} is not in {PEOPLE_CSV}")
            if person.password:
                set_password(account, person.password, policy, temporary=person.temporary, actor="demo")
            if person.staff_role:
                staff.grant(account, person.staff_role, actor="demo")
                db.session.commit()
        report.append("passwords set")
    return report


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m idp.demo.seed INSTANCE SERVICES.toml", file=sys.stderr)
        return 2
    for line in seed(Path(argv[0]), Path(argv[1])):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
