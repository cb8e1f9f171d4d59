"""Without Redis, the endpoint rate limits hold across nodes: two `idp serve` nodes (two workers each) over
one database — PostgreSQL when IDP_TEST_DATABASE_URL names one, else one SQLite file — and no Redis, even
when the suite has one. The reset form's per-identifier limit (3 requests per 15 minutes) counts the
requests of both nodes together: with the `limits` library's memory storage each worker would count its
own, and alternating nodes would get 2 × 2 × 3 requests through (idp/core/limit_store.py)."""
from __future__ import annotations

import re
import secrets
import shutil

import pytest
import requests

from tests.databases import postgres_base, postgres_schema
from tests.e2e.conftest import clean_env, run_idp, serve, stop_process_group

pytestmark = pytest.mark.e2e

TYPED = "ktos.nieznany@student.example.edu.pl"  # unknown: the answer is the same, and nothing is mailed


def _reset_request(url: str) -> int:
    browser = requests.Session()
    page = browser.get(f"{url}/password/reset", timeout=10)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    return browser.post(f"{url}/password/reset", data={"csrf_token": token, "identifier": TYPED},
                        timeout=10).status_code


def _database(tmp_path):
    base = postgres_base()
    if base:
        return postgres_schema(base, "idp_limits")
    from contextlib import nullcontext

    return nullcontext(f"sqlite:///{tmp_path / 'shared.db'}")


def test_rate_limits_are_shared_by_every_worker_and_node_without_redis(tmp_path):
    secrets_env = {"IDP_SECRET_KEY": secrets.token_hex(32), "IDP_PESEL_KEY": secrets.token_hex(32)}
    with _database(tmp_path) as database_url:
        nodes, procs = [], []
        try:
            for name in ("a", "b"):
                instance = tmp_path / name
                instance.mkdir()
                env = clean_env(IDP_INSTANCE=str(instance), IDP_DATABASE_URL=database_url, PYTHONUNBUFFERED="1",
                                IDP_MAIL_SERVER="127.0.0.1", IDP_MAIL_PORT="9", **secrets_env)
                if name == "a":
                    run_idp(["init"], env)
                else:
                    shutil.copy(tmp_path / "a" / "oidc-keys.json", instance / "oidc-keys.json")
                proc, url, _port = serve(instance, env, tmp_path / f"{name}.log", workers=2)
                procs.append(proc)
                nodes.append(url)
            answers = [_reset_request(nodes[i % 2]) for i in range(6)]
        finally:
            for proc in procs:
                stop_process_group(proc)
    assert answers == [200, 200, 200, 429, 429, 429], answers
