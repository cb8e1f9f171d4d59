"""The `idp` command: set up an instance, import people, load services, serve.

Exit codes: 0 ok; 1 the input was refused (bad CSV rows, a password the policy refuses, unknown person);
2 wrong usage or configuration (one line on stderr says why).
"""
from __future__ import annotations

import functools
import getpass
import logging
import os
import sys
from pathlib import Path

import click

from idp.config import ConfigError


class Refused(Exception):
    """Bad input: print the reason, exit 1."""


def _fail(message: str, code: int) -> None:
    first = (message.strip().splitlines() or [""])[0]  # the reason is one line, whatever raised it
    click.echo(f"idp: {first}", err=True)
    sys.exit(code)


def handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from sqlalchemy.exc import OperationalError

        from idp.core.errors import DomainError
        from idp.core.policy import PolicyError
        from idp.core.provisioning import ImportFileError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, PolicyError) as exc:
            _fail(f"configuration error: {exc}", 2)
        except OperationalError as exc:  # unreachable server, unwritable SQLite file ...
            _fail(f"cannot use the database: {exc.orig or exc}", 2)
        except (Refused, ImportFileError, DomainError) as exc:
            _fail(str(exc), 1)
    return wrapper


class Context:
    def __init__(self, instance: str | None):
        self.instance = instance
        self._app = None

    @property
    def app(self):
        if self._app is None:
            from idp import create_app

            self._app = create_app(instance=self.instance)
            from idp.http.observability import configure_logging

            # A person reads a command's warnings: text lines. (`idp serve` workers build their own app,
            # which logs JSON as configured.)
            configure_logging("text")
            # The command's own output is the report; library chatter stays out unless asked for.
            for name in ("idp", "alembic"):
                logging.getLogger(name).setLevel(os.environ.get("IDP_CLI_LOG_LEVEL", "WARNING"))
        return self._app


def _require_schema(app) -> None:
    from sqlalchemy import inspect

    from idp.extensions import db

    if "alembic_version" not in inspect(db.engine).get_table_names():
        raise ConfigError("the database is not initialised: run `idp init` first")
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from idp import MIGRATIONS_DIR

    with db.engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    heads = set(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())
    if current != heads:
        raise ConfigError(f"the database schema is at {', '.join(sorted(current)) or 'nothing'}, this version "
                          f"needs {', '.join(sorted(heads))}: run `idp init` to upgrade it")


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--instance", metavar="DIR", envvar="IDP_INSTANCE",
              help="Instance folder (config idp.toml, SQLite file, keys). Default: IDP_INSTANCE, else ./instance "
                   "(in the current folder).")
@click.pass_context
def main(ctx, instance):
    """idp — central login (CAS 3.0, OpenID Connect) for USOSweb, e-learning and mail.

    Configuration: defaults < INSTANCE/idp.toml < IDP_* environment variables
    (IDP_BASE_URL, IDP_DATABASE_URL, IDP_POLICY, IDP_MAIL_SERVER, IDP_SECRET_KEY, ...).
    """
    ctx.obj = Context(instance)


@main.command()
@pass_ctx
@handle_errors
def init(c: Context):
    """Create or upgrade the database schema, the instance secrets and the OIDC signing keys.

    Safe to run twice: existing keys are kept.
    """
    from flask_migrate import upgrade

    from idp import MIGRATIONS_DIR
    from idp.core.clock import utcnow
    from idp.oidc.keys import KeyStore

    with c.app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
    store = KeyStore(Path(c.app.instance_path))
    created = store.ensure(utcnow())
    click.echo(f"signing keys {'created' if created else 'already present'}: {store.path}")
    click.echo(f"instance ready: {c.app.instance_path}")


@main.group()
def users():
    """People: import the SIS export, set passwords."""


@users.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
@handle_errors
def users_import(c: Context, file: Path):
    """Import FILE, the SIS export (CSV, UTF-8).

    Columns: album,pesel,first_name,last_name,university_email,private_email,role,aliases
    and optionally birth_date (YYYY-MM-DD), entitlements (service names separated by ';').
    Upserts by album number. One bad row and nothing of the file is imported; every bad row is listed.
    """
    from idp.core.provisioning import import_file

    with c.app.app_context():
        _require_schema(c.app)

        def progress(rows):
            if len(rows) < 500:
                return rows
            return click.progressbar(rows, label="importing", file=sys.stderr)

        def wrapped(rows):
            bar = progress(rows)
            if bar is rows:
                yield from rows
                return
            with bar as it:
                yield from it

        result = import_file(file, c.app.config["PESEL_KEY"], progress=wrapped)
        if not result.ok:
            for err in result.errors:
                click.echo(f"{file.name}: {err}", err=True)
            click.echo(f"added 0, updated 0, unchanged 0, rejected {result.rejected}")
            raise Refused(f"nothing imported: {result.rejected} bad row(s) in {file.name}")
        click.echo(f"added {result.added}, updated {result.updated}, unchanged {result.unchanged}, rejected 0")
        if result.left:
            grace = c.app.extensions["idp.policy"].data["migration"]["left_grace_days"]
            click.echo(f"marked as left (missing from this export; can log in {grace} more days): {result.left}")
        if result.linked:
            click.echo(f"upstream logins linked to accounts this import brought (notice mailed): {result.linked}")


@users.command("set-password")
@click.argument("identifier")
@click.option("--temporary", is_flag=True, help="The person must change it at the next login.")
@pass_ctx
@handle_errors
def users_set_password(c: Context, identifier: str, temporary: bool):
    """Set the password of the person IDENTIFIER (album number, e-mail or alias).

    The password is read from standard input (one line) when it is not a terminal; a terminal is asked
    twice without echo. The policy's rules apply; every broken rule is printed. A policy with
    first_login_change makes every password set here temporary.
    """
    from idp.core.accounts import PasswordRejected, find_any, set_password

    if sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat new password: ") != password:
            raise Refused("the passwords do not match")
    else:
        try:  # bytes, decoded here: the locale's decoder would smuggle undecodable bytes in as surrogates
            password = sys.stdin.buffer.readline().decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise Refused("the password is not valid UTF-8") from None
    if not password:
        raise Refused("empty password")
    with c.app.app_context():
        _require_schema(c.app)
        policy = c.app.extensions["idp.policy"]
        account = find_any(identifier)
        if account is None:
            raise Refused(f"no person with the identifier {identifier!r}")
        temporary = temporary or policy.data["password"]["first_login_change"]
        try:
            set_password(account, password, policy, temporary=temporary, actor="cli")
        except PasswordRejected as exc:
            for v in exc.violations:
                click.echo(f"- {v.message}", err=True)
            raise Refused("password refused by the policy") from None
        click.echo(f"password set for {account.album}" + (" (temporary: change at next login)" if temporary else ""))


@main.group()
def services():
    """The registry of relying apps (CAS services, OIDC clients)."""


@services.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
@handle_errors
def services_load(c: Context, file: Path):
    """Replace the registry with the services defined in FILE (TOML, [[service]] tables)."""
    from idp.core.registry import load_file

    with c.app.app_context():
        _require_schema(c.app)
        report = load_file(file)
    for label, names in (("added", report.added), ("changed", report.changed), ("removed", report.removed),
                         ("unchanged", report.unchanged)):
        if names:
            click.echo(f"{label}: {', '.join(names)}")
    click.echo(f"{len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} removed, "
               f"{len(report.unchanged)} unchanged")


@main.group()
def keys():
    """OpenID Connect signing keys (INSTANCE/oidc-keys.json): list, rotate."""


def _key_store(c: Context):
    from idp.config import instance_path
    from idp.oidc.keys import KeyStore

    return KeyStore(instance_path(c.instance))  # no app needed: the file is all there is


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


@keys.command("rotate")
@click.option("--retire-after", metavar="SECONDS", type=click.IntRange(min=1), default=86400, show_default=True,
              help="How long the previous keys stay published so that tokens they signed still verify. "
                   "Default one day: longer than any token lifetime; never set it shorter than the longest one.")
@pass_ctx
@handle_errors
def keys_rotate(c: Context, retire_after: int):
    """Sign with a new generation of keys (RS256, ES256, EdDSA) from now on.

    The previous keys become "retiring": still published in the JWKS until --retire-after seconds from now,
    no longer used to sign. Keys whose retirement time has passed are removed.
    """
    from datetime import timedelta

    from idp.core.clock import utcnow

    store = _key_store(c)
    before = {k.kid for k in store.keys()}
    new = store.rotate(utcnow(), timedelta(seconds=retire_after))
    after = store.keys()
    algs = {k.kid: k.alg for k in after}
    click.echo("new: " + ", ".join(f"{kid} ({algs[kid]})" for kid in new))
    retiring = [k for k in after if k.status == "retiring"]
    if retiring:
        click.echo("retiring: " + ", ".join(f"{k.kid} ({k.alg}, until {_when(k.retire_at)})" for k in retiring))
    removed = sorted(before - set(algs))
    if removed:
        click.echo("removed: " + ", ".join(removed))


@keys.command("list")
@pass_ctx
@handle_errors
def keys_list(c: Context):
    """Show every stored key: kid, algorithm, status, created, retire_at (never key material)."""
    from idp.core.clock import utcnow

    now, stored = utcnow(), _key_store(c).keys()
    click.echo(f"{'kid':<16}  {'alg':<5}  {'status':<8}  {'created':<20}  retire_at")
    for k in stored:
        status = "retired" if k.retired(now) else k.status
        click.echo(f"{k.kid:<16}  {k.alg:<5}  {status:<8}  {_when(k.created_at):<20}  {_when(k.retire_at)}")


@main.group()
def events():
    """Audit events: what happened, to whom, and why."""


@events.command("show")
@click.argument("code")
@pass_ctx
@handle_errors
def events_show(c: Context, code: str):
    """Show the event behind a reference code from an error page (e.g. E1234)."""
    import json

    from idp.core import audit
    from idp.extensions import db
    from idp.models import Account

    with c.app.app_context():
        _require_schema(c.app)
        event = audit.find_by_reference(code)
        if event is None:
            raise Refused(f"no event with the reference code {code!r}")
        account = db.session.get(Account, event.account_id) if event.account_id else None
        click.echo(f"{audit.reference(event)}  {event.at:%Y-%m-%d %H:%M:%S} UTC  {event.action}"
                   + (f"  reason: {event.reason}" if event.reason else ""))
        click.echo(f"  actor: {event.actor}   client: {event.client_ip or '-'}")
        if account is not None:
            click.echo(f"  person: {account.display_name} (album {account.album}, status {account.status})")
        if event.data:
            click.echo("  data: " + json.dumps(event.data, ensure_ascii=False, sort_keys=True))


@main.group()
def audit():
    """The audit log: export it for the university's records."""


def _moment_option(end: bool):
    def parse(_ctx, param, value):
        if value is None:
            return None
        from idp.api.params import parse_moment

        try:
            return parse_moment(value, end=end)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 date and time",
                                     param=param) from None
    return parse


@audit.command("export")
@click.option("--since", metavar="DATE", callback=_moment_option(end=False),
              help="From this moment on (inclusive): YYYY-MM-DD or an ISO 8601 date and time; UTC unless it "
                   "carries an offset.")
@click.option("--until", metavar="DATE", callback=_moment_option(end=True),
              help="Before this moment (exclusive); a bare date includes that whole day.")
@click.option("--action", metavar="PREFIX",
              help="Only actions starting with this, e.g. helpdesk. or login.failed")
@click.option("--account", metavar="IDENTIFIER",
              help="Only events about this person (album number or any address).")
@click.option("--actor", metavar="ACTOR", help="Only events by this actor (a staff address, cli, self ...).")
@click.option("--reason", metavar="CODE", help="Only events with this reason code, e.g. wrong_password.")
@click.option("--output", "-o", metavar="FILE", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write to FILE instead of standard output.")
@pass_ctx
@handle_errors
def audit_export(c: Context, since, until, action, account, actor, reason, output: Path | None):
    """Write audit events as JSON lines (UTF-8, one event per line, oldest first) for the records.

    Each line: id, reference, at (UTC), action, actor, account_id, reason, client_ip, data.
    The count goes to standard error.
    """
    import json

    from idp.core import audit as audit_core

    with c.app.app_context():
        _require_schema(c.app)
        account_id = _person(account).id if account else None
        filters = audit_core.AuditFilter(action=action or None, account_id=account_id, actor=actor or None,
                                         reason=reason or None, since=since, until=until)
        # A file is written beside its name and renamed when complete: never a half export under that name.
        partial = output.with_name(output.name + ".part") if output else None
        try:
            sink = partial.open("wb") if partial else sys.stdout.buffer
        except OSError as exc:
            _fail(f"cannot write {output}: {exc.strerror or exc}", 2)
        count = 0
        try:
            for event in audit_core.iter_events(filters):
                line = json.dumps(audit_core.as_dict(event), ensure_ascii=False, separators=(",", ":"))
                sink.write(line.encode("utf-8") + b"\n")
                count += 1
        except BaseException:
            if partial:
                sink.close()
                partial.unlink(missing_ok=True)
            raise
        if partial:
            sink.close()
            partial.replace(output)
        else:
            sink.flush()
    click.echo(f"exported {count} event(s)" + (f" to {output}" if output else ""), err=True)


@main.group()
def staff():
    """Console roles (helpdesk, admin) and admin API tokens."""


def _person(identifier: str):
    from idp.core import accounts

    account = accounts.find_any(identifier)
    if account is None:
        raise Refused(f"no person with the identifier {identifier!r}")
    return account


@staff.command("grant")
@click.argument("identifier")
@click.argument("role", type=click.Choice(["helpdesk", "admin"]))
@pass_ctx
@handle_errors
def staff_grant(c: Context, identifier: str, role: str):
    """Give the person IDENTIFIER (album number or any address) a console role.

    They enrol a second factor on their first visit to /helpdesk."""
    from idp.core import staff as staff_core

    with c.app.app_context():
        _require_schema(c.app)
        account = _person(identifier)
        changed = staff_core.grant(account, role, actor="cli")
        click.echo(f"{account.display_name} (album {account.album}): "
                   + (f"granted {role}" if changed else f"already has {role}"))


@staff.command("revoke")
@click.argument("identifier")
@click.argument("role", type=click.Choice(["helpdesk", "admin"]))
@pass_ctx
@handle_errors
def staff_revoke(c: Context, identifier: str, role: str):
    """Take a console role away (a person left with no role loses their API tokens too)."""
    from idp.core import staff as staff_core

    with c.app.app_context():
        _require_schema(c.app)
        account = _person(identifier)
        changed = staff_core.revoke(account, role, actor="cli")
        click.echo(f"{account.display_name} (album {account.album}): "
                   + (f"revoked {role}" if changed else f"did not have {role}"))


@staff.command("list")
@pass_ctx
@handle_errors
def staff_list(c: Context):
    """Everyone with a console role."""
    from idp.core import staff as staff_core

    with c.app.app_context():
        _require_schema(c.app)
        members = staff_core.staff_members()
        if not members:
            click.echo("nobody has a console role (idp staff grant IDENTIFIER helpdesk)")
        for account, roles in members:
            click.echo(f"{account.album:<12}  {account.display_name:<32}  {', '.join(roles)}")


@staff.command("token")
@click.argument("identifier")
@click.option("--name", default="script", show_default=True, help="What the token is for (shown in lists).")
@click.option("--days", default=90, show_default=True, type=click.IntRange(0, 3650),
              help="Valid for this many days; 0: until revoked.")
@pass_ctx
@handle_errors
def staff_token(c: Context, identifier: str, name: str, days: int):
    """Create an admin API token acting as the staff person IDENTIFIER; printed once, only its hash is kept."""
    from idp.core import staff as staff_core
    from idp.extensions import db

    with c.app.app_context():
        _require_schema(c.app)
        issued = staff_core.create_token(_person(identifier), name, actor="cli", days=days or None)
        db.session.commit()
        click.echo(issued.secret)
        click.echo(f"token {issued.token.id} ({issued.token.name}), "
                   + (f"expires {_when(issued.token.expires_at)}" if issued.token.expires_at else "no expiry")
                   + "; use it as 'Authorization: Bearer <token>'", err=True)


@main.group()
def throttle():
    """Brute-force protection: see or lift a client address's block (docs/security.md)."""


@throttle.command("address")
@click.argument("address")
@click.option("--lift", is_flag=True, help="Forget the address's failures and lift its block now (audited).")
@click.option("--reason", default="", help="Why (kept in the audit event with --lift).")
@pass_ctx
@handle_errors
def throttle_address(c: Context, address: str, lift: bool, reason: str):
    """Show what is counted against a client ADDRESS (IPv6: its /64); --lift clears it."""
    from idp.core import audit
    from idp.core import throttle as brute_force
    from idp.core.clock import utcnow

    with c.app.app_context():
        _require_schema(c.app)
        now = utcnow()
        state = brute_force.address_state(address, now)
        if state is None:
            raise Refused(f"{address!r} is not an IP address")
        key, counter = state
        shown = key.removeprefix("addr:")
        if counter is None:
            click.echo(f"{shown}: nothing counted")
        else:
            blocked = counter.until is not None and counter.until > now
            click.echo(f"{shown}: {counter.count} failed attempt(s) since {counter.since:%Y-%m-%d %H:%M:%S} UTC, "
                       f"last {counter.last:%H:%M:%S} UTC; "
                       + (f"blocked until {counter.until:%Y-%m-%d %H:%M:%S} UTC" if blocked else "not blocked"))
        if lift:
            brute_force.lift_address_block(address)
            audit.record("address.unblocked", actor="cli", client_ip=shown, reason="lifted_by_operator",
                         data={"reason": reason[:500]} if reason else None)
            click.echo(f"{shown}: cleared")


@main.group()
def mail():
    """The outbox: every message the IdP sends waits there until the SMTP server accepts it."""


@mail.command("send")
@pass_ctx
@handle_errors
def mail_send(c: Context):
    """Send every message that is due now (`idp serve` does this by itself every few seconds)."""
    from idp.core import mail as outbox

    with c.app.app_context():
        _require_schema(c.app)
        report = outbox.deliver_due(limit=10_000)
        counts = outbox.status_counts()
    click.echo(f"sent {report.sent}, to retry {report.retried}, failed for good {report.failed}; "
               f"queue: {counts['queued']} queued, {counts['sent']} sent, {counts['failed']} failed")


@mail.command("status")
@pass_ctx
@handle_errors
def mail_status(c: Context):
    """Queued, sent and failed messages, and the last failures with their reasons."""
    from idp.core import mail as outbox
    from idp.extensions import db
    from idp.models import OutboxMessage

    with c.app.app_context():
        _require_schema(c.app)
        counts = outbox.status_counts()
        click.echo(f"queued {counts['queued']}, sent {counts['sent']}, failed {counts['failed']}")
        rows = db.session.scalars(db.select(OutboxMessage).where(OutboxMessage.status != "sent")
                                  .order_by(OutboxMessage.id.desc()).limit(20))
        for row in rows:
            click.echo(f"  #{row.id} {row.status:6} {row.purpose:16} to {outbox.mask(row.to_addr)} "
                       f"tries {row.attempts}, next {row.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
                       + (f" — {row.last_error}" if row.last_error else ""))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes (default: one per CPU core).")
@pass_ctx
@handle_errors
def serve(c: Context, host: str, port: int, workers: int | None):
    """Serve the IdP with gunicorn (sync workers), never Flask's development server."""
    from idp import serving

    with c.app.app_context():
        _require_schema(c.app)
        from idp.extensions import db

        db.engine.dispose()
    # Other commands keep library chatter out of their report and write text; a server's log is its
    # product: LOG_LEVEL and LOG_FORMAT, in the master as in the workers (and gunicorn's own lines).
    logging.getLogger("idp").setLevel(logging.NOTSET)
    from idp.http.observability import configure_logging

    configure_logging(c.app.config["LOG_FORMAT"])
    logging.getLogger("idp.serving").info("idp serving on http://%s:%s (base URL %s)", host, port,
                                          c.app.config["BASE_URL"])
    serving.run(host, port, workers, instance=c.instance, log_format=c.app.config["LOG_FORMAT"])


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address everything listens on; it is also in every URL, so a browser must reach it.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
              help="The IdP's port. The others default to the next four: USOSweb, e-learning, the mail "
                   "viewer, the SMTP sink.")
@click.option("--usosweb-port", type=click.IntRange(1, 65535), help="USOSweb, the sample CAS app [PORT+1].")
@click.option("--elearning-port", type=click.IntRange(1, 65535),
              help="e-learning, the sample OpenID Connect app [PORT+2].")
@click.option("--mail-port", type=click.IntRange(1, 65535), help="The mail viewer [PORT+3].")
@click.option("--smtp-port", type=click.IntRange(1, 65535), help="The SMTP sink the IdP mails to [PORT+4].")
@click.option("--keep", is_flag=True, help="Keep the temporary instance folder at exit (its path is printed).")
def demo(host: str, port: int, usosweb_port: int | None, elearning_port: int | None, mail_port: int | None,
         smtp_port: int | None, keep: bool):
    """A throw-away IdP with demo people, two sample apps and a mail viewer: try it all.

    Prints the URLs and the demo people's passwords; Ctrl-C stops everything and removes the instance.
    Never touches instance/ nor IDP_INSTANCE, and ignores every IDP_* variable.
    """
    from idp.demo.run import DemoError, Ports, run

    try:
        ports = Ports.after(port, usosweb=usosweb_port, elearning=elearning_port, mailview=mail_port,
                            smtp=smtp_port)
        sys.exit(run(host, ports, keep=keep))
    except DemoError as exc:
        _fail(str(exc), 2)


if __name__ == "__main__":  # pragma: no cover
    main()
