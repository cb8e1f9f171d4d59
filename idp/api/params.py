"""Reading the admin API's input: JSON bodies, their fields, the reason every action needs, query parameters,
and the dates the audit filters take (shared with `idp audit export`)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request
from flask_babel import gettext as _

from idp.api.errors import ApiError
from idp.core import helpdesk

#: Longest reason kept (the audit event's data holds it).
MAX_REASON = 500


def body() -> dict[str, Any]:
    """The JSON object of the request (read as JSON whatever its Content-Type; an empty body is {})."""
    if not request.get_data(cache=True):
        return {}
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", _("The request body must be a JSON object."))
    return data


def text(data: dict[str, Any], name: str, *, required: bool = True, max_length: int = 254) -> str | None:
    """A string field, trimmed; None when absent or blank and not required (400 invalid_request otherwise)."""
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ApiError(400, "invalid_request", _("The field %(name)s is required.", name=name), field=name)
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_request", _("The field %(name)s must be a string.", name=name), field=name)
    if len(value) > max_length:
        raise ApiError(400, "invalid_request", _("The field %(name)s is too long.", name=name), field=name)
    return value.strip()


def action_body() -> tuple[dict[str, Any], str]:
    """The body of an action and its reason; 400 reason_required (and nothing done) without one."""
    data = body()
    reason = data.get("reason")
    if not isinstance(reason, str) or len(reason.strip()) < helpdesk.MIN_REASON:
        raise ApiError(400, "reason_required",
                       _("Say why: every action needs a reason (at least %(n)d characters) for the audit log.",
                         n=helpdesk.MIN_REASON), field="reason")
    if len(reason) > MAX_REASON:
        raise ApiError(400, "invalid_request", _("The field %(name)s is too long.", name="reason"), field="reason")
    return data, reason.strip()


def int_arg(name: str, default: int, *, low: int = 1, high: int | None = None) -> int:
    """A whole-number query parameter, clamped to [low, high]."""
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_request", _("The parameter %(name)s must be a whole number.", name=name),
                       field=name) from None
    value = max(low, value)
    return min(value, high) if high is not None else value


def moment(name: str, *, end: bool = False) -> dt.datetime | None:
    """A date or datetime query parameter (see parse_moment)."""
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return parse_moment(raw, end=end)
    except (ValueError, OverflowError):
        raise ApiError(400, "invalid_request",
                       _("The parameter %(name)s must be a date (YYYY-MM-DD) or an ISO 8601 date and time.",
                         name=name), field=name) from None


def parse_moment(raw: str, *, end: bool = False) -> dt.datetime:
    """"YYYY-MM-DD" or an ISO 8601 date and time → naive UTC, the project's time (no offset: UTC).

    A bare date is midnight UTC of that day; with `end` (an "until" bound, exclusive) the midnight after it,
    so `--until 2025-06-30` includes the whole of 30 June. ValueError for anything else.
    """
    raw = raw.strip()
    if len(raw) == 10:
        day = dt.date.fromisoformat(raw)
        start = dt.datetime(day.year, day.month, day.day)
        return start + dt.timedelta(days=1) if end else start
    if len(raw) < 16 or raw[10] not in "Tt ":
        raise ValueError(f"not a date or an ISO 8601 date and time: {raw!r}")
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    value = dt.datetime.fromisoformat(raw)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value
