"""The IdP's benchmarks: every figure next to a reference measured by the same server in the same run.

    .venv/bin/python bench/run.py [--quick] [--duration S] [--only NAME[,NAME]] [--configs ...]

For each configuration (SQLite or PostgreSQL + Redis; 1 or 2 `idp`-served nodes over the same database) it
serves a fresh instance through idp.serving with two bare reference routes (bench/app.py), drives it with wrk
(bench/load.lua, 16 concurrent clients) and prints a table: figure, reference, ratio, target, pass/fail.
The same tables go to bench/results/latest.md. docs/benchmarks.md explains the method and how to read them.

NAME for --only: a configuration (sqlite-1, sqlite-2, pg-redis-1, pg-redis-2, or sqlite / pg-redis) and/or
figures (login, validate, token, introspect, discovery, jwks, load, profile).
Loopback only; every load is bounded in time; the instance, schema and Redis keys are removed afterwards.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import fixtures  # noqa: E402  (bench/ is not a package: run as a script)
import hotspots as spy  # noqa: E402

CLIENTS = 16
CONFIGS = {
    "sqlite-1": ("sqlite", 1),
    "sqlite-2": ("sqlite", 2),
    "pg-redis-1": ("pg-redis", 1),
    "pg-redis-2": ("pg-redis", 2),
}
FIGURES = ("login", "validate", "token", "introspect", "discovery", "jwks", "load", "profile")
#: What a profile of each figure runs: (key, title, wrk scenario, environment, credential kind).
PROFILES = {
    "p3": ("p3", "/cas/p3/serviceValidate (validation load)", "validate",
           {"BENCH_VALIDATE": "/cas/p3/serviceValidate"}, "st"),
    "sv": ("sv", "/cas/serviceValidate (validation load)", "validate", {"BENCH_VALIDATE": "/cas/serviceValidate"},
           "st"),
    "token": ("token", "/oidc/token (token load)", "token", {}, "code"),
    "introspect": ("introspect", "/oidc/introspect (introspection load)", "introspect", {}, None),
    "login": ("login", "login (login load)", "login", {}, None),
    "select": ("select", "bare SELECT (reference)", "get", {"BENCH_PATH": "/_bench/select"}, None),
    "discovery": ("discovery", "discovery", "get", {"BENCH_PATH": "/.well-known/openid-configuration"}, None),
    "jwks": ("jwks", "JWKS", "get", {"BENCH_PATH": "/oidc/jwks"}, None),
}
MIX = "login=2,sv=20,p3=20,token=12,introspect=16,discovery=15,jwks=15"
HZ = os.sysconf("SC_CLK_TCK")
#: The server script (bench/app.py); IDP_BENCH_SERVER swaps in a variant to measure a proposed change.
SERVER_SCRIPT = os.environ.get("IDP_BENCH_SERVER") or str(HERE / "app.py")


# --- processes and CPU accounting ------------------------------------------------------------------------------

def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return sorted(out)


def _machine_busy() -> int:
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    vals = [int(x) for x in cpu]
    return sum(vals) - vals[3] - vals[4]  # everything but idle and iowait


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def workers(self) -> list[int]:
        return children(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def start_nodes(inst: fixtures.Instance, count: int, workers: int) -> list[Node]:
    import requests

    account = fixtures.account_id(inst)
    nodes = []
    try:
        for i in range(count):
            port = free_port()
            log = inst.folder / f"node{i + 1}.log"
            env = {**inst.env, "IDP_BASE_URL": f"http://127.0.0.1:{port}", "IDP_BENCH_ACCOUNT_ID": str(account)}
            with open(log, "ab") as fh:
                proc = subprocess.Popen([sys.executable, SERVER_SCRIPT, "--port", str(port),
                                         "--workers", str(workers)], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            nodes.append(Node(port, proc, log))
        for node in nodes:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"http://{node.target}/_bench/select", timeout=2).ok \
                            and len(node.workers()) >= workers:
                        break
                except requests.RequestException:
                    pass
                if node.proc.poll() is not None or time.monotonic() > deadline:
                    tail = node.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"bench server on port {node.port} did not start:\n{tail}")
                time.sleep(0.2)
        return nodes
    except BaseException:
        for node in nodes:
            node.stop()
        raise


# --- one measurement -------------------------------------------------------------------------------------------

@dataclass
class Run:
    """One wrk run (or the raw argon2 processes): throughput, latency, errors and who used the CPU."""

    name: str
    rate: float = 0.0             # per second (logins/s for the login scenario)
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: dict = field(default_factory=dict)
    exhausted: int = 0
    server_cpu: float = 0.0       # cores the servers used on average
    client_cpu: float = 0.0       # cores the load generator used
    foreign_cpu: float = 0.0      # cores used by anything else on the machine (other people's work)
    kinds: dict = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def server_ms_per_request(self) -> float | None:
        return 1000.0 * self.server_cpu * self.seconds / self.requests if self.requests else None

    def merge(self, other: Run) -> Run:
        """Rounds of the same figure: totals add up; p50 weighted by requests, p99 the worst round's."""
        if not self.requests and not self.seconds:
            return other
        total = self.requests + other.requests
        out = Run(self.name, requests=total, seconds=self.seconds + other.seconds)
        out.rate = (self.rate * self.seconds + other.rate * other.seconds) / out.seconds
        if self.p50_ms is not None and other.p50_ms is not None and total:
            out.p50_ms = (self.p50_ms * self.requests + other.p50_ms * other.requests) / total
        out.p99_ms = max(x for x in (self.p99_ms, other.p99_ms, -1.0) if x is not None)
        if out.p99_ms < 0:
            out.p99_ms = None
        out.errors = {k: self.errors.get(k, 0) + other.errors.get(k, 0) for k in {*self.errors, *other.errors}}
        out.exhausted = self.exhausted + other.exhausted
        for attr in ("server_cpu", "client_cpu", "foreign_cpu"):
            setattr(out, attr, (getattr(self, attr) * self.seconds + getattr(other, attr) * other.seconds)
                    / out.seconds)
        out.kinds = {k: self.kinds.get(k, 0) + other.kinds.get(k, 0) for k in {*self.kinds, *other.kinds}}
        return out


class Meter:
    """CPU used during a measurement: by the servers, by the load generator (our children), by the rest."""

    def __init__(self, nodes: list[Node]):
        self.nodes = nodes

    def __enter__(self):
        self.t0 = time.monotonic()
        self.server0 = sum(_ticks(p) for n in self.nodes for p in n.pids())
        self.machine0 = _machine_busy()
        r = os.times()
        self.own0 = r.children_user + r.children_system + r.user + r.system
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.t0
        server = sum(_ticks(p) for n in self.nodes for p in n.pids()) - self.server0
        machine = _machine_busy() - self.machine0
        r = os.times()
        own = r.children_user + r.children_system + r.user + r.system - self.own0
        span = max(self.seconds, 1e-6)
        self.server_cpu = server / HZ / span
        self.client_cpu = own / span
        self.foreign_cpu = max(0.0, machine / HZ / span - self.server_cpu - self.client_cpu)
        return False


def wrk(name: str, scenario: str, nodes: list[Node], seconds: float, creds: Path, clients: int = CLIENTS,
        **env_extra: str) -> Run:
    """Run bench/load.lua for `seconds` with `clients` connections (one per wrk thread) spread over the nodes."""
    env = {**os.environ, "BENCH_SCENARIO": scenario, "BENCH_TARGETS": ",".join(n.target for n in nodes),
           "BENCH_DIR": str(creds), "BENCH_SERVICE": fixtures.SERVICE, "BENCH_CLIENT_ID": fixtures.CLIENT_ID,
           "BENCH_CLIENT_SECRET": fixtures.CLIENT_SECRET, "BENCH_REDIRECT_URI": fixtures.REDIRECT_URI,
           "BENCH_PASSWORD": fixtures.PASSWORD, "BENCH_MIX": MIX, **env_extra}
    cmd = ["wrk", "-t", str(clients), "-c", str(clients), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(HERE / "load.lua"), f"http://{nodes[0].target}/"]
    with Meter(nodes) as m:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result ({name}): {out.stderr.strip() or out.stdout.strip()}")
    data = json.loads(line[len("BENCHJSON "):])
    secs = data["duration_us"] / 1e6
    run = Run(name, requests=data["requests"], seconds=secs)
    run.rate = (data["logins"] if scenario == "login" else data["requests"]) / secs
    run.p50_ms, run.p99_ms = data["p50"] / 1000, data["p99"] / 1000
    run.errors = {k: data[k] for k in ("bad", "non2xx", "connect", "read", "write", "timeout") if data[k]}
    run.exhausted = data["exhausted"]
    run.kinds = data["kinds"]
    run.server_cpu, run.client_cpu, run.foreign_cpu = m.server_cpu, m.client_cpu, m.foreign_cpu
    return run


ARGON2_WORKER = """
import sys, time
from argon2 import PasswordHasher
from idp.core.policy import normalise
t, m, p, start, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
if sys.argv[6] == "kept":
    from idp.core.passwords import keep_hashing_memory
    if not keep_hashing_memory(m):  # as the workers: the memory is mapped afresh where glibc refuses
        print("refused", file=sys.stderr)
stored, password = sys.stdin.read().split("\\n")[:2]
ph = PasswordHasher(time_cost=t, memory_cost=m, parallelism=p)
pw = normalise(password)
while time.time() < start:
    time.sleep(0.005)
n, end = 0, start + seconds
while time.time() < end:
    ph.verify(stored, pw)
    n += 1
print(n, time.time() - start)
"""


def argon2_rate(cfg: dict, processes: int, seconds: float, nodes: list[Node], *, kept: bool = False) -> Run:
    """Raw argon2id verifications per second: `processes` processes verifying the stored hash for `seconds`,
    with the served instance's parameters (the same work a login's verify does, without the web). `kept`:
    with the working memory kept between verifications, as `idp serve`'s workers do
    (idp.core.passwords.keep_hashing_memory) — the like-for-like reference; without it, argon2-cffi as any
    program calls it (the memory mapped afresh each time)."""
    start = time.time() + 1.5  # every process has imported argon2 by then
    args = [str(cfg["time_cost"]), str(cfg["memory_cost"]), str(cfg["parallelism"]), repr(start), str(seconds),
            "kept" if kept else "fresh"]
    procs = [subprocess.Popen([sys.executable, "-c", ARGON2_WORKER, *args], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(processes)]
    for p in procs:
        p.stdin.write(cfg["hash"] + "\n" + fixtures.PASSWORD + "\n")
        p.stdin.close()
    while time.time() < start:
        time.sleep(0.01)
    with Meter(nodes) as m:
        results = [p.stdout.read().split() for p in procs]
        for p in procs:
            p.wait()
    count = sum(int(r[0]) for r in results)
    secs = max(float(r[1]) for r in results)
    run = Run("argon2 kept" if kept else "argon2", rate=count / secs, requests=count, seconds=secs)
    run.client_cpu, run.foreign_cpu = m.client_cpu, m.foreign_cpu
    return run


# --- one configuration -----------------------------------------------------------------------------------------

@dataclass
class Row:
    figure: str
    run: Run
    reference: str = ""
    ref: Run | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""
    rounds: list[float] = field(default_factory=list)   # the ratio in each round (figure ÷ its own reference)

    @property
    def spread(self) -> tuple[float, float] | None:
        """The lowest and highest per-round ratio: how far this machine's noise moves the figure."""
        return (min(self.rounds), max(self.rounds)) if len(self.rounds) > 1 else None

    @property
    def ratio(self) -> float | None:
        if self.ref is None or not self.ref.rate:
            return None
        return self.run.rate / self.ref.rate

    @property
    def cpu_ratio(self) -> float | None:
        """The same ratio from the servers' CPU time per request (reference ÷ figure): steadier than throughput
        on a machine other people's work shares, blind to time spent waiting (fsync, another process)."""
        if self.ref is None or self.figure.startswith("login"):
            return None
        mine, theirs = self.run.server_ms_per_request, self.ref.server_ms_per_request
        if not mine or not theirs or not self.run.server_cpu or not self.ref.server_cpu:
            return None
        return theirs / mine


@dataclass
class ConfigResult:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    profiles: list[spy.Profile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None


class Bench:
    def __init__(self, args):
        self.args = args
        self.figures = args.figures
        self.duration = args.duration
        self.rounds = args.rounds

    def want(self, figure: str) -> bool:
        return figure in self.figures

    def issue(self, inst, creds: Path, kind: str, count: int) -> None:
        for f in creds.glob(f"{kind}.*.txt"):
            f.unlink()
        if kind == "st":
            fixtures.issue_service_tickets(inst, creds, count, CLIENTS)
        elif kind == "code":
            fixtures.issue_codes(inst, creds, count, CLIENTS)
        elif kind == "at":
            fixtures.issue_access_tokens(inst, creds, count, CLIENTS)

    def warm_up(self, nodes: list[Node], inst, creds: Path) -> None:
        """Every worker loads its templates, keys and connections before anything is measured."""
        self.issue(inst, creds, "st", 400)
        self.issue(inst, creds, "code", 200)
        self.issue(inst, creds, "at", 64)
        fixtures.write_logins(creds, CLIENTS)
        for scenario, extra in (("get", {"BENCH_PATH": "/_bench/select"}), ("mix", {})):
            wrk("warm-up", scenario, nodes, 2, creds, **extra)

    def run_config(self, name: str, workdir: Path) -> ConfigResult:
        kind, count = CONFIGS[name]
        workers = self.args.workers
        title = (f"{'SQLite' if kind == 'sqlite' else 'PostgreSQL + Redis'}, {count} node{'s' if count > 1 else ''}"
                 f" × {workers} workers")
        if count > 1 and kind == "sqlite":
            title += " (both nodes on one SQLite file)"
        result = ConfigResult(name, title)
        pg = redis = None
        if kind == "pg-redis":
            pg, redis = self.args.database_url, self.args.redis_url
            problem = _reachable(pg, redis)
            if problem:
                result.skipped = problem
                return result
        print(f"\n== {title}", flush=True)
        with fixtures.instance(name, workdir, postgres=pg, redis=redis) as inst:
            result.notes += [f"policy: {n}" for n in inst.policy_notes]
            cfg = fixtures.served_config(inst)
            nodes = start_nodes(inst, count, workers)
            try:
                creds = inst.folder / "creds"
                creds.mkdir()
                self.warm_up(nodes, inst, creds)
                self.measure(result, inst, nodes, cfg, creds)
            finally:
                for node in nodes:
                    node.stop()
                errors = [n.log for n in nodes if "Traceback" in n.log.read_text(errors="replace")]
                for log in errors:
                    result.notes.append(f"server log {log.name} holds a traceback (kept in {log})")
                    keep = workdir.parent / f"bench-{name}-{log.name}"
                    shutil.copy(log, keep)
                    result.notes[-1] = f"server log {log.name} holds a traceback: see {keep}"
        return result

    def measure(self, result: ConfigResult, inst, nodes: list[Node], cfg: dict, creds: Path) -> None:
        secs = self.duration / self.rounds
        total_workers = sum(len(n.workers()) for n in nodes)
        runs: dict[str, Run] = {}
        per_round: dict[str, list[Run]] = {}

        def add(key: str, run: Run):
            runs[key] = runs.get(key, Run(key)).merge(run)
            per_round.setdefault(key, []).append(run)
            self.progress(run)

        def ratios(key: str, ref: str) -> list[float]:
            """Round i of the figure against round i of its reference (measured next to each other)."""
            return [a.rate / b.rate for a, b in zip(per_round.get(key, []), per_round.get(ref, []), strict=False)
                    if b.rate]

        for _ in range(self.rounds):
            if self.want("discovery") or self.want("jwks"):
                add("hello", wrk("hello", "get", nodes, secs, creds, BENCH_PATH="/_bench/hello", BENCH_EXPECT="ok"))
                if self.want("discovery"):
                    add("discovery", wrk("discovery", "get", nodes, secs, creds,
                                         BENCH_PATH="/.well-known/openid-configuration", BENCH_EXPECT='"issuer"'))
                if self.want("jwks"):
                    add("jwks", wrk("jwks", "get", nodes, secs, creds, BENCH_PATH="/oidc/jwks",
                                    BENCH_EXPECT='"keys"'))
            if any(self.want(f) for f in ("validate", "token", "introspect")):
                select = wrk("bare SELECT", "get", nodes, secs, creds, BENCH_PATH="/_bench/select", BENCH_EXPECT="ok")
                add("select", select)
                # enough single-use credentials for this round at up to 2x the bare SELECT's rate
                need = int(select.rate * secs * 2) + 50 * CLIENTS
                if self.want("validate"):
                    for key, path in (("sv", "/cas/serviceValidate"), ("p3", "/cas/p3/serviceValidate")):
                        self.issue(inst, creds, "st", need)
                        add(key, wrk(key, "validate", nodes, secs, creds, BENCH_VALIDATE=path))
                if self.want("token"):
                    self.issue(inst, creds, "code", need)
                    add("token", wrk("token", "token", nodes, secs, creds))
                if self.want("introspect"):
                    add("introspect", wrk("introspect", "introspect", nodes, secs, creds))
            if self.want("login"):
                fixtures.write_logins(creds, CLIENTS)
                clients = max(4, 2 * total_workers)
                add("login", wrk("login", "login", nodes, secs, creds, clients=clients))
                # Diagnostic: one argon2 verification per request through the same server (bench/app.py): splits
                # the login's gap to the raw rate into argon2 inside a worker and the login's web part.
                add("argon2 served", wrk("argon2 served", "get", nodes, secs, creds, clients=clients,
                                         BENCH_PATH="/_bench/argon2", BENCH_EXPECT="ok"))
                add("argon2", argon2_rate(cfg, total_workers, secs, nodes, kept=True))
                add("argon2 fresh", argon2_rate(cfg, total_workers, secs, nodes))

        argon = f"argon2id t={cfg['time_cost']} m={cfg['memory_cost']} KiB p={cfg['parallelism']}"
        keyed: dict[str, Row] = {}
        for key, label in (("hello", "bare hello (reference)"), ("select", "bare SELECT (reference)"),
                           ("argon2", f"raw argon2 verify × {total_workers} procs (reference)"),
                           ("argon2 fresh", f"raw argon2 verify × {total_workers} procs, memory mapped afresh")):
            if key in runs:
                result.rows.append(Row(label, runs[key], target="reference"))
        if "login" in runs:
            result.rows.append(Row("login (form GET + POST → ticket)", runs["login"],
                                   f"raw verify, {total_workers} procs", runs["argon2"], "≥ 0.90",
                                   rounds=ratios("login", "argon2")))
            result.notes.append(f"login: {argon} (the served instance's), {max(4, 2 * total_workers)} clients, "
                                f"raw verify with {total_workers} processes (= the servers' workers), keeping "
                                f"argon2's memory between verifications as the workers do")
            served = runs.get("argon2 served")
            if served is not None and served.rate and runs["argon2"].rate:
                result.rows.append(Row(f"argon2 verify through the server, one per request ({max(4, 2 * total_workers)} clients)",
                                       served, f"raw verify, {total_workers} procs", runs["argon2"], "reference"))
                result.notes.append(login_split(runs["login"], served, runs["argon2"]))
            if runs["argon2 fresh"].rate:
                result.notes.append(
                    f"login ÷ raw verify with argon2-cffi's default allocation (its {cfg['memory_cost'] // 1024} MiB mapped afresh each time, "
                    f"as any program calling it gets): {runs['login'].rate / runs['argon2 fresh'].rate:.2f}")
        for key, label in (("sv", "/cas/serviceValidate"), ("p3", "/cas/p3/serviceValidate")):
            if key in runs:
                result.rows.append(Row(label, runs[key], "bare SELECT", runs["select"], "≥ 0.50, p99 < 50 ms",
                                       rounds=ratios(key, "select")))
        if "token" in runs:
            result.rows.append(Row("/oidc/token (authorization_code)", runs["token"], "bare SELECT", runs["select"],
                                   "≥ 0.50", rounds=ratios("token", "select")))
        if "introspect" in runs:
            result.rows.append(Row("/oidc/introspect", runs["introspect"], "bare SELECT", runs["select"], "≥ 0.50",
                                   rounds=ratios("introspect", "select")))
        if "discovery" in runs:
            result.rows.append(Row("discovery", runs["discovery"], "bare hello", runs["hello"], "≥ 0.90",
                                   rounds=ratios("discovery", "hello")))
        if "jwks" in runs:
            result.rows.append(Row("JWKS", runs["jwks"], "bare hello", runs["hello"], "≥ 0.90",
                                   rounds=ratios("jwks", "hello")))

        if self.want("load"):
            result.rows.append(self.mix(inst, nodes, creds, runs))
        for row in result.rows:
            self.judge(row)
        for key, prefix in (("login", "login"), ("sv", "/cas/serviceValidate"), ("p3", "/cas/p3"),
                            ("token", "/oidc/token"), ("introspect", "/oidc/introspect"), ("discovery", "discovery"),
                            ("jwks", "JWKS")):
            for r in result.rows:
                if r.figure.startswith(prefix):
                    keyed[key] = r
        if self.want("profile") and len(nodes) == 1:
            failed = {key: row for key, row in keyed.items() if not row.passed}
            result.profiles += self.profile(result.name, inst, nodes[0], creds, runs, failed)

    def mix(self, inst, nodes: list[Node], creds: Path, runs: dict[str, Run]) -> Row:
        """The 60-second load: every kind of request at once, 16 clients, zero errors expected."""
        seconds = self.args.load_duration
        weights = dict((k, int(v)) for k, v in (x.split("=") for x in MIX.split(",")))
        rates = {"sv": runs.get("sv"), "p3": runs.get("p3"), "token": runs.get("token"), "login": runs.get("login")}
        # the mix's rate is bounded by its slowest parts; estimate it, then issue twice what it could use
        total_w = sum(weights.values())
        est = {"sv": 1500, "p3": 1500, "token": 600, "introspect": 1500, "discovery": 2000, "jwks": 2000,
               "login": 50}
        for k, r in rates.items():
            if r is not None and r.rate:
                est[k] = r.rate
        per_action = sum(w / total_w / est[k] for k, w in weights.items())
        rate = 1 / per_action
        self.issue(inst, creds, "st", int(rate * seconds * (weights["sv"] + weights["p3"]) / total_w * 2) + 40 * CLIENTS)
        self.issue(inst, creds, "code", int(rate * seconds * weights["token"] / total_w * 2) + 40 * CLIENTS)
        fixtures.write_logins(creds, CLIENTS)
        run = wrk(f"{seconds:.0f} s mix", "mix", nodes, seconds, creds)
        self.progress(run)
        mixdesc = ", ".join(f"{k} {v}" for k, v in sorted(run.kinds.items()) if k != "login_form")
        row = Row(f"mixed load {seconds:.0f} s, {CLIENTS} clients", run, target="0 errors", note=mixdesc)
        return row

    def judge(self, row: Row) -> None:
        run = row.run
        problems = []
        if run.error_count:
            problems.append("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(run.errors.items())))
        if run.exhausted:
            problems.append(f"credentials ran out ({run.exhausted} filler requests): figure invalid")
        if row.target == "reference":
            row.passed = not problems
        elif row.target == "0 errors":
            row.passed = not problems
        else:
            ratio = row.ratio
            want = _wanted_ratio(row.target)
            ok = ratio is not None and ratio >= want
            if "p99" in row.target:
                ok = ok and run.p99_ms is not None and run.p99_ms < 50
            row.passed = ok and not problems
        if problems:
            row.note = "; ".join(problems + ([row.note] if row.note else []))

    def profile(self, config: str, inst, node: Node, creds: Path, runs: dict[str, Run],
                failed: dict[str, Row]) -> list[spy.Profile]:
        """py-spy on one worker under each load: where that worker's busy time goes."""
        if not spy.available():
            print("   installing py-spy into the virtualenv for the profile (the `bench` extra)", flush=True)
            if not spy.install():
                p = spy.Profile("profile")
                p.error = "py-spy is not installed and pip could not install it: no profile"
                return [p]
        seconds = max(4.0, self.duration / 2)
        out = []
        select = runs.get("select")
        need = int((select.rate if select else 1500) * seconds * 2) + 50 * CLIENTS
        plans = [PROFILES[k] for k, fig in (("p3", "validate"), ("token", "token"), ("login", "login"))
                 if self.want(fig)] + [PROFILES["select"]]
        # and every other figure that missed its target in this configuration
        plans += [PROFILES[key] for key, row in failed.items() if key in PROFILES and PROFILES[key] not in plans]
        keep = Path(self.args.profiles) if self.args.profiles else None
        for key, title, scenario, extra, kind in plans:
            if kind:
                self.issue(inst, creds, kind, need)
            fixtures.write_logins(creds, CLIENTS)
            worker = node.workers()[0]
            raw = inst.folder / f"profile-{key}.txt"
            clients = max(4, 2 * len(node.workers())) if scenario == "login" else CLIENTS
            t = threading.Thread(target=wrk, args=(title, scenario, [node], seconds + 1.5, creds),
                                 kwargs={"clients": clients, **extra})
            t.start()
            time.sleep(0.8)
            error = spy.record(worker, seconds, raw)
            t.join()
            prof = spy.analyse(raw, title) if error is None else spy.Profile(title)
            prof.error = error
            out.append(prof)
            if keep is not None and error is None:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(raw, keep / f"{config}-{key}.txt")
            print("\n".join("   " + x for x in spy.render(prof, top=6)[:4]), flush=True)
        return out

    def progress(self, run: Run) -> None:
        lat = f"  p50 {run.p50_ms:6.1f} ms  p99 {run.p99_ms:6.1f} ms" if run.p50_ms is not None else ""
        err = f"  errors {run.errors}" if run.errors else ""
        print(f"   {run.name:<22} {run.rate:9.1f}/s{lat}  server {run.server_cpu:4.2f} cores"
              f"  load gen {run.client_cpu:4.2f}  others {run.foreign_cpu:4.2f}{err}", flush=True)


def _reachable(pg: str, redis_url: str) -> str | None:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(pg.replace("postgresql://", "postgresql+psycopg://", 1),
                                  connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip with the reason
        return f"PostgreSQL not reachable at {pg}: {str(exc).splitlines()[0][:120]}"
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        return f"Redis not reachable at {redis_url}: {exc}"
    return None


# --- output ----------------------------------------------------------------------------------------------------

def login_split(login: Run, served: Run, raw: Run) -> str:
    """Where the login's gap to the raw argon2 rate goes: argon2 inside a worker (behind one bare request)
    against the raw processes, and the rest of a login (the form GET, the POST's statements, session, ticket)
    in server CPU per login against per served verification."""
    per_login = 1000.0 * login.server_cpu * login.seconds / (login.rate * login.seconds) if login.rate else None
    per_verify = served.server_ms_per_request
    text = (f"login split: argon2 through the server ÷ raw = {served.rate / raw.rate:.2f}, "
            f"login ÷ argon2 through the server = {login.rate / served.rate:.2f}")
    if per_login and per_verify and login.server_cpu and served.server_cpu:
        text += (f"; server CPU {per_login:.1f} ms per login against {per_verify:.1f} ms per served verification: "
                 f"the login's web part costs {per_login - per_verify:.1f} ms")
    return text


def _fmt_rate(run: Run, unit: str = "/s") -> str:
    return f"{run.rate:,.1f}{unit}" if run.rate < 100 else f"{run.rate:,.0f}{unit}"


def _ratio(v: float | None) -> str:
    """Two decimals, rounded down: 0.899 reads 0.89, never 0.90 next to a target of 0.90 it missed."""
    return "" if v is None else f"{math.floor(v * 100) / 100:.2f}"


def _spread(row: Row) -> str:
    """The per-round ratios' range, e.g. "0.46–0.55"; empty with one round."""
    return "" if row.spread is None else f"{_ratio(row.spread[0])}–{_ratio(row.spread[1])}"


def _within_noise(row: Row) -> bool:
    """A ratio target some rounds met and others missed: the verdict is this machine's noise as much as the code."""
    if row.spread is None or "≥" not in row.target:
        return False
    want = _wanted_ratio(row.target)
    return row.spread[0] < want <= row.spread[1]


def _wanted_ratio(target: str) -> float:
    """The ratio a target such as "≥ 0.50, p99 < 50 ms" asks for."""
    return float(target.split("≥")[1].split(",")[0])


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


HEAD = ("figure", "rate", "p50 ms", "p99 ms", "CPU ms/req", "reference", "ref rate", "ratio", "rounds", "target",
        "result", "CPU ratio")


def table_rows(res: ConfigResult) -> list[tuple[str, ...]]:
    out = []
    for row in res.rows:
        run = row.run
        unit = " logins/s" if row.figure.startswith("login") else "/s"
        cpu = run.server_ms_per_request if run.server_cpu else None
        login = row.figure.startswith("login")
        verdict = ("" if row.passed else "errors") if row.target == "reference" else "pass" if row.passed else "FAIL"
        out.append((row.figure, _fmt_rate(run, unit), _ms(run.p50_ms) if not login else "",
                    _ms(run.p99_ms) if not login else "", "" if cpu is None or login else f"{cpu:.2f}",
                    row.reference, _fmt_rate(row.ref) if row.ref else "",
                    _ratio(row.ratio), _spread(row), row.target, verdict, _ratio(row.cpu_ratio)))
    return out


def render_text(res: ConfigResult) -> list[str]:
    lines = [f"{res.title}"]
    if res.skipped:
        return lines + [f"  skipped: {res.skipped}"]
    rows = [HEAD, *table_rows(res)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) if i in (0, 5, 9) else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    for row in res.rows:
        if row.note:
            lines.append(f"  note, {row.figure}: {row.note}")
    noise = [r.run.foreign_cpu for r in res.rows]
    if noise:
        lines.append(f"  other load on the machine during these runs: {max(noise):.2f} cores at most"
                     + ("  (noisy: ratios less reliable)" if max(noise) > 0.25 else ""))
    lines += [f"  {n}" for n in res.notes]
    for prof in res.profiles:
        lines += ["  " + x for x in spy.render(prof)]
    return lines


def summary(results: list[ConfigResult]) -> list[str]:
    done = [r for r in results if not r.skipped]
    figures = []
    for r in done:
        for row in r.rows:
            if row.figure not in figures and row.target != "reference":
                figures.append(row.figure)
    names = [r.name for r in done]
    lines = ["Summary (ratio to the reference measured in the same run; * = below target or errors)"]
    w = max([len(f) for f in figures] + [10])
    lines.append("  " + "figure".ljust(w) + "".join(n.rjust(13) for n in names) + "   target")
    for f in figures:
        cells, target = [], ""
        for r in done:
            row = next((x for x in r.rows if x.figure == f), None)
            if row is None:
                cells.append("-")
                continue
            target = row.target
            val = _ratio(row.ratio) if row.ratio is not None else f"{row.run.error_count} err"
            cells.append(val + ("" if row.passed else "*"))
        lines.append("  " + f.ljust(w) + "".join(c.rjust(13) for c in cells) + f"   {target}")
    failed = sum(1 for r in done for row in r.rows if not row.passed and row.target != "reference")
    total = sum(1 for r in done for row in r.rows if row.target != "reference")
    lines.append(f"  {total - failed} of {total} figures meet their target"
                 + "".join(f"; {r.name} skipped ({r.skipped})" for r in results if r.skipped))
    straddle = [f"{row.figure} ({r.name} {_spread(row)})" for r in done for row in r.rows if _within_noise(row)]
    if straddle:
        lines.append("  within this machine's noise (some rounds met the ratio, others missed it): "
                     + "; ".join(straddle))
    return lines


def machine() -> dict[str, str]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    def v(pkg):
        try:
            return version(pkg)
        except Exception:  # noqa: BLE001
            return "?"

    wrk_v = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0].split(" [")[0]
    pg = ""
    return {"date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "cpu": model or platform.processor(),
            "cores": str(os.cpu_count()), "python": platform.python_version(), "os": platform.platform(),
            "versions": ", ".join(f"{p} {v(p)}" for p in ("idp", "flask", "sqlalchemy", "authlib", "argon2-cffi",
                                                         "gunicorn", "psycopg", "redis")) + f", {wrk_v}" + pg}


def markdown(results: list[ConfigResult], info: dict, args) -> str:
    out = ["# Benchmark results", "",
           f"{info['date']} — {info['cpu']}, {info['cores']} cores — Python {info['python']} — {info['os']}", "",
           f"Versions: {info['versions']}.", "",
           f"Command: `{' '.join(['bench/run.py', *sys.argv[1:]])}` — {args.duration:g} s per figure "
           f"({args.rounds} round{'s' if args.rounds > 1 else ''}), mixed load {args.load_duration:g} s, "
           f"{CLIENTS} concurrent clients. Method and how to read this: docs/benchmarks.md.", ""]
    for res in results:
        out.append(f"## {res.title}")
        out.append("")
        if res.skipped:
            out += [f"Skipped: {res.skipped}", ""]
            continue
        out.append("| " + " | ".join(HEAD) + " |")
        out.append("|" + "---|" * len(HEAD))
        for r in table_rows(res):
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        out.append("")
        for row in res.rows:
            if row.note:
                out.append(f"- {row.figure}: {row.note}")
        noise = [r.run.foreign_cpu for r in res.rows]
        if noise:
            out.append(f"- other load on the machine during these runs: {max(noise):.2f} cores at most")
        out += [f"- {n}" for n in res.notes]
        if res.profiles:
            out += ["", "Where the time goes (py-spy, one worker):", "", "```"]
            for prof in res.profiles:
                out += spy.render(prof) + [""]
            out.append("```")
        out.append("")
    out += ["## Summary", "", "```", *summary(results), "```", ""]
    return "\n".join(out)


# --- main ------------------------------------------------------------------------------------------------------

def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("installing Debian wrk (the load generator)", flush=True)
    subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null",
                   shell=True, check=False)
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is not installed and apt-get could not install it (apt-get install wrk)")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--quick", action="store_true", help="short runs (3 s per figure, 10 s mixed load): a smoke test")
    ap.add_argument("--duration", type=float, help="seconds per figure (default 10, --quick 3)")
    ap.add_argument("--load-duration", type=float, help="seconds of the mixed load (default 60, --quick 10)")
    ap.add_argument("--rounds", type=int, help="split each figure into this many rounds, interleaved with its "
                    "reference (default 2, --quick 1)")
    ap.add_argument("--only", default="", help="comma-separated configurations and/or figures")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="gunicorn workers per node (default: "
                    "one per core, as `idp serve`)")
    ap.add_argument("--database-url", default=os.environ.get("IDP_BENCH_DATABASE_URL", "postgresql://127.0.0.1/test"))
    ap.add_argument("--redis-url", default=os.environ.get("IDP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--profiles", default="", help="also keep py-spy's raw stacks (collapsed, for flame graphs) "
                    "in this folder")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a figure misses its target")
    ap.add_argument("--output", default=str(HERE / "results" / "latest.md"), help="Markdown report ('' for none)")
    args = ap.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.load_duration = args.load_duration or (10.0 if args.quick else 60.0)
    args.rounds = max(1, args.rounds or (1 if args.quick else 2))
    names = [x.strip() for x in args.only.split(",") if x.strip()]
    configs = [n for n in CONFIGS if any(n == x or n.rsplit("-", 1)[0] == x for x in names)]
    figures = [x for x in names if x in FIGURES]
    unknown = [x for x in names if x not in FIGURES and not any(n == x or n.rsplit("-", 1)[0] == x for n in CONFIGS)]
    if unknown:
        ap.error(f"unknown --only name(s) {unknown}: configurations {list(CONFIGS)}, figures {list(FIGURES)}")
    args.configs = configs or list(CONFIGS)
    args.figures = figures or list(FIGURES)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    ensure_wrk()
    info = machine()
    print(f"idp benchmarks — {info['date']} — {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    print(f"{args.duration:g} s per figure in {args.rounds} round(s), mixed load {args.load_duration:g} s, "
          f"{CLIENTS} clients, {args.workers} workers per node; configurations: {', '.join(args.configs)}")
    bench = Bench(args)
    results = []
    with tempfile.TemporaryDirectory(prefix="idp-bench-") as tmp:
        for name in args.configs:
            results.append(bench.run_config(name, Path(tmp)))
    print()
    for res in results:
        print("\n".join(render_text(res)))
        print()
    print("\n".join(summary(results)))
    if args.output:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown(results, info, args), encoding="utf-8")
        print(f"\n(written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})")
    met = all(row.passed for r in results if not r.skipped for row in r.rows)
    return 0 if met or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
