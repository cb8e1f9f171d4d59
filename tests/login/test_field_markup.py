"""Form fields as assistive technology reads them: an unknown aria-invalid value counts as "true"
(WAI-ARIA), so a field without errors must carry no aria-invalid at all, and nothing may render "None"."""
from __future__ import annotations

import re

import pytest

from tests.conftest import cas_login
from tests.factories import PASSWORD


@pytest.mark.parametrize("path", ["/cas/login", "/password/reset", "/activate"])
def test_fields_without_errors_carry_no_aria_invalid_and_no_none(client, path):
    html = client.get(path).get_data(as_text=True)
    assert "<input" in html
    assert '="None"' not in html
    assert "aria-invalid" not in html


def test_a_field_with_an_error_is_marked_invalid_and_described(client, person):
    r = cas_login(client, "", PASSWORD)
    html = r.get_data(as_text=True)
    field = re.search(r'<input[^>]*name="username"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in field and 'aria-describedby="username-' in field
    assert '="None"' not in html
