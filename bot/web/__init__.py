"""HTTP blueprints of the bridge's web process. Views reach the process's Services through
`app_services()`; `bot.app.create_app` installs them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from bot.services import Services

EXTENSION = "feishu_bridge"


def app_services() -> Services:
    return current_app.extensions[EXTENSION]
