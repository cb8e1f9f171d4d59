"""Domain errors: carry a machine code (for audit and tests) and a message for people."""
from __future__ import annotations


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class SharedStateUnavailable(DomainError):
    """Redis (IDP_REDIS_URL) did not answer: nothing short-lived can be issued or checked right now."""

    code = "shared_state_unavailable"
