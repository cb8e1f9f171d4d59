import pytest
pytestmark = pytest.mark.e2e
def test_boom(idp, browser):
    raise RuntimeError("boom")
