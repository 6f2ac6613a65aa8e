"""``relais users add|list|disable|enable|password``: web UI accounts from the command line.

Passwords are read twice with ``getpass`` (never echoed), or once from standard
input with ``--password-stdin`` (the first line, for scripts). They are never
printed, and ``list`` shows no hashes.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from typing import TYPE_CHECKING

from sqlalchemy import select

from bot.services import open_services
from bot.store.models import Expert, User
from bot.web.auth import end_sessions
from bot.web.users import UserError, check_password_rules, create_user, expert_id_for, hash_password, set_active

if TYPE_CHECKING:
    from bot.settings import Settings


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise UserError("the two passwords differ")
    check_password_rules(password)
    return password


async def add_user(settings: Settings, args: argparse.Namespace) -> int:
    async with open_services(settings, load_model=False) as services:
        async with services.sessions() as session:  # check what we can before asking for a password
            if await session.scalar(select(User.id).where(User.email == args.email.strip().lower())):
                raise UserError(f"a user with the email {args.email.strip().lower()} already exists")
            if args.expert:
                await expert_id_for(session, args.expert)
        password = read_password(args.password_stdin)
        async with services.sessions.begin() as session:
            expert_id = await expert_id_for(session, args.expert) if args.expert else None
            user = await create_user(
                session,
                email=args.email,
                role=args.role,
                password=password,
                name=args.name or "",
                language=args.language or settings.ui_language,
                expert_id=expert_id,
            )
            print(f"user {user.email} added: role {user.role}, language {user.language}" + (f", expert {args.expert}" if args.expert else ""))
    return 0


async def list_users(settings: Settings, output: str) -> int:
    async with open_services(settings, load_model=False) as services, services.sessions() as session:
        rows = (await session.execute(select(User, Expert.email).outerjoin(Expert, Expert.id == User.expert_id).order_by(User.email))).all()
    listed = [
        {
            "email": user.email,
            "name": user.name,
            "role": user.role,
            "language": user.language,
            "expert": expert_email,
            "active": user.active,
            "created_at": user.created_at.isoformat(timespec="seconds"),
            "last_login_at": user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else None,
        }
        for user, expert_email in rows
    ]
    if output == "json":
        print(json.dumps(listed, indent=2, ensure_ascii=False))
        return 0
    header = ("email", "name", "role", "lang", "expert", "active", "last login")
    table = [header] + [
        (u["email"], u["name"], u["role"], u["language"], u["expert"] or "-", "yes" if u["active"] else "no", u["last_login_at"] or "never")
        for u in listed
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


async def change_user(settings: Settings, args: argparse.Namespace) -> int:
    """disable / enable / password; disabling or a new password ends the user's sessions."""
    password = read_password(args.password_stdin) if args.users_command == "password" else None
    async with open_services(settings, load_model=False) as services, services.sessions.begin() as session:
        if password is not None:
            user = await session.scalar(select(User).where(User.email == args.email.strip().lower()))
            if user is None:
                raise UserError(f"no user with the email {args.email}")
            user.password_hash = await hash_password(password)
        else:
            user = await set_active(session, args.email, args.users_command == "enable")
        ended = await end_sessions(session, user.id) if args.users_command != "enable" else 0
        done = {"disable": "disabled", "enable": "enabled", "password": "has a new password"}[args.users_command]
        print(f"user {user.email} {done}" + (f"; {ended} session(s) ended" if ended else ""))
    return 0
