"""`ponte config check`: the effective configuration with secrets masked, or what is wrong.

Exit 0 with every setting, its value and where it came from (environment, .env, default); a
ConfigError (unknown or malformed variable, missing required setting) is printed by `cli.py` and
exits 11, exactly as `ponte serve` would refuse to start.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bridge.config import Settings, describe, env_file_values, mask_url


def add_parser(sub: Any) -> None:
    config = sub.add_parser("config", help="configuration: check and print it")
    actions = config.add_subparsers(dest="action", required=True)
    actions.add_parser("check", help="print the effective configuration, secrets masked "
                                     "(exit 11 if it would not start)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    settings.check_required()
    rows = describe(settings, os.environ, env_file_values(Settings.model_config["env_file"]))
    width = max(len(name) + len(value) for name, value, _ in rows) + 3
    for name, value, source in rows:
        print(f"{name}={value}".ljust(width) + f"# {source}")
    redis = ("embedded, " if settings.embedded_redis else "") + mask_url(
        settings.redis_connection_url())
    print(f"# Redis: {redis}")
    print(f"# Sessions: {settings.sessions_dir}  Spool: {settings.spool_dir}")
    print("# The configuration is valid.")
    return 0
