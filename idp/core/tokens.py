"""Signed tokens, one salt per purpose: the only module that imports itsdangerous.

A token made for one purpose (a reset link) can never be replayed for another, even under the same key.
"""
from __future__ import annotations

from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from idp.core.errors import DomainError

PURPOSES = ("password-reset", "link-confirm", "activation-challenge")


class TokenExpired(DomainError):
    code = "token_expired"


class TokenInvalid(DomainError):
    code = "token_invalid"


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"idp/{purpose}")


def make(purpose: str, data: Any) -> str:
    return _serializer(purpose).dumps(data)


def load(purpose: str, token: str, max_age_seconds: int) -> Any:
    """The data, or TokenExpired / TokenInvalid (a bad signature, another purpose, garbage)."""
    try:
        return _serializer(purpose).loads(token, max_age=max_age_seconds)
    except SignatureExpired:
        raise TokenExpired("the link has expired") from None
    except BadSignature:
        raise TokenInvalid("the link is not valid") from None
