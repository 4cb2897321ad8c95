"""People inside a tenant: their accounts, personal API keys and browser sessions, kept in two
buckets of the subject table (only the gateway reads or writes them).

`accounts` holds, by key:
- `user.<tenant>.<user id>`: the account (role, password hash, lockout, its personal keys' digests);
- `login.<sha256 of the sign-in name>`: which tenant and account a sign-in name is (names are
  unique across the platform, so signing in needs no tenant);
- `key.<sha256 of a personal key>`: whose key it is;
- `policy.<tenant>`: what the tenant's members may do besides starting jobs.
The account is what counts: a key or session is honoured only while its account still lists it
(a key) or still has the epoch it was made in (a session), so removing a person, revoking a key or
changing a password takes effect on the next request, whatever the indexes still say.

`sessions` holds each signed-in browser under the sha256 of its cookie's token (the bucket's age
limit ends a session 12 hours after sign-in); `sign-ins`, each single sign-on under way (10
minutes). No token or key is stored in the clear: a copy of the buckets signs no one in.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
import unicodedata
import uuid
from collections.abc import Callable

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from maskline.contracts.account_v1 import Role, SignInMethod
from maskline.contracts.envelope import now
from maskline.contracts.http_v1 import AccountPolicy
from maskline.shared.kv import BucketStore, compare_and_set, entries, get_decoded

#: Personal API keys start with this, so a leaked one is recognisable (secret scanners, logs).
PERSONAL_KEY_PREFIX = "mlk_"


class PersonalKey(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    digest: str
    """sha256 of the key: the key itself is shown once, when made, and never stored."""
    created: str


class Account(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    tenant: str
    login: str
    role: Role
    created: str
    password_hash: str | None = None
    """argon2id (argon2-cffi); None: the person signs in through single sign-on only."""
    oidc_subject: str | None = None
    """The identity provider's `sub` for this person, once they signed in through it."""
    failures: int = 0
    """Failed sign-ins since the last good one."""
    locked_until: float = 0.0
    """Unix time before which no sign-in is tried (lockout after repeated failures)."""
    epoch: int = 0
    """Sessions made in an older epoch are over (a password change, sign-out everywhere)."""
    keys: tuple[PersonalKey, ...] = ()


class _Pointer(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    user: str
    key_id: str | None = None


class Session(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    user: str
    epoch: int
    csrf: str
    """The token a page sends back in `X-CSRF-Token` with each change (it reads it from /v1/me)."""
    method: SignInMethod
    created: str


class PendingSignIn(msgspec.Struct, frozen=True, kw_only=True):
    """A single sign-on under way: what the identity provider's answer must match (OpenID Connect's
    state and nonce, PKCE's verifier) and where the person goes afterwards."""

    state: str
    nonce: str
    verifier: str
    next: str
    created: float


class LoginTaken(Exception):
    """Another account (of any tenant) signs in with this name."""


def digest(secret: str) -> str:
    """What is stored of a token or key. They are 256-bit random, so a fast hash is enough: no
    guess can be tried against it faster than against the server."""
    return hashlib.sha256(secret.encode()).hexdigest()


def normal_login(login: str) -> str:
    """A sign-in name as it is kept: Unicode NFKC (so look-alike compositions are one name)."""
    return unicodedata.normalize("NFKC", login).strip()


def login_digest(login: str) -> str:
    return digest(normal_login(login).casefold())


def readable_login(login: str) -> bool:
    """No control, format (zero-width, bidi override) or line separator characters: a name that
    looks like another person's in the owners' list and the audit trail is refused."""
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs") for c in login)


def new_user_id() -> str:
    return f"u-{uuid.uuid4().hex[:16]}"


_ACCOUNT = msgspec.json.Decoder(Account)
_POINTER = msgspec.json.Decoder(_Pointer)
_SESSION = msgspec.json.Decoder(Session)
_POLICY = msgspec.json.Decoder(AccountPolicy)
_PENDING = msgspec.json.Decoder(PendingSignIn)
#: How long a person may take at the identity provider.
PENDING_S = 600.0


class Accounts(BucketStore):
    BUCKET = "accounts"

    @staticmethod
    def _user(tenant: str, user: str) -> str:
        return f"user.{tenant}.{user}"

    async def add(self, tenant: str, login: str, role: Role, password_hash: str | None) -> Account:
        """A new account; its sign-in name is claimed first, so two requests cannot both get it."""
        account = Account(
            id=new_user_id(),
            tenant=tenant,
            login=normal_login(login),
            role=role,
            created=now().isoformat(),
            password_hash=password_hash,
        )
        pointer = _Pointer(tenant=tenant, user=account.id)
        try:
            await self.kv.create(f"login.{login_digest(login)}", msgspec.json.encode(pointer))
        except KeyWrongLastSequenceError as exc:
            raise LoginTaken(login) from exc
        await self.kv.put(self._user(tenant, account.id), msgspec.json.encode(account))
        return account

    async def get(self, tenant: str, user: str) -> Account | None:
        return await get_decoded(self.kv, self._user(tenant, user), _ACCOUNT)

    async def by_login(self, login: str) -> Account | None:
        pointer = await get_decoded(self.kv, f"login.{login_digest(login)}", _POINTER)
        return None if pointer is None else await self.get(pointer.tenant, pointer.user)

    async def of_tenant(self, tenant: str) -> list[Account]:
        found = await entries(self.js, self.BUCKET, f"user.{tenant}.*")
        return sorted((_ACCOUNT.decode(v) for v in found.values()), key=lambda a: a.login)

    async def change(self, tenant: str, user: str, change: Callable[[Account], Account | None]) -> Account | None:
        """Apply `change` with compare-and-set (None from it: leave the account as it is). None: no such account."""
        return await compare_and_set(self.kv, self._user(tenant, user), _ACCOUNT, lambda a: None if a is None else change(a))

    async def remove(self, account: Account) -> None:
        """The account and its indexes: its sessions and keys end with it (they are checked against it)."""
        await self.kv.delete(self._user(account.tenant, account.id))
        for key in account.keys:
            await self._forget(f"key.{key.digest}")
        # The name only if it is still this account's: it may have been taken again since.
        name = f"login.{login_digest(account.login)}"
        with contextlib.suppress(KeyNotFoundError, NotFoundError, KeyWrongLastSequenceError):
            entry = await self.kv.get(name)
            pointer = _POINTER.decode(entry.value) if entry.value else None
            if pointer is not None and (pointer.tenant, pointer.user) == (account.tenant, account.id):
                await self.kv.delete(name, last=entry.revision)

    async def _forget(self, key: str) -> None:
        with contextlib.suppress(KeyNotFoundError, NotFoundError):
            await self.kv.delete(key)

    async def policy(self, tenant: str) -> AccountPolicy:
        return await get_decoded(self.kv, f"policy.{tenant}", _POLICY) or AccountPolicy()

    async def set_policy(self, tenant: str, policy: AccountPolicy) -> None:
        await self.kv.put(f"policy.{tenant}", msgspec.json.encode(policy))

    async def create_key(self, account: Account, name: str) -> tuple[Account, PersonalKey, str] | None:
        """A new personal key: (the account now, the key's record, the key itself: shown once)."""
        secret = PERSONAL_KEY_PREFIX + secrets.token_urlsafe(32)
        record = PersonalKey(id=f"k-{uuid.uuid4().hex[:12]}", name=name, digest=digest(secret), created=now().isoformat())
        pointer = _Pointer(tenant=account.tenant, user=account.id, key_id=record.id)
        await self.kv.put(f"key.{record.digest}", msgspec.json.encode(pointer))
        changed = await self.change(account.tenant, account.id, lambda a: msgspec.structs.replace(a, keys=(*a.keys, record)))
        return None if changed is None else (changed, record, secret)

    async def revoke_key(self, account: Account, key_id: str) -> PersonalKey | None:
        """Remove one of the account's keys (None: it has no such key)."""
        record = next((k for k in account.keys if k.id == key_id), None)
        if record is None:
            return None
        await self.change(
            account.tenant, account.id, lambda a: msgspec.structs.replace(a, keys=tuple(k for k in a.keys if k.id != key_id))
        )
        await self._forget(f"key.{record.digest}")
        return record

    async def by_key(self, secret: str) -> Account | None:
        """The account whose personal key this is, while the account still lists it."""
        if not secret.startswith(PERSONAL_KEY_PREFIX):
            return None
        wanted = digest(secret)
        pointer = await get_decoded(self.kv, f"key.{wanted}", _POINTER)
        account = None if pointer is None else await self.get(pointer.tenant, pointer.user)
        if account is None or not any(k.digest == wanted and k.id == pointer.key_id for k in account.keys):  # type: ignore[union-attr]
            return None
        return account


def failed(account: Account, limit: int, lock_s: float) -> Account:
    """The account after one more failed sign-in: locked for `lock_s` once `limit` failed in a row."""
    failures = account.failures + 1
    locked = time.time() + lock_s if failures >= limit else account.locked_until
    return msgspec.structs.replace(account, failures=0 if failures >= limit else failures, locked_until=locked)


class Sessions(BucketStore):
    BUCKET = "sessions"

    async def start(self, account: Account, method: SignInMethod) -> tuple[str, Session]:
        """A new session, under a token made now (never one the browser sent: no fixation)."""
        token = secrets.token_urlsafe(32)
        session = Session(
            tenant=account.tenant,
            user=account.id,
            epoch=account.epoch,
            csrf=secrets.token_urlsafe(32),
            method=method,
            created=now().isoformat(),
        )
        await self.kv.put(digest(token), msgspec.json.encode(session))
        return token, session

    async def get(self, token: str) -> Session | None:
        if not token or len(token) > 128:
            return None
        return await get_decoded(self.kv, digest(token), _SESSION)

    async def end(self, token: str) -> None:
        with contextlib.suppress(KeyNotFoundError, NotFoundError):
            await self.kv.delete(digest(token))


class PendingSignIns(BucketStore):
    """Single sign-ons under way, by the sha256 of the browser's handle (a cookie of its own); the
    bucket forgets them after 10 minutes, and each is taken once."""

    BUCKET = "sign-ins"

    async def hold(self, handle: str, pending: PendingSignIn) -> None:
        await self.kv.put(digest(handle), msgspec.json.encode(pending))

    async def take(self, handle: str) -> PendingSignIn | None:
        """The browser's single sign-on under way, once: it is forgotten as it is read."""
        if not handle or len(handle) > 128:
            return None
        key = digest(handle)
        pending = await get_decoded(self.kv, key, _PENDING)
        with contextlib.suppress(KeyNotFoundError, NotFoundError):
            await self.kv.delete(key)
        return pending if pending is not None and time.time() - pending.created < PENDING_S else None
