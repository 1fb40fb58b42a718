"""`wardwatch-collector users add|passwd|disable|list`: the web UI's accounts from the shell.

A password is never taken from the command line (it would sit in the shell history and in
`ps`): it comes from `--password-file`, the environment variable WARDWATCH_PASSWORD, or a
prompt asked twice.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from collector.config import CollectorConfig
from collector.store import Store, StoreError, utcnow
from collector.web.accounts import LANGUAGES, ROLES, Accounts
from collector.web.passwords import PasswordError, check_policy

PASSWORD_ENV = "WARDWATCH_PASSWORD"


def add_users_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    users = sub.add_parser("users", help="web UI users: add, passwd, disable, list")
    users_sub = users.add_subparsers(dest="action", required=True)
    add = users_sub.add_parser("add", parents=[common], help="add a user (asks the password)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--lang", choices=LANGUAGES, help="the user's UI language")
    add.add_argument("--password-file", help=f"read the password from this file (else "
                     f"${PASSWORD_ENV}, else a prompt)")
    passwd = users_sub.add_parser("passwd", parents=[common],
                                  help="set a new password (ends the user's sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--password-file")
    disable = users_sub.add_parser("disable", parents=[common],
                                   help="disable a user (ends the user's sessions)")
    disable.add_argument("name")
    users_sub.add_parser("list", parents=[common], help="list users")


def run_users(args: argparse.Namespace, config: CollectorConfig) -> int:
    password = None
    try:
        if args.action in ("add", "passwd"):
            password = read_password(args.password_file)
        return asyncio.run(_users(args, config, password))
    except (StoreError, PasswordError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def read_password(path: str | None) -> str:
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PasswordError(f"cannot read {path}: {exc.strerror}") from None
        password = text.rstrip("\r\n")
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise PasswordError("the two passwords differ")
    check_policy(password)
    return password


async def _users(args: argparse.Namespace, config: CollectorConfig,
                 password: str | None) -> int:
    store = await Store.open(config.store, synchronous=config.store_synchronous)
    try:
        accounts = Accounts(store, config.ui)
        now = utcnow()
        actor = f"cli:{getpass.getuser()}"
        if args.action == "add":
            assert password is not None
            user = await accounts.add_user(args.name, password, args.role, now,
                                           language=args.lang)
            await accounts.audit(at=now, user=actor, action="user_add", target=user.name,
                                 detail={"role": user.role})
            print(f"user {user.name} added ({user.role})")
        elif args.action == "passwd":
            assert password is not None
            await accounts.set_password(args.name, password)
            await accounts.audit(at=now, user=actor, action="user_passwd", target=args.name)
            print(f"password of {args.name} changed; its sessions ended")
        elif args.action == "disable":
            await accounts.disable(args.name, now)
            await accounts.audit(at=now, user=actor, action="user_disable", target=args.name)
            print(f"user {args.name} disabled; its sessions ended")
        else:
            for user in await accounts.users():
                print(json.dumps({"name": user.name, "role": user.role,
                                  "language": user.language,
                                  "created_at": user.created_at.isoformat(),
                                  "disabled_at": user.disabled_at.isoformat()
                                  if user.disabled_at else None}, ensure_ascii=False))
    finally:
        await store.close()
    return 0
