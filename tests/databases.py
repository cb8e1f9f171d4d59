"""Test databases: a PostgreSQL schema of its own for a test run, so runs never see each other's rows."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


def postgres_base() -> str | None:
    """IDP_TEST_DATABASE_URL (e.g. postgresql://127.0.0.1/test), or None for SQLite runs."""
    return os.environ.get("IDP_TEST_DATABASE_URL") or None


@contextmanager
def postgres_schema(base: str, prefix: str) -> Iterator[str]:
    """Create a fresh schema, yield a URL whose search_path is that schema, drop it afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def redis_settings() -> dict[str, str]:
    """REDIS_URL and a fresh key namespace when the run uses Redis (IDP_TEST_REDIS_URL), else nothing."""
    url = os.environ.get("IDP_TEST_REDIS_URL")
    return redis_settings_for(url) if url else {}


def local_redis_url() -> str | None:
    """A Redis for the tests that exercise the Redis stores in every run: IDP_TEST_REDIS_URL, else the
    machine's own (127.0.0.1:6379, which .ci/run starts when it is down); None when none answers."""
    import redis

    url = os.environ.get("IDP_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return None
    return url


def redis_settings_for(url: str) -> dict[str, str]:
    """REDIS_URL `url` under a fresh key namespace."""
    return {"REDIS_URL": url, "REDIS_PREFIX": f"idptest:{uuid.uuid4().hex[:12]}:"}
