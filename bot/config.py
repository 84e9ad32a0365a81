"""The one typed settings object, read from the environment (and `.env`) when asked for.

Nothing reads the environment at import time: `load_settings()` is called by the app
factory, the CLI and the worker, and the result is passed down explicitly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

FEISHU_OPEN_PLATFORM = "https://open.feishu.cn"
PROVIDER_NAME = r"^[a-z][a-z0-9_-]{0,63}$"


class ProviderCredentials(BaseModel):
    """One external OAuth provider's credentials (OAUTH_PROVIDERS); `token_url`/`api_url`
    override the declaration's (bot/tokens/providers.py)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    token_url: str = ""
    api_url: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # Feishu app credentials (Developer Console → Credentials & Basic Info / Events).
    feishu_app_id: str = ""
    feishu_app_secret: SecretStr = SecretStr("")
    feishu_encrypt_key: SecretStr = SecretStr("")
    feishu_verification_token: SecretStr = SecretStr("")
    feishu_base_url: str = FEISHU_OPEN_PLATFORM

    # Storage. Unset DATABASE_URL → SQLite file under var_dir; unset REDIS_URL → embedded Redis.
    database_url: str = ""
    redis_url: str = ""
    var_dir: Path = Path("var")

    admin_token: SecretStr = SecretStr("")  # ≥ 32 characters outside the sandbox
    # Web surfaces (docs: README "Security model"): dashboard sessions live server-side in Redis.
    session_lifetime_seconds: int = 12 * 3600
    force_https: bool = False  # session cookies get `Secure` even when TLS ends at a proxy
    login_max_failures: int = 10  # failed logins / API bearer tokens per client and window…
    login_failure_window_seconds: int = 600  # …before that client is answered 429
    port: int = 8000
    host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_json: bool | None = None  # None = JSON when stderr is not a TTY

    # How Feishu delivers events (README "Connecting a real Feishu app"): `webhook` — Feishu POSTs
    # them to /webhook/event, which needs a public HTTPS URL; `websocket` — `feishu-bridge listen`
    # dials out to Feishu's long connection (长连接) and no public URL is needed. The console's
    # subscription mode must say the same.
    feishu_event_mode: Literal["webhook", "websocket"] = "webhook"
    # The long connection (bot/intake/connection.py): the endpoint-discovery call's timeout (the
    # SDK sets none), how many ping intervals without a single frame mean the connection is dead,
    # the longest wait between reconnects, and threads recording events.
    ws_discovery_timeout_seconds: float = Field(default=10.0, gt=0)
    ws_liveness_intervals: float = Field(default=1.5, ge=1.1, le=1.8)  # + the check period < 2
    ws_reconnect_max_seconds: float = Field(default=60.0, gt=0)
    ws_threads: int = Field(default=16, ge=1)

    # Intake and workers.
    # Seconds between retries of a failed event job, e.g. EVENT_RETRY_INTERVALS=10,30,120.
    event_retry_intervals: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [10, 30, 120, 600, 1800]
    )
    event_lease_seconds: int = 600  # a receipt claimed longer than this is considered abandoned
    sweep_interval_seconds: int = 60
    web_workers: int = 4  # gunicorn processes
    web_threads: int = 32  # threads per web process that run the Flask app (bot/processes/asgi.py)
    # A request body not received whole within this many seconds is answered 408: a slow
    # client must not hold a connection (or, before, a thread) for long (issue 15). At most
    # gunicorn's `timeout` (30 s), past which gunicorn itself drops the connection, unanswered.
    web_body_timeout_seconds: float = Field(default=10.0, gt=0, le=30)
    workers: int = 2

    # Feishu calls: retries after a throttle (99991400, IM's 230020/11232), a server error, a
    # non-JSON answer or a network error. Feishu's x-ogw-ratelimit-reset runs to tens of seconds.
    feishu_retries: int = 5
    feishu_retry_max_wait: float = 60.0  # seconds; caps x-ogw-ratelimit-reset and the backoff
    feishu_timeout_seconds: float = 30.0  # per HTTP call (connect, then read); then retried

    # User OAuth tokens (see bot/tokens/user_tokens.py).
    # Fernet key(s), comma-separated, newest first; unset → a key file generated under var_dir.
    token_encryption_key: SecretStr = SecretStr("")
    oauth_redirect_url: str = ""  # unset → http://{host}:{port}/oauth/callback
    oauth_scopes: str = "offline_access"  # space-separated; offline_access is always requested
    feishu_accounts_url: str = ""  # unset → derived from FEISHU_BASE_URL (open.* → accounts.*)
    token_refresh_margin_seconds: int = 300  # refresh when the access token has less left
    token_proactive_margin_seconds: int = 1800  # the periodic job refreshes within this margin
    token_check_interval_seconds: int = 300
    token_lock_ttl_seconds: int = 30  # a refresh lock left by a dead process frees itself after this
    token_alert_days: float = 3.0  # alert when the refresh token has less than this left
    admin_chat_id: str = ""  # where alerts go (a chat the bot is in)
    # External OAuth providers (bot/tokens/provider_tokens.py): JSON, e.g. OAUTH_PROVIDERS=
    # {"ads": {"client_id": "…", "client_secret": "…", "token_url": "…", "api_url": "…"}}; each is
    # declared (grant style, lifetimes, error codes) by a module in PIPELINE_MODULES.
    oauth_providers: Annotated[dict[str, ProviderCredentials], NoDecode] = Field(default_factory=dict)
    # Modules (comma-separated) that may declare pipelines and providers (`PROVIDERS = [...]`).
    pipeline_modules: str = "bot.pipelines.examples,pipelines"

    # Contract export (issue 5). The endpoint and its session come from `export auth --from-curl`.
    export_range_start: str = "2022-01-01"
    export_cap: int = 1000  # the endpoint's row limit per export
    export_initial_days: int = 7
    export_fill: float = 0.9  # aim windows at this share of the cap
    export_finer_bounds: bool = False  # the endpoint takes "YYYY-MM-DD HH:MM:SS" bounds
    export_keyword: str = ""
    export_search_tab: int = 0  # searchTabEnumCode
    export_concurrency: int = 3  # windows exported at once
    # The cooperation list's search endpoint (same session); its `total` sizes windows exactly.
    # Empty: size windows from the density of earlier files only (more export calls).
    export_count_path: str = "/clm/api/cooperation/searchCooperationRecords"
    export_count_qps: float = 5.0
    export_qps: float = 0.5  # export submissions per second, at most
    export_max_failures: int = 8  # failed submissions of one window before it is marked failed
    export_backoff_seconds: float = 5.0  # first retry delay after a 429/5xx; doubles, with jitter
    export_backoff_max_seconds: float = 600.0
    export_file_timeout_seconds: float = 900.0  # no completion message by then: export again
    export_submit_lease_seconds: float = 120.0  # a claimed submission whose worker died is freed
    export_user: str = ""  # open_id whose user token reads the contract bot's chat
    export_chat_id: str = ""  # the user's chat with the contract bot (completion messages)
    export_sender_id: str = ""  # the contract bot's id; unset: any sender in that chat
    export_file_pattern: str = "协同"  # regex a completion file's name must match
    # List the contract bot's chat as export_user this often while a run waits for files: the only
    # way they arrive (the app's bot is not in that chat: no events). 0: off, refused by
    # `config check` while an export runs.
    export_poll_seconds: int = 30
    export_tick_seconds: int = 30  # re-plan the active run this often (timeouts, back-offs)
    export_id_column: str = "协同记录ID"
    export_time_column: str = "创建时间"
    export_archive_dir: Path | None = None  # unset → var_dir/exports
    # A downloaded workbook is refused before it is read past these (an xlsx is a zip: 228 KB
    # once unpacked to 1.5 M rows); a contract export holds at most 1000 rows.
    export_max_uncompressed_mb: float = 200.0
    export_max_rows: int = 100_000
    export_messenger_url: str = "https://li.feishu.cn/next/messenger"
    export_browser_profile: Path | None = None  # unset → var_dir/browser-profile
    export_browser_headless: bool = True
    playwright_chromium_path: str = ""  # unset → Debian's chromium on PATH, else Playwright's own

    # Chat commands (issue 7): who may command the bot — these users anywhere, anyone in these chats.
    chat_admins: Annotated[list[str], NoDecode] = Field(default_factory=list)  # open_ids, comma-separated
    chat_allowed_chats: Annotated[list[str], NoDecode] = Field(default_factory=list)  # chat_ids
    # Formula and lookup values change without change events: their columns are re-read this
    # often (seconds; 0: only with each full sync).
    cache_formula_refresh_seconds: int = 3600
    chat_card_refresh_seconds: int = 3  # progress cards are patched this often while their job runs

    # Coze sync (issue 6): templates → triggers → outbox → workflow calls.
    coze_default_api_url: str = "https://api.coze.cn"
    coze_max_attempts: int = 10  # failed calls of one outbox row before it is dead-lettered
    coze_backoff_seconds: float = 2.0  # first retry delay; doubles per attempt, with jitter
    coze_backoff_max_seconds: float = 600.0
    coze_batch_size: int = 200  # outbox rows claimed per dispatch round
    coze_dispatch_threads: int = 8  # calls in flight per dispatch job (distinct rows only)
    coze_timeout_seconds: float = 30.0  # per workflow call
    coze_claim_lease_seconds: float = 300.0  # a claimed row whose worker died is freed after this
    coze_poll_seconds: int = 5  # the dispatcher's periodic wake-up (PostgreSQL also NOTIFYs)
    coze_retention_days: float = 7.0  # delivered outbox rows are deleted after this
    coze_manual_wait_seconds: float = 30.0  # manual-sync API waits this long for the result
    # Module prefixes a template's custom mapping callable may come from (comma-separated).
    coze_mapping_modules: str = "bot.coze.examples,coze_mappings"

    # Pipelines (issue 17): a source's rows upserted into a bitable table on a schedule, then
    # read back and verified (bot/pipelines/).
    # The zone of `daily HH:MM` schedules, of the days a run covers, and of date cells (a date
    # is written as midnight here).
    pipeline_timezone: str = "Asia/Shanghai"
    pipeline_tick_seconds: int = 60  # the cron looks for due pipelines and stalled runs this often
    pipeline_job_timeout_seconds: int = 3 * 3600  # one run's RQ job (a 90-day backfill included)
    pipeline_stale_seconds: int = Field(default=600, ge=60)  # a running run silent this long is resumed
    pipeline_max_attempts: int = Field(default=3, ge=1)  # claims of one run before it is failed
    pipeline_retry_seconds: int = 300  # a run that failed transiently waits this × attempts
    pipeline_catch_up_days: int = Field(default=7, ge=1)  # missed days a scheduled run fills, at most
    pipeline_max_days: int = Field(default=366, ge=1)  # days one run may cover
    # One writer per bitable table (Feishu answers 1254291 to concurrent writes): a Redis lock,
    # its TTL renewed after every batch, and how long a run waits for it before re-queuing.
    pipeline_lock_ttl_seconds: int = Field(default=120, ge=10)
    pipeline_lock_wait_seconds: float = 30.0
    pipeline_reread_delay_seconds: float = 1.0  # after writing, before reading the table back

    # Retention (README "Events and retention"): one periodic job trims these, in batches; ≤ 0 keeps
    # forever. Receipts de-duplicate Feishu's re-deliveries (≈ 7.1 h) and replays inside the window.
    event_receipt_retention_days: float = 7.0  # finished receipts (done, unhandled, failed)
    chat_command_retention_days: float = 90.0  # the chat command audit trail
    token_refresh_retention_days: float = 90.0  # user-token refresh history
    pipeline_run_retention_days: float = 90.0  # finished pipeline runs and their days
    export_archive_retention_days: float = 180.0  # archive files of export runs finished before
    retention_interval_seconds: int = 3600  # how often the retention job runs (0: never)
    retention_batch_size: int = 1000  # rows per delete transaction
    retention_max_batches: int = 100  # per table and run; the next run goes on
    # Feishu signs every (re-)delivery when it sends it: a signed X-Lark-Request-Timestamp further
    # than this from our clock is refused (401 stale_timestamp). 0 turns the check off.
    webhook_timestamp_window_seconds: int = 900

    @field_validator("feishu_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        # lark-oapi concatenates domain + path, so a trailing slash yields "//open-apis".
        return value.rstrip("/")

    @field_validator("pipeline_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"PIPELINE_TIMEZONE {value!r} is no IANA time zone (e.g. Asia/Shanghai)") \
                from exc
        return value

    @field_validator("chat_admins", "chat_allowed_chats", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("oauth_providers", mode="before")
    @classmethod
    def _providers_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except ValueError as exc:  # the message names the position, never the text
                raise ValueError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                                 'expected {"NAME": {"client_id": …, "client_secret": …}}') from None
        if not isinstance(value, dict):
            raise ValueError('expected a JSON object: {"NAME": {"client_id": …, "client_secret": …}}')
        bad = [str(name) for name in value if not re.match(PROVIDER_NAME, str(name)) or name == "feishu"]
        if bad:
            raise ValueError(f"provider names must be lower-case letters, digits, '-' and '_', not "
                             f"'feishu': {', '.join(bad)}")
        return value

    @field_validator("event_retry_intervals", mode="before")
    @classmethod
    def _parse_intervals(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [int(part) for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _retention_covers_replays(self) -> Settings:
        """Receipts are the only memory of which events were seen: deleting them sooner than Feishu
        re-delivers, or than the timestamp window lets a captured request back in, would let a
        re-delivery or a replay run its handler twice."""
        from datetime import timedelta

        from bot.intake.freshness import min_receipt_retention

        days = self.event_receipt_retention_days
        needed = min_receipt_retention(self.webhook_timestamp_window_seconds)
        if self.webhook_timestamp_window_seconds < 0:
            raise ValueError("WEBHOOK_TIMESTAMP_WINDOW_SECONDS must be ≥ 0 (0 turns the check off)")
        if days > 0 and timedelta(days=days) < needed:
            raise ValueError(
                f"EVENT_RECEIPT_RETENTION_DAYS={days} is shorter than Feishu's re-delivery span plus "
                f"WEBHOOK_TIMESTAMP_WINDOW_SECONDS ({needed.total_seconds() / 86400:.2f} days): a "
                "re-delivered or replayed event would run twice; raise it (default 7)")
        if days > 0 and self.webhook_timestamp_window_seconds == 0:
            raise ValueError(
                "WEBHOOK_TIMESTAMP_WINDOW_SECONDS=0 accepts any timestamp, so receipts are the only replay "
                "defence: set EVENT_RECEIPT_RETENTION_DAYS=0 (keep forever) or a window (default 900)")
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            # Heroku still hands out postgres:// URLs, which SQLAlchemy 2 rejects.
            url = self.database_url
            if url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url[len("postgres://") :]
            elif url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            return url
        return f"sqlite:///{(self.var_dir / 'feishu-bridge.db').resolve()}"

    @property
    def effective_redirect_url(self) -> str:
        if self.oauth_redirect_url:
            return self.oauth_redirect_url
        host = "localhost" if self.host in ("0.0.0.0", "127.0.0.1", "") else self.host
        return f"http://{host}:{self.port}/oauth/callback"

    @property
    def effective_accounts_url(self) -> str:
        """Where users authorise: accounts.feishu.cn for open.feishu.cn (likewise for Lark);
        any other base (the sandbox, a proxy) serves the authorise page itself."""
        if self.feishu_accounts_url:
            return self.feishu_accounts_url.rstrip("/")
        for open_host, accounts_host in (("open.feishu.cn", "accounts.feishu.cn"),
                                         ("open.larksuite.com", "accounts.larksuite.com")):
            if self.feishu_base_url.endswith("//" + open_host):
                return self.feishu_base_url.replace(open_host, accounts_host)
        return self.feishu_base_url

    @property
    def effective_archive_dir(self) -> Path:
        return self.export_archive_dir or self.var_dir / "exports"

    @property
    def effective_browser_profile(self) -> Path:
        return self.export_browser_profile or self.var_dir / "browser-profile"

    @property
    def sandbox_mode(self) -> bool:
        """The bridge talks to a local emulator (`up --sandbox`, tests), never to Feishu: lark-oapi
        accepts plain http:// only for loopback hosts, so no real deployment looks like this."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.feishu_base_url)
        return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")

    @property
    def uses_embedded_redis(self) -> bool:
        return not self.redis_url

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, for scrubbing: each SecretStr setting (a key list split
        at its commas), the OAuth providers' client secrets and the passwords in DATABASE_URL and
        REDIS_URL."""
        from urllib.parse import urlsplit

        values: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                values += value.get_secret_value().split(",")
        values += [p.client_secret.get_secret_value() for p in self.oauth_providers.values()]
        for url in (self.database_url, self.redis_url):
            if "://" in url and urlsplit(url).password:
                values.append(urlsplit(url).password)
        return [v.strip() for v in values if v.strip()]

    def missing_for_real_feishu(self) -> list[str]:
        """What a real (non-sandbox) deployment still needs, as environment variable names."""
        missing = []
        if not self.feishu_app_id:
            missing.append("FEISHU_APP_ID")
        # over the long connection the app secret authenticates the connection itself
        event_secrets = ("feishu_encrypt_key", "feishu_verification_token") \
            if self.feishu_event_mode == "webhook" else ()
        for name in ("feishu_app_secret", *event_secrets):
            if not getattr(self, name).get_secret_value():
                missing.append(name.upper())
        if not self.admin_token.get_secret_value():
            missing.append("ADMIN_TOKEN")
        if not self.token_encryption_key.get_secret_value():
            missing.append("TOKEN_ENCRYPTION_KEY")
        if not self.admin_chat_id:
            missing.append("ADMIN_CHAT_ID")
        return missing


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
