"""Real relying-party software against a real `idp serve`: Apache httpd with mod_auth_cas protecting
/cas-app/ and mod_auth_openidc protecting /oidc-app/ (tests/interop/apache.py), walked by headless
Chromium.

The IdP is set up through its command line only, as in tests/e2e: `idp init`, `idp users import`,
`idp services load` (a CAS service whose `logout_url` is Apache's protected path, and a confidential OIDC
client whose `backchannel_logout_uri` is mod_auth_openidc's `redirect_uri?logout=backchannel`),
`idp users set-password`, `idp serve`. With IDP_TEST_DATABASE_URL / IDP_TEST_REDIS_URL it runs on a
PostgreSQL schema and a Redis prefix of its own.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import (  # browser, new_context, time_limit: the e2e suite's fixtures, used here too
    clean_env,
    new_context,  # noqa: F401
    own_database,
    run_idp,
    serve,
    stop_process_group,
    time_limit,  # noqa: F401
)
from tests.interop import apache as apache_mod

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("IDP_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts")) / "interop"

CAS_SERVICE = "Apache mod_auth_cas"
OIDC_SERVICE = "Apache mod_auth_openidc"
CLIENT_ID = "apache-openidc"
CLIENT_SECRET = "apache-openidc-secret-" + "a" * 40
PASSWORD = "Kwitnące-Jabłonie-Nad-Wisłą-73"
STUDENT = {
    "album": "12345", "pesel": "04231512341", "first_name": "Łukasz", "last_name": "Żółkiewski",
    "university_email": "Lukasz.Zolkiewski@Student.Example.edu.pl", "private_email": "lukasz.z@example.com",
    "role": "student", "aliases": "s12345@student.example.edu.pl",
}
#: What <cas:user> and the `email` claim carry: the university address, lower case.
CANONICAL_USER = "lukasz.zolkiewski@student.example.edu.pl"


@dataclass
class Interop:
    idp_url: str
    idp_log: Path
    apache: apache_mod.Apache
    env: dict[str, str]

    @property
    def cas_app(self) -> str:
        return f"{self.apache.url}/cas-app/"

    @property
    def oidc_app(self) -> str:
        return f"{self.apache.url}/oidc-app/"

    def logs(self) -> str:
        """Apache's and the IdP's logs, for a failure message."""
        try:
            idp = self.idp_log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            idp = "(none)"
        return f"{self.apache.log_text()[-6000:]}\n--- idp serve\n{idp[-3000:]}"


def services_toml(apache_url: str) -> str:
    """The registry entries for the two protected paths of the Apache at `apache_url`."""
    port = apache_url.rsplit(":", 1)[1]
    redirect_uri = f"{apache_url}/oidc-app/redirect_uri"
    return (
        "[[service]]\n"
        f'name = "{CAS_SERVICE}"\n'
        'protocol = "cas"\n'
        f"service_pattern = '^http://127\\.0\\.0\\.1:{port}/cas-app/.*$'\n"
        'attributes = ["mail", "album", "given_name", "family_name"]\n'
        # mod_auth_cas reads the logoutRequest in the protected location itself (CASSSOEnabled).
        f'logout_url = "{apache_url}/cas-app/"\n'
        "\n"
        "[[service]]\n"
        f'name = "{OIDC_SERVICE}"\n'
        'protocol = "oidc"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\n'
        f'redirect_uris = ["{redirect_uri}"]\n'
        'scopes = ["openid", "profile", "email"]\n'
        'grant_types = ["authorization_code", "refresh_token"]\n'
        f'post_logout_redirect_uris = ["{apache_url}/logged-out.html"]\n'
        f'backchannel_logout_uri = "{redirect_uri}?logout=backchannel"\n'
        "first_party = true\n")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def interop(tmp_path_factory, artifacts: Path) -> Iterator[Interop]:
    """A served IdP with one student, and an Apache on a free port whose two paths log in through it."""
    if missing := apache_mod.missing_packages():
        pytest.fail(f"Debian packages missing: {', '.join(missing)} — apt-get install {' '.join(missing)} "
                    "(`make test` installs them; docs/interop.md)", pytrace=False)
    with own_database("idp_interop") as database_env:
        instance = tmp_path_factory.mktemp("interop-idp-instance")
        inputs = tmp_path_factory.mktemp("interop-idp-input")
        people = inputs / "people.csv"
        people.write_text(",".join(STUDENT) + "\n" + ",".join(STUDENT.values()) + "\n", encoding="utf-8")
        env = clean_env(IDP_INSTANCE=str(instance), CI=os.environ.get("CI", "true"),
                        IDP_ARGON2_TIME_COST="2", IDP_ARGON2_MEMORY_COST="19456", IDP_ARGON2_PARALLELISM="1",
                        PYTHONUNBUFFERED="1", **database_env)
        run_idp(["init"], env)
        assert "added 1" in run_idp(["users", "import", str(people)], env)
        out = run_idp(["users", "set-password", STUDENT["album"]], env, stdin=PASSWORD + "\n")
        assert f"password set for {STUDENT['album']}" in out, out
        log = artifacts / "idp-serve.log"
        proc = None
        apache = None
        try:
            proc, idp_url, _port = serve(instance, env, log)
            last_error = ""
            for _attempt in range(3):  # a free port can be taken between choosing and binding it
                port = apache_mod.free_port()
                services = inputs / "services.toml"
                services.write_text(services_toml(f"http://127.0.0.1:{port}"), encoding="utf-8")
                out = run_idp(["services", "load", str(services)], env)
                assert CAS_SERVICE in out and OIDC_SERVICE in out, out
                try:
                    apache = apache_mod.start(port, idp_url=idp_url, client_id=CLIENT_ID,
                                              client_secret=CLIENT_SECRET)
                    break
                except RuntimeError as exc:
                    last_error = str(exc)
                    if "Address already in use" not in last_error:
                        break
            if apache is None:
                pytest.fail(last_error, pytrace=False)
            yield Interop(idp_url=idp_url, idp_log=log, apache=apache, env=env)
        finally:
            if apache is not None:
                apache.stop(keep_logs_in=artifacts)
            if proc is not None:
                stop_process_group(proc)
