"""argon2id hashing: the only module that imports argon2.

Passwords are NFKC-normalised and otherwise used exactly as typed: no truncation, no case change.
"""
from __future__ import annotations

import ctypes
import logging
import platform

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app

from idp.core.policy import normalise

_EXT = "idp.passwords"
log = logging.getLogger("idp.passwords")

#: glibc's mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_C_INT_MAX = 2**31 - 1


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


def keep_hashing_memory(memory_cost_kib: int) -> bool:
    """Let a server process reuse argon2's working memory instead of mapping it afresh for every password.

    glibc hands an allocation above its mmap threshold (at most 32 MiB by default) straight to the kernel
    and back: argon2's 46 MiB were mapped, faulted in page by page (11,777 page faults, 20-30 ms of kernel
    time per verification on the 2-core benchmark machine) and unmapped at every login. With the threshold
    above that size the block comes from the heap and stays there (the trim threshold, twice that, keeps
    the heap from shrinking under it): 20-30 % more verifications per core. libargon2 wipes the block
    before freeing it; each process keeps it (and up to as much again of free heap) resident
    (docs/operations.md, sizing). False, with nothing changed, where there is no glibc or it refuses a
    threshold that large (older releases cap it at 32 MiB)."""
    size = memory_cost_kib * 1024 + (1 << 20)
    if platform.libc_ver()[0] != "glibc" or 2 * size > _C_INT_MAX:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: glibc's
    except (OSError, AttributeError):
        return False
    if not (mallopt(_M_MMAP_THRESHOLD, size) and mallopt(_M_TRIM_THRESHOLD, 2 * size)):
        log.warning("argon2's memory is mapped afresh for every password: this glibc refuses an mmap "
                    "threshold of %s bytes", size)
        return False
    return True
