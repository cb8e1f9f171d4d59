"""A real `idp serve` with two gunicorn workers: /metrics sums every worker's values (prometheus_client's
multiprocess mode in a private folder, removed at exit), and the log holds the app's JSON access lines."""
from __future__ import annotations

import json
import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import clean_env, own_database, run_idp, serve, stop_process_group
from tests.ops.conftest import value

pytestmark = pytest.mark.e2e

STEP = 10  # seconds for each HTTP request


def get(url: str, **headers: str) -> tuple[int, str, dict]:
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=STEP) as resp:
        return resp.status, resp.read().decode(), dict(resp.headers)


def worker_pids(tmpdir) -> set[str]:
    """The processes whose metric files exist in the server's (only) multiprocess folder."""
    folders = list(tmpdir.glob("idp-metrics-*"))
    assert len(folders) == 1, folders
    assert folders[0].stat().st_mode & 0o777 == 0o700
    return {m.group(1) for f in folders[0].iterdir() if (m := re.fullmatch(r"\w+_(\d+)\.db", f.name))}


def test_served_metrics_sum_both_workers(tmp_path):
    instance, tmpdir = tmp_path / "instance", tmp_path / "tmp"
    instance.mkdir()
    tmpdir.mkdir()
    log = tmp_path / "idp-serve.log"
    with own_database("idp_ops") as database_env:
        env = clean_env(IDP_INSTANCE=str(instance), TMPDIR=str(tmpdir), PYTHONUNBUFFERED="1",
                        IDP_ARGON2_TIME_COST="2", IDP_ARGON2_MEMORY_COST="19456", IDP_ARGON2_PARALLELISM="1",
                        # as behind a load balancer: its X-Request-ID is kept (the probes send no
                        # X-Forwarded-For, so the client stays 127.0.0.1, which may read /metrics)
                        IDP_TRUSTED_PROXIES="1", **database_env)
        run_idp(["init"], env)
        proc, url, _port = serve(instance, env, log, workers=2)
        try:
            # Probe in bursts until both workers have answered some (the kernel picks which worker accepts;
            # a burst keeps one busy while the other takes the next connection).
            probes = 0
            deadline = time.monotonic() + 60
            with ThreadPoolExecutor(4) as pool:
                while len(worker_pids(tmpdir)) < 2 or probes < 12:
                    assert time.monotonic() < deadline, f"one worker answered all {probes} probes"
                    for status, body, _headers in pool.map(get, [f"{url}/healthz?ticket=ST-1-secretvalue"] * 4):
                        assert status == 200 and json.loads(body) == {"status": "ok"}
                    probes += 4
            assert len(worker_pids(tmpdir)) == 2
            # Whichever worker answers the scrape, it reports every worker's probes.
            for _ in range(6):
                status, text, headers = get(f"{url}/metrics")
                assert status == 200 and headers["Content-Type"].startswith("text/plain")
                assert value(text, "idp_http_request_duration_seconds_count", endpoint="ops.healthz",
                             method="GET", status="2xx") == probes
                assert "idp_outbox_messages{" in text
                assert "process_cpu_seconds_total" not in text  # the per-process default registry is not used
            status, body, headers = get(f"{url}/readyz", **{"X-Request-ID": "served-check-1"})
            assert status == 200 and json.loads(body)["checks"]["database"]["status"] == "ok"
            assert headers["X-Request-ID"] == "served-check-1"
        finally:
            stop_process_group(proc)
    assert not list(tmpdir.glob("idp-metrics-*")), "the metrics folder outlived the server"
    lines = log.read_text(encoding="utf-8").splitlines()
    # Every line is one JSON object (LOG_FORMAT's default): the master's, the workers' and gunicorn's own.
    records = [json.loads(line) for line in lines if line.strip()]
    assert any(r["logger"] == "idp.serving" and r["message"].startswith("idp serving on") for r in records)
    assert any(r["logger"] == "gunicorn.error" and r["message"].startswith("Booting worker") for r in records)
    access = [json.loads(line) for line in lines if line.startswith("{") and '"idp.access"' in line]
    assert len([a for a in access if a["path"] == "/healthz"]) == probes
    assert [a for a in access if a["request_id"] == "served-check-1"][0]["endpoint"] == "ops.readyz"
    assert "secretvalue" not in log.read_text(encoding="utf-8")  # neither the app nor gunicorn logs queries
