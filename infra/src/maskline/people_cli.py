"""CLI verbs for the people of a tenant (owners, or the tenant's API key):

maskline users list                                   everyone, their role, how they sign in, keys
maskline users add LOGIN [--role viewer|member|owner] [--password-stdin]   without a password: single sign-on only
maskline users role USER ROLE                         change someone's role (not your own)
maskline users rm USER                                remove someone: their sessions and keys end at once

A password is read from standard input (`--password-stdin`), never from the command line, where
it would sit in the shell's history and the process list.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from maskline.cli_conventions import Verb, usage_error, verbs
from maskline.client import JsonClient
from maskline.contracts.account_v1 import ROLES


def describe(user: dict[str, Any]) -> str:
    how = "password" if user["password"] else "single sign-on"
    locked = f"  locked until {user['locked_until']}" if user.get("locked_until") else ""
    return f"{user['id']}  {user['login']:<32} {user['role']:<7} {how:<15} {user['keys']} keys{locked}"


def cmd_users(args: argparse.Namespace) -> int:
    client = JsonClient(args.url, api_key=args.api_key)
    if args.action == "list":
        users = client.users()
        print(json.dumps(users, indent=2) if args.json else "\n".join(describe(u) for u in users))
        return 0
    if not args.target:
        raise usage_error(f"users {args.action} needs {'LOGIN' if args.action == 'add' else 'USER'}")
    if args.action == "add":
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
        made = client.add_user(args.target, args.role, password)
        print(json.dumps(made, indent=2) if args.json else describe(made))
    elif args.action == "role":
        if args.new_role not in ROLES:
            raise usage_error(f"users role needs USER ROLE ({', '.join(ROLES)})")
        changed = client.change_role(args.target, args.new_role)
        print(json.dumps(changed, indent=2) if args.json else describe(changed))
    elif args.action == "rm":
        client.remove_user(args.target)
    return 0


def _options(users: argparse.ArgumentParser) -> None:
    users.add_argument("target", nargs="?", help="LOGIN (add) or USER id (role, rm)")
    users.add_argument("new_role", nargs="?", metavar="ROLE", help="viewer, member or owner")
    users.add_argument("--role", choices=ROLES, default="viewer", help="the new person's role (default viewer)")
    users.add_argument("--password-stdin", action="store_true", help="read a first password from standard input")


def add_parsers(sub: Any) -> None:
    verbs(
        sub,
        "users",
        "the people of your tenant: list, add, role, rm",
        _options,
        {
            "list": Verb("everyone in your tenant, their role and how they sign in"),
            "add": Verb(
                "add a person (a password from standard input, or single sign-on only)", ("target", "role", "password_stdin")
            ),
            "role": Verb("change a person's role", ("target", "new_role")),
            "rm": Verb("remove a person: their sessions and keys end at once", ("target",)),
        },
        cmd_users,
    )
