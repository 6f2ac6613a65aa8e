"""People who log in to the web UI: creation, password hashing and checking.

Passwords are hashed with argon2id (argon2-cffi's ``PasswordHasher`` defaults).
A hash made with older parameters is replaced at the next successful login.
Hashing takes tens of milliseconds of CPU, so it runs in a thread, off the
event loop.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import RelaisError
from bot.store.models import Expert, User
from bot.web.roles import LANGUAGES, ROLES
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; a megabyte "password" is an attack

_hasher = PasswordHasher()
#: verified against when the email is unknown, so both cases cost the same time
_dummy_hashes: dict[int, str] = {}


def use_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Hash new passwords with ``hasher`` from now on (the tests use cheaper parameters);
    returns the previous one. Existing hashes keep verifying and are upgraded at login."""
    global _hasher
    previous, _hasher = _hasher, hasher
    return previous


def _dummy_hash() -> str:
    key = id(_hasher)
    if key not in _dummy_hashes:
        _dummy_hashes[key] = _hasher.hash("relais-no-such-user-password")
    return _dummy_hashes[key]


class UserError(RelaisError):
    """A user cannot be created or changed as asked (the message says why)."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    role: str,
    password: str,
    name: str = "",
    language: str = "fr",
    expert_id: int | None = None,
) -> User:
    """Add a user (the caller commits). Raises :class:`UserError` for an unknown role or
    language, a short password, an email already taken or an unknown expert."""
    email = normalise_email(email)
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    if language not in LANGUAGES:
        raise UserError(f"unknown language {language!r}: choose fr or en")
    if "@" not in email or len(email) > 300 or any(c.isspace() for c in email):
        raise UserError(f"{email!r} is not an email address")
    check_password_rules(password)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise UserError(f"a user with the email {email} already exists")
    if expert_id is not None and await session.get(Expert, expert_id) is None:
        raise UserError(f"no expert with id {expert_id}")
    user = User(
        email=email,
        name=name.strip() or email.split("@")[0],
        role=role,
        password_hash=await hash_password(password),
        language=language,
        expert_id=expert_id,
        active=True,
    )
    session.add(user)
    await session.flush()
    return user


async def expert_id_for(session: AsyncSession, expert_email: str) -> int:
    """The id of the expert with this email (experts come from the rules file)."""
    found = await session.scalar(select(Expert.id).where(Expert.email == normalise_email(expert_email)))
    if found is None:
        raise UserError(f"no expert with the email {expert_email} in the routing rules")
    return int(found)


async def verify_password(session: AsyncSession, email: str, password: str) -> User | None:
    """The active user with this email and password, or None (unknown, wrong or disabled:
    the caller cannot tell which, on purpose). Upgrades an outdated hash (the caller commits)."""
    user = await session.scalar(select(User).where(User.email == normalise_email(email)))
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    stored = user.password_hash if user is not None else _dummy_hash()
    ok = await asyncio.to_thread(_matches, stored, password)
    if not ok or user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
    return user


async def set_active(session: AsyncSession, email: str, active: bool) -> User:
    user = await session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise UserError(f"no user with the email {email}")
    user.active = active
    return user


async def ensure_user(session: AsyncSession, *, email: str, role: str, password: str, name: str = "", language: str = "fr") -> User:
    """Create the user, or give an existing one this password, role and an active account
    (the demo does this at each start, also on a reused database)."""
    user = await session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        return await create_user(session, email=email, role=role, password=password, name=name, language=language)
    check_password_rules(password)
    user.password_hash = await hash_password(password)
    user.role, user.active = role, True
    return user
