"""The download fallback: Feishu's web messenger in a real Chromium, driven by Playwright.

A persistent browser profile keeps the login, so the QR code is scanned once
(`feishu-bridge export login` opens a visible browser for that) and later downloads run
headless. Chromium comes from PLAYWRIGHT_CHROMIUM_PATH, else the system's `chromium`, else
Playwright's own download.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from bot.config import Settings
from bot.private import private_dir

DOWNLOAD_BUTTON = "下载文件"
LOGIN_MARKER = "扫码登录"


class BrowserLoginRequired(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            "the web messenger is not logged in: run `feishu-bridge export login` and scan the QR code"
        )


def chromium_path(settings: Settings) -> str | None:
    return settings.playwright_chromium_path or shutil.which("chromium") or shutil.which("chromium-browser")


def _context(playwright, settings: Settings, *, headless: bool):
    profile = settings.effective_browser_profile
    private_dir(profile)  # it holds the Feishu session cookies
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return playwright.chromium.launch_persistent_context(
        str(profile),
        headless=headless,
        executable_path=chromium_path(settings),
        args=args,
        accept_downloads=True,
    )


def _chat_url(settings: Settings) -> str:
    return f"{settings.export_messenger_url}?chat={settings.export_chat_id}"


def download(
    settings: Settings, message_id: str, file_name: str, target: Path, timeout: float = 60.0
) -> Path:
    """Click 下载文件 on the message that carries `file_name` and save what the browser downloads."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = _context(playwright, settings, headless=settings.export_browser_headless)
        try:
            page = context.new_page()
            page.goto(_chat_url(settings), wait_until="domcontentloaded", timeout=timeout * 1000)
            if page.get_by_text(LOGIN_MARKER).count():
                raise BrowserLoginRequired
            message = page.locator(f'[data-message-id="{message_id}"]')
            if not message.count():
                message = page.locator(".message", has_text=file_name).last
            with page.expect_download(timeout=timeout * 1000) as info:
                message.get_by_text(DOWNLOAD_BUTTON).click()
            info.value.save_as(str(target))
            return target
        finally:
            context.close()


def login(settings: Settings, *, headless: bool = False, timeout: float = 300.0) -> bool:
    """Open the messenger and wait until the QR code has been scanned (the login page is gone)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = _context(playwright, settings, headless=headless)
        try:
            page = context.new_page()
            page.goto(settings.export_messenger_url, wait_until="domcontentloaded")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not page.get_by_text(LOGIN_MARKER).count():
                    return True
                page.wait_for_timeout(300)
            return False
        finally:
            context.close()
