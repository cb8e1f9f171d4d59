"""Domain errors: carry a machine code (for audit and tests) and a message for people."""
from __future__ import annotations


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code
