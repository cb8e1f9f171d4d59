"""argon2id hashing: the only module that imports argon2.

Passwords are NFKC-normalised and otherwise used exactly as typed: no truncation, no case change.
"""
from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app

from idp.core.policy import normalise

_EXT = "idp.passwords"


class Passwords:
    """Hasher bound to the configured cost, plus a dummy hash so unknown accounts cost the same."""

    def __init__(self, time_cost: int, memory_cost: int, parallelism: int):
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost,
                                     parallelism=parallelism, type=Type.ID)
        self._dummy = self.hasher.hash("idp-dummy-password-for-unknown-accounts")

    def hash(self, password: str) -> str:
        return self.hasher.hash(normalise(password))

    def verify(self, stored: str | None, password: str) -> bool:
        """True when the password matches. A missing hash still spends one verification."""
        try:
            # An empty stored hash is no password: the dummy must never log anyone in.
            return self.hasher.verify(stored or self._dummy, normalise(password)) and bool(stored)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True


def init_app(app) -> None:
    app.extensions[_EXT] = Passwords(app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_COST"],
                                     app.config["ARGON2_PARALLELISM"])


def hasher() -> Passwords:
    return current_app.extensions[_EXT]
