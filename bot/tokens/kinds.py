"""What differs between providers' grants in the one token store: Redis keys, the texts of
errors and alerts, and the command that fixes a lost grant. Pure.

Feishu user tokens keep the keys and texts they had before providers existed (a rolling deploy
must not take a second lock, nor raise an alert already raised, under a new name).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from bot.tokens.providers import FEISHU, provider_fix

DEFAULT_SUBJECT = "default"  # a provider grant's subject when none is named


class GrantRow(Protocol):
    subject: str
    display_name: str
    created_at: datetime


class GrantKind:
    """An external provider's grants (see `FeishuKind` for Feishu user tokens)."""

    noun = "provider"
    no_refresh_token = "no refresh token stored"
    no_refresh_fix = ""

    def __init__(self, provider: str, label: str | None = None) -> None:
        self.provider = provider
        self.label = label or provider
        # a refusal that is not the grant's fault (e.g. wrong app credentials)
        self.other_fix = f"; check {provider}'s client_id and client_secret in OAUTH_PROVIDERS"

    def fix(self, subject: str | None) -> str:
        return provider_fix(self.provider, subject or DEFAULT_SUBJECT, DEFAULT_SUBJECT)

    def hint(self, subject: str | None) -> str:
        return f"run `{self.fix(subject)}`"

    def nobody(self) -> str:
        return f"nothing is authorised for {self.label} yet"

    def several(self, subjects: list[str]) -> str:
        return f"several {self.label} grants are stored ({', '.join(subjects)}); pick one with --subject"

    def lock_key(self, subject: str) -> str:
        return f"fb:lock:provider-token:{self.provider}:{subject}"

    def pending_key(self, subject: str, generation: int) -> str:
        return f"fb:token-pending:{self.provider}:{subject}:{generation}"

    def alert_prefix(self, subject: str) -> str:
        return f"token:{self.provider}:{subject}"

    def who(self, row: GrantRow) -> str:
        return row.display_name or row.subject

    def reauth_alert(self, row: GrantRow, message: str) -> tuple[str, str]:
        """(key, text) of the alert for a grant that is gone: once per grant."""
        key = f"{self.alert_prefix(row.subject)}:reauth_required:{int(row.created_at.timestamp())}"
        return key, self._reauth_text(row, message)

    def expiring_alert(self, row: GrantRow, ends: datetime, days: float) -> tuple[str, str]:
        """(key, text) of the alert for a refresh token that ends soon: once per end time."""
        key = f"{self.alert_prefix(row.subject)}:refresh_expiring:{ends:%Y%m%d%H%M}"
        return key, self._expiring_text(row, days)

    def _reauth_text(self, row: GrantRow, message: str) -> str:
        return (f"⚠️ {self.label} 授权已失效：{self.who(row)}（{message}）。"
                f"请运行 `{self.fix(row.subject)}` 重新授权。")

    def _expiring_text(self, row: GrantRow, days: float) -> str:
        return (f"⏰ {self.label} 授权 {self.who(row)} 的刷新令牌将在 {days:.1f} 天后过期，到期后依赖它的"
                f"同步会停止。请运行 `{self.fix(row.subject)}` 重新授权。")


class FeishuKind(GrantKind):
    """Feishu user tokens: the keys and texts of before."""

    noun = "user"
    no_refresh_token = "no refresh token (the grant lacks offline_access)"
    no_refresh_fix = "add the offline_access scope and "

    def __init__(self) -> None:
        super().__init__(FEISHU, "Feishu")
        self.other_fix = ""

    def fix(self, subject: str | None) -> str:
        return "feishu-bridge auth login"

    def nobody(self) -> str:
        return "no Feishu user has authorised the bot yet"

    def several(self, subjects: list[str]) -> str:
        return f"several users have authorised the bot ({', '.join(subjects)}); pick one"

    def lock_key(self, subject: str) -> str:
        return f"fb:lock:user-token:{subject}"

    def pending_key(self, subject: str, generation: int) -> str:
        return f"fb:token-pending:{subject}:{generation}"

    def alert_prefix(self, subject: str) -> str:
        return f"token:{subject}"

    def _reauth_text(self, row: GrantRow, message: str) -> str:
        return (f"⚠️ 飞书用户授权已失效：{self.who(row)}（{message}）。"
                f"请运行 `feishu-bridge auth login` 重新授权。")

    def _expiring_text(self, row: GrantRow, days: float) -> str:
        return (f"⏰ 飞书用户 {self.who(row)} 的刷新令牌将在 {days:.1f} 天后过期，到期后自动同步会停止。"
                f"请运行 `feishu-bridge auth login` 重新授权。")


FEISHU_KIND = FeishuKind()
