"""Login and ticket-validation throughput of a real `idp serve`, and the argon2 cost behind it.

Prints figures and ratios; asserts nothing. Bounded: a fixed number of requests, loopback only.

    .venv/bin/python bench/login_throughput.py [--logins 120] [--concurrency 4]
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
IDP = str(Path(sys.executable).with_name("idp"))
PASSWORD = "Korsarz-Wisła-1987-Tramwaj"
SERVICE = "http://127.0.0.1:9/app/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(instance: Path, people: int) -> None:
    env = {**os.environ, "IDP_INSTANCE": str(instance)}
    rows = ["album,pesel,first_name,last_name,university_email,private_email,role,aliases,birth_date"]
    rows += [f"{10000 + i},,Jan,Testowy{i},jan{i}@student.example.edu.pl,,student,,2001-01-01" for i in range(people)]
    (instance / "people.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (instance / "services.toml").write_text(
        '[[service]]\nname = "bench"\nprotocol = "cas"\nservice_pattern = \'^http://127\\.0\\.0\\.1:9/.*\'\n'
        'attributes = ["mail", "album"]\n', encoding="utf-8")
    subprocess.run([IDP, "init"], env=env, check=True, capture_output=True)
    subprocess.run([IDP, "users", "import", str(instance / "people.csv")], env=env, check=True, capture_output=True)
    subprocess.run([IDP, "services", "load", str(instance / "services.toml")], env=env, check=True,
                   capture_output=True)
    for i in range(people):
        subprocess.run([IDP, "users", "set-password", str(10000 + i)], env=env, input=PASSWORD, text=True,
                       check=True, capture_output=True)


def serve(instance: Path, workers: int):
    port = free_port()
    env = {**os.environ, "IDP_INSTANCE": str(instance), "IDP_BASE_URL": f"http://127.0.0.1:{port}"}
    proc = subprocess.Popen([IDP, "serve", "--port", str(port), "--workers", str(workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(base + "/cas/login", timeout=1)
            return proc, base
        except requests.RequestException:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("idp serve did not start")


def one_login(base: str, album: str) -> tuple[float, float]:
    s = requests.Session()
    t0 = time.perf_counter()
    page = s.get(base + "/cas/login", params={"service": SERVICE}, timeout=10).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    r = s.post(base + "/cas/login", params={"service": SERVICE}, allow_redirects=False, timeout=10,
               data={"csrf_token": token, "username": album, "password": PASSWORD, "service": SERVICE})
    ticket = parse_qs(urlsplit(r.headers["Location"]).query)["ticket"][0]
    t1 = time.perf_counter()
    v = requests.get(base + "/cas/p3/serviceValidate", params={"service": SERVICE, "ticket": ticket}, timeout=10)
    assert "authenticationSuccess" in v.text, v.text
    return t1 - t0, time.perf_counter() - t1


def run(base: str, logins: int, concurrency: int, people: int) -> dict:
    lock = threading.Lock()
    login_t, validate_t = [], []

    def job(i):
        a, b = one_login(base, str(10000 + i % people))
        with lock:
            login_t.append(a)
            validate_t.append(b)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(job, range(logins)))
    wall = time.perf_counter() - start
    return {"per_s": logins / wall, "login_p50": statistics.median(login_t),
            "login_p95": sorted(login_t)[int(0.95 * len(login_t)) - 1],
            "validate_p50": statistics.median(validate_t)}


def argon2_costs() -> None:
    from argon2 import PasswordHasher

    print("argon2id verify cost (one core):")
    for label, t, m, p in (("ASVS minimum t=2 m=19MiB p=1", 2, 19456, 1),
                           ("idp default t=2 m=46MiB p=1", 2, 47104, 1),
                           ("argon2-cffi default t=3 m=64MiB p=4", 3, 65536, 4)):
        ph = PasswordHasher(time_cost=t, memory_cost=m, parallelism=p)
        h = ph.hash(PASSWORD)
        n = 10
        t0 = time.perf_counter()
        for _ in range(n):
            ph.verify(h, PASSWORD)
        print(f"  {label:40s} {1000 * (time.perf_counter() - t0) / n:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logins", type=int, default=120)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--people", type=int, default=20)
    args = ap.parse_args()
    argon2_costs()
    with tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp)
        setup(instance, args.people)
        results = {}
        for workers in (1, os.cpu_count() or 1):
            proc, base = serve(instance, workers)
            try:
                run(base, min(10, args.logins), args.concurrency, args.people)  # warm-up
                results[workers] = run(base, args.logins, args.concurrency, args.people)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
        print(f"\nfull logins (form GET + POST + p3/serviceValidate), {args.logins} logins, "
              f"concurrency {args.concurrency}, SQLite:")
        for workers, r in results.items():
            print(f"  workers={workers}: {r['per_s']:6.1f} logins/s   login p50 {1000 * r['login_p50']:6.1f} ms"
                  f"  p95 {1000 * r['login_p95']:6.1f} ms   validate p50 {1000 * r['validate_p50']:5.1f} ms")
        if len(results) == 2:
            one, many = results.values()
            print(f"  ratio workers={max(results)} / workers=1: {many['per_s'] / one['per_s']:.2f}x")


if __name__ == "__main__":
    main()
