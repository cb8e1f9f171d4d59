"""The benchmark's server: the product app plus two bare reference routes, served like `idp serve`.

    python bench/app.py --port 8123 [--workers 2]      (environment: IDP_INSTANCE, IDP_* as for `idp serve`)

`/_bench/hello` answers "ok" without touching anything: the ceiling of Flask + gunicorn + the app's
before/after-request hooks. `/_bench/select` does one primary-key SELECT (`db.session.get(Account, id)`):
the ceiling of a request that needs the database. Product endpoints are measured against these two, on the
same server, in the same run. These routes exist only in this file: the product never has them.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `idp` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: The account the bare SELECT reads (set by bench/run.py; any existing id works).
ACCOUNT_ENV = "IDP_BENCH_ACCOUNT_ID"


def create_app():
    """`idp.create_app()` with the two reference routes (the same hooks, headers and session handling)."""
    from flask import Response

    from idp import create_app as product_app
    from idp.extensions import db
    from idp.models import Account

    app = product_app()
    account_id = int(os.environ.get(ACCOUNT_ENV, "1"))

    @app.get("/_bench/hello")
    def _bench_hello():
        return Response("ok", mimetype="text/plain")

    @app.get("/_bench/select")
    def _bench_select():
        account = db.session.get(Account, account_id)
        return Response("ok" if account is not None else "missing", mimetype="text/plain",
                        status=200 if account is not None else 404)

    from idp.core.passwords import hasher

    reference_hash = None

    @app.get("/_bench/argon2")
    def _bench_argon2():
        """One argon2 verification inside a worker, with the app's parameters: splits "argon2 is slower in
        the server" from "the login costs more than its argon2" (diagnostic; bench/run.py does not use it)."""
        nonlocal reference_hash
        if reference_hash is None:
            reference_hash = hasher().hash("bench-reference-password")
        ok = hasher().verify(reference_hash, "bench-reference-password")
        return Response("ok" if ok else "no", mimetype="text/plain")

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description="serve the IdP with the benchmark's reference routes")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    if args.host not in {"127.0.0.1", "localhost", "::1"}:
        ap.error("the benchmark server listens on loopback only")
    from idp import serving

    serving.run(args.host, args.port, args.workers, app_factory=create_app)


if __name__ == "__main__":
    main()
