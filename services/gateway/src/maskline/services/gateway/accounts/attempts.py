"""One try of a person's password. It is counted against the account before the password is
checked, so a burst of tries in parallel cannot slip past the lockout: each takes its turn in one
compare-and-set, and a try made while the account is locked is never checked at all. The answer of
a try does not say whether the name exists, has a password, or is locked (the same work is done)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec

from maskline.services.gateway.accounts.passwords import Passwords
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.tenants.accounts import Account, Accounts, failed


@dataclass(frozen=True)
class Attempt:
    account: Account | None
    """The account as it is after the try (None: no such name, or it signs in through single sign-on only)."""
    good: bool
    locked_now: bool = False
    """This try locked the account."""
    while_locked: bool = False
    """The account was locked: the password was not checked."""


async def try_password(
    account: Account | None, password: str, accounts: Accounts, passwords: Passwords, settings: GatewaySettings
) -> Attempt:
    if account is None or account.password_hash is None:
        await passwords.verify(None, password)
        return Attempt(None, False)
    counted = False

    def count(current: Account) -> Account | None:
        nonlocal counted
        counted = current.locked_until <= time.time()
        return failed(current, settings.sign_in_failures, settings.lockout_s) if counted else None

    after = await accounts.change(account.tenant, account.id, count)
    if after is None or not counted or after.password_hash is None:  # removed meanwhile, or locked
        await passwords.verify(None, password)
        return Attempt(after, False, while_locked=after is not None and not counted)
    if await passwords.verify(after.password_hash, password):
        cleared = await accounts.change(
            account.tenant, account.id, lambda a: msgspec.structs.replace(a, failures=0, locked_until=0.0)
        )
        return Attempt(cleared or after, True)
    return Attempt(after, False, locked_now=after.locked_until > time.time() and after.failures == 0)
