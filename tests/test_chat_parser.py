"""The chat command parser: every command, its Chinese aliases, and clear usage errors."""

from __future__ import annotations

import json
from datetime import date

import pytest

from bot.chat.parser import Command, UsageError, help_text, parse, text_of_message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/help", Command("help")),
        ("帮助", Command("help")),
        ("/帮助", Command("help")),
        ("/status", Command("status")),
        ("状态", Command("status")),
        ("/ping", Command("ping")),
        ("/sync", Command("sync")),
        ("/sync crm --force", Command("sync", args=("crm",), force=True)),
        ("同步 crm 强制", Command("sync", args=("crm",), force=True)),
        (
            "/cache crm 客户 城市=上海 等级=A",
            Command("cache", args=("crm", "客户"), filters={"城市": "上海", "等级": "A"}),
        ),
        (
            "/export start 2022-01-01 2022-03-31",
            Command("export", "start", start=date(2022, 1, 1), end=date(2022, 3, 31)),
        ),
        (
            "导出 开始 2022-01-01 2022-03-31",
            Command("export", "start", start=date(2022, 1, 1), end=date(2022, 3, 31)),
        ),
        ("/export status", Command("export", "status")),
        ("/导出 状态", Command("export", "status")),
        ("/export retry", Command("export", "retry")),
        ("/export retry 12", Command("export", "retry", args=("12",))),
        ("/auth status", Command("auth", "status")),
        ("授权", Command("auth", "status")),
        ("/coze list", Command("coze", "list")),
        ("/coze sync 客户数据同步", Command("coze", "sync", args=("客户数据同步",))),
        ("扣子 同步 abc", Command("coze", "sync", args=("abc",))),
    ],
)
def test_commands_and_aliases(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["hello there", "", "   ", "今天天气不错", "please sync"])
def test_chatter_is_not_a_command(text):
    assert parse(text) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/frobnicate", "未知命令 /frobnicate"),
        ("/", "请在 / 后输入命令"),
        ("/export start 2022-13-01 2022-03-31", "无法识别的日期 '2022-13-01'"),
        ("/export start 2022-03-31 2022-01-01", "开始日期 2022-03-31 晚于结束日期 2022-01-01"),
        ("/export start 2022-01-01", "用法：/export start"),
        ("/export", "用法：/export start"),
        ("/export retry abc", "窗口编号应为数字"),
        ("/cache crm", "用法：/cache"),
        ("/cache crm 客户 城市", "应写成 字段=值"),
        ("/coze", "用法：/coze"),
        ("/coze sync", "用法：/coze"),
        ("/sync a b", "用法：/sync"),
        ("/sync --everything", "用法：/sync"),
        ("/auth logout", "用法：/auth"),
    ],
)
def test_bad_input_gets_usage_help(text, says):
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert says in str(caught.value)


def test_mentions_are_removed_and_help_lists_every_command():
    content = json.dumps({"text": "@_user_1 /status"})
    assert text_of_message(content) == "/status" and parse(text_of_message(content)) == Command("status")
    assert text_of_message("not json") == "" and text_of_message(json.dumps({"text": 3})) == ""
    text = help_text()
    for word in (
        "/help",
        "/status",
        "/sync",
        "/cache",
        "/export start",
        "/auth status",
        "/coze list",
        "/coze sync",
    ):
        assert word in text
