"""Chat commands: from a message's text to a typed command, or a usage error to reply with.

Pure (no I/O), so every wording — English and Chinese aliases, bad dates, missing arguments —
is unit-tested directly. Running a command is bot/chat/commands.py's job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date

_MENTION = re.compile(r"@_user_\d+|@_all")

# command word → canonical name; Chinese aliases for Chinese-speaking teams
COMMANDS = {
    "help": "help",
    "帮助": "help",
    "?": "help",
    "？": "help",
    "status": "status",
    "状态": "status",
    "sync": "sync",
    "同步": "sync",
    "cache": "cache",
    "缓存": "cache",
    "查询": "cache",
    "export": "export",
    "导出": "export",
    "auth": "auth",
    "授权": "auth",
    "coze": "coze",
    "扣子": "coze",
    "ping": "ping",
    "pipeline": "pipeline",
    "管道": "pipeline",
    "流水线": "pipeline",
}
SUBCOMMANDS = {
    "start": "start",
    "开始": "start",
    "启动": "start",
    "status": "status",
    "状态": "status",
    "retry": "retry",
    "重试": "retry",
    "list": "list",
    "列表": "list",
    "sync": "sync",
    "同步": "sync",
    "run": "run",
    "运行": "run",
    "执行": "run",
}

USAGE = {
    "help": "/help（帮助）— 查看全部命令",
    "status": "/status（状态）— 缓存、令牌、导出、Coze 同步的概况",
    "sync": "/sync [数据源] [--force]（同步）— 立即同步全部或一个数据源",
    "cache": "/cache 数据源 表 [字段=值 …]（查询）— 查询缓存，结果多时以 xlsx 文件发回",
    "export": "/export start 开始日期 结束日期 | /export status | /export retry [窗口]（导出）",
    "auth": "/auth status（授权 状态）— 用户令牌的剩余时间与刷新情况",
    "coze": "/coze list | /coze sync 模板（扣子）— Coze 同步模板与手动同步",
    "pipeline": "/pipeline list | /pipeline run 名称 [日期] | /pipeline status [名称]（管道）— 写入多维表格",
}


class UsageError(ValueError):
    """Input that is not a valid command: the message is replied to the user as is."""


@dataclass(frozen=True)
class Command:
    name: str  # help, status, sync, cache, export, auth, coze, pipeline, ping
    action: str = ""  # export: start/status/retry; coze: list/sync; auth: status; pipeline: list/run/status
    args: tuple[str, ...] = ()
    force: bool = False
    start: date | None = None
    end: date | None = None
    filters: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return " ".join(p for p in (self.name, self.action) if p)


def text_of_message(content: str | None) -> str:
    """The plain text of a `text` message's JSON content, without @mention placeholders."""
    if not content:
        return ""
    try:
        doc = json.loads(content)
    except ValueError:
        return ""
    text = doc.get("text") if isinstance(doc, dict) else None
    if not isinstance(text, str):
        return ""
    return _MENTION.sub(" ", text).strip()


def looks_like_command(text: str) -> bool:
    words = text.strip().split()
    if not words:
        return False
    first = words[0]
    return first.startswith("/") or first.lower() in COMMANDS


def parse(text: str) -> Command | None:
    """A command, None for chatter (no leading `/` and no command word), or UsageError."""
    words = text.strip().split()
    if not words or not looks_like_command(text):
        return None
    word = words[0].removeprefix("/").lower()
    if not word:
        raise UsageError("请在 / 后输入命令。发送 /help 查看可用命令。")
    name = COMMANDS.get(word)
    if name is None:
        raise UsageError(f"未知命令 /{word}。发送 /help 查看可用命令。")
    rest = words[1:]
    match name:
        case "help" | "status" | "ping":
            return Command(name)
        case "sync":
            force = any(w in ("--force", "-f", "强制") for w in rest)
            others = [w for w in rest if w not in ("--force", "-f", "强制")]
            if any(w.startswith("-") for w in others) or len(others) > 1:
                raise UsageError(f"用法：{USAGE['sync']}")
            return Command("sync", args=tuple(others), force=force)
        case "cache":
            if len(rest) < 2:
                raise UsageError(f"用法：{USAGE['cache']}")
            filters = {}
            for item in rest[2:]:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise UsageError(f"筛选条件 {item!r} 应写成 字段=值。用法：{USAGE['cache']}")
                filters[key] = value
            return Command("cache", args=(rest[0], rest[1]), filters=filters)
        case "export":
            return _export(rest)
        case "auth":
            if (rest and SUBCOMMANDS.get(rest[0].lower()) != "status") or len(rest) > 1:
                raise UsageError(f"用法：{USAGE['auth']}")
            return Command("auth", "status")
        case "coze":
            action = SUBCOMMANDS.get(rest[0].lower()) if rest else None
            if action == "list" and len(rest) == 1:
                return Command("coze", "list")
            if action == "sync" and len(rest) == 2:
                return Command("coze", "sync", args=(rest[1],))
            raise UsageError(f"用法：{USAGE['coze']}")
        case "pipeline":
            return _pipeline(rest)
    raise UsageError(f"未知命令 /{word}。")  # pragma: no cover - every name is matched above


def _export(rest: list[str]) -> Command:
    action = SUBCOMMANDS.get(rest[0].lower()) if rest else None
    if action == "start":
        if len(rest) != 3:
            raise UsageError(f"用法：{USAGE['export']}（日期格式 YYYY-MM-DD）")
        start, end = _day(rest[1]), _day(rest[2])
        if start > end:
            raise UsageError(f"开始日期 {start} 晚于结束日期 {end}。")
        return Command("export", "start", start=start, end=end)
    if action == "status" and len(rest) == 1:
        return Command("export", "status")
    if action == "retry" and len(rest) <= 2:
        if len(rest) == 2 and not rest[1].isdigit():
            raise UsageError(f"窗口编号应为数字，收到 {rest[1]!r}。")
        return Command("export", "retry", args=tuple(rest[1:]))
    raise UsageError(f"用法：{USAGE['export']}")


def _pipeline(rest: list[str]) -> Command:
    action = SUBCOMMANDS.get(rest[0].lower()) if rest else None
    if action == "list" and len(rest) == 1:
        return Command("pipeline", "list")
    if action == "status" and len(rest) <= 2:
        return Command("pipeline", "status", args=tuple(rest[1:]))
    if action == "run" and len(rest) in (2, 3):
        day = _day(rest[2]) if len(rest) == 3 else None
        return Command("pipeline", "run", args=(rest[1],), start=day, end=day)
    raise UsageError(f"用法：{USAGE['pipeline']}")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"无法识别的日期 {text!r}，请使用 YYYY-MM-DD，例如 2022-01-01。") from None


def help_text() -> str:
    return "可用命令：\n" + "\n".join(USAGE.values())
