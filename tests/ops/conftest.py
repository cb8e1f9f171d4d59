"""Fixtures for the operations endpoints: the OIDC clients of tests/oidc, and reading /metrics."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.oidc.conftest import clients, oidc, register  # noqa: F401  (fixtures shared with tests/oidc)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a text exposition: (name, frozenset of label pairs) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist yet (counters start when first bumped)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def scrape(client):
    """scrape() -> the /metrics text, checked for status and content type."""
    def _scrape(**headers: str) -> str:
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 200, r.get_data(as_text=True)[:500]
        assert r.mimetype == "text/plain"
        return r.get_data(as_text=True)

    return _scrape
