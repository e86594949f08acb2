"""``chatbot keys create | list | revoke``: per-user API keys of the backend.

They use the backend's database setting (``CHATBOT_DATABASE_URL``, or the SQLite file in
``CHATBOT_DATA_DIR``). ``create`` writes the key to stdout once and nowhere else; nothing here
logs a key.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from chatbot.config import StoreSettings
from chatbot.domain.users import User
from chatbot.errors import ConfigurationError
from chatbot.settings_cli import add_flags, settings_from
from chatbot.store.api_keys import ApiKeyInfo, ApiKeyStore


def add_keys_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="per-user API keys of the backend")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key for a user; prints it once")
    create.add_argument("--user", required=True, help="the user id the key acts for")
    create.add_argument("--name", default=None, help="the user's display name [default: --user]")
    actions.add_parser("list", help="every key: id, prefix, user, created, revoked (never a key)")
    revoke = actions.add_parser("revoke", help="revoke a key; refused at once on every replica")
    revoke.add_argument(
        "key", metavar="KEY_ID_OR_PREFIX", help="the id or prefix 'keys list' shows"
    )
    for parser in (create, actions.choices["list"], revoke):
        add_flags(parser, StoreSettings)


def run_keys(args: argparse.Namespace) -> int:
    store = ApiKeyStore.open(settings_from(args, StoreSettings).resolved_database_url())
    try:
        match args.keys_command:
            case "create":
                try:
                    user = User(id=args.user, name=args.name or args.user)
                except ValueError as exc:
                    raise ConfigurationError(f"--user: {exc}") from None
                key, info = store.create(user)
                sys.stdout.write(f"{key}\n")
                sys.stderr.write(
                    f"created key {info.id} ({info.prefix}...) for {user.id}; it is shown only "
                    "this once: send it as 'Authorization: Bearer <key>'\n"
                )
            case "list":
                sys.stdout.write(_table(store.list_keys()))
            case "revoke":
                info = store.revoke(args.key)
                sys.stderr.write(f"revoked key {info.id} ({info.prefix}...) of {info.user.id}\n")
    finally:
        store.close()
    return 0


def _table(keys: list[ApiKeyInfo]) -> str:
    rows = [("ID", "PREFIX", "USER", "NAME", "CREATED", "LAST USED", "REVOKED")]
    rows += [
        (
            k.id,
            k.prefix,
            k.user.id,
            k.user.name,
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%SZ")
