"""The `feishu-bridge` group: global options, then one command group per capability."""

from __future__ import annotations

from pathlib import Path

import click

from bot.cli import auth, caches, coze, export, ops
from bot.config import load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read settings from this file instead of ./.env.")
@click.pass_context
def main(ctx: click.Context, env_file: Path | None) -> None:
    """Feishu Bridge: a self-hosted Feishu (Lark) bot server.

    Feishu events arrive at POST /webhook/event, are recorded in the database and handled by
    RQ workers. Run `feishu-bridge up --sandbox` to see it work with no Feishu credentials.
    Configuration comes from environment variables (or .env); see `feishu-bridge config check`.
    """
    overrides = {"_env_file": str(env_file)} if env_file else {}
    ctx.obj = {"settings": load_settings(**overrides)}


for command in (
    ops.config, ops.db, ops.worker, ops.cron, ops.web, ops.up, ops.sandbox, ops.events,
    auth.auth,
    caches.sources, caches.sync, caches.cache,
    coze.coze,
    export.export,
):
    main.add_command(command)

if __name__ == "__main__":
    main()
