"""Accounts: people inside a tenant, their roles, sign-ins and personal API keys (added in 1.14).

Every sign-in, failed sign-in of a known account, lockout, sign-out, key, role and policy change is one
`account.v1.changed` event: audit records it on the tenant's account trail (one job id per tenant),
so who did what to whose access is in the same signed trail as every job. No secret is ever in an
event: not a password, its hash, a session token or a key (a key is named by its id only).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

CHANGED = "account.v1.changed"

#: What a person may do in their tenant. `viewer` reads; `member` also starts and cancels jobs and
#: registers models; `owner` also manages people, grants, aliases and the tenant's settings.
#: A tenant's own API keys (MASKLINE_API_KEYS, for systems) act as `owner`.
Role = Literal["owner", "member", "viewer"]
ROLES: tuple[Role, ...] = ("viewer", "member", "owner")
"""Least to most: a role may do everything the roles before it may."""

AccountAction = Literal[
    "signed-in",
    "sign-in-failed",
    "locked",
    "signed-out",
    "password-changed",
    "key-created",
    "key-revoked",
    "user-added",
    "role-changed",
    "user-removed",
    "policy-changed",
]
#: How a person signed in: a password, or the configured OpenID Connect provider.
SignInMethod = Literal["password", "oidc"]
UserId = Annotated[str, msgspec.Meta(pattern="^u-[0-9a-f]{16}$")]


def role_allows(role: Role, needed: Role) -> bool:
    """Whether `role` may do what needs `needed`."""
    return ROLES.index(role) >= ROLES.index(needed)


class AccountChanged(msgspec.Struct, frozen=True, kw_only=True):
    """One change to a person's access, or an attempt at one. Added in 1.14."""

    action: AccountAction
    user: UserId | None = None
    """The person it is about (none: `policy-changed`, which is about the tenant)."""
    login: str = ""
    """The account's sign-in name (an e-mail address, usually)."""
    by: str
    """Who did it: a user id, `tenant-key` (a system with the tenant's key) or `lockout`."""
    role: Role | None = None
    """The account's role after the change."""
    previous_role: Role | None = None
    key_id: str | None = None
    """The personal API key created or revoked (its id, never the key)."""
    method: SignInMethod | None = None
    reason: str = ""
    """Why a sign-in failed or an account was locked, or what members may do now, in words."""
    client: str = ""
    """The address the request came from."""


#: Payload type of every subject in this family.
PAYLOADS: dict[str, type[msgspec.Struct]] = {CHANGED: AccountChanged}
