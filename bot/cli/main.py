"""The `feishu-bridge` group: global options, then one command group per capability."""

from __future__ import annotations

from pathlib import Path

import click

from bot.cli import auth, caches, coze, db, export, ops, pipelines, startup
from bot.cli.common import attach_running_stack
from bot.cli.errors import BridgeGroup
from bot.config import load_settings

# Commands that run until stopped: they keep Python's usual garbage collection.
LONG_RUNNING = frozenset({"worker", "cron", "web", "listen", "up", "sandbox", "sync"})


@click.group(cls=BridgeGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read settings from this file instead of ./.env.")
@click.option("--debug", is_flag=True,
              help="Show the traceback when a command fails (also LOG_LEVEL=DEBUG).")
@click.pass_context
def main(ctx: click.Context, env_file: Path | None, debug: bool) -> None:
    """Feishu Bridge: a self-hosted Feishu (Lark) bot server.

    Feishu events arrive at POST /webhook/event, are recorded in the database and handled by
    RQ workers. Run `feishu-bridge up --sandbox` to see it work with no Feishu credentials.
    Configuration comes from environment variables (or .env); see `feishu-bridge config check`.
    While `feishu-bridge up` runs, commands in the same directory use its database and Redis.
    """
    from bot.logs import quiet_third_party_warnings

    if ctx.invoked_subcommand in LONG_RUNNING:
        startup.long_running()
    quiet_third_party_warnings()  # a dependency's deprecation warning is not the user's business
    overrides = {"_env_file": str(env_file)} if env_file else {}
    ctx.obj = {"debug": debug}
    settings = load_settings(**overrides)
    ctx.obj["home_var_dir"] = settings.var_dir  # where a running `up` leaves var/stack.json
    if ctx.invoked_subcommand != "up":  # a second terminal: join the stack running here
        settings = attach_running_stack(settings)
    ctx.obj["settings"] = settings


for command in (
    ops.config, db.db, ops.worker, ops.cron, ops.web, ops.listen, ops.up, ops.sandbox, ops.events,
    auth.auth,
    caches.sources, caches.sync, caches.cache,
    coze.coze,
    export.export,
    pipelines.pipeline,
):
    main.add_command(command)
