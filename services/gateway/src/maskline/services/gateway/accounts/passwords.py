"""Password hashes: argon2id through argon2-cffi, in a worker thread (a hash takes tens of
milliseconds and 64 MiB by design: the event loop goes on meanwhile)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    def __init__(self, profile: str) -> None:
        self._hasher = PasswordHasher.from_parameters(getattr(profiles, profile))
        # Checked when the name is unknown, so that an unknown name takes as long as a wrong password.
        self._dummy = self._hasher.hash("not a password of anyone's")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` is the one `stored` was made from (None: no such account, or one that
        signs in through single sign-on only: always False, after as much work as a real check)."""

        def check() -> bool:
            try:
                return self._hasher.verify(stored or self._dummy, password) and stored is not None
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)
