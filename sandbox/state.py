"""The sandbox's world: credentials, issued tokens, chats and messages, fault knobs.

Held in memory behind one lock (the sandbox is a single process); deterministic ids and a
seeded random source so runs are reproducible.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sandbox.ads_state import AdsWorld
from sandbox.contract import CONTRACT_CHAT_ID, ContractWorld
from sandbox.coze import CozeWorld
from sandbox.seed import seed, seed_documents
from sandbox.sender import EventSender, SenderConfig
from sandbox.ws_knobs import EVENT_MODES
from sandbox.ws_server import LongConnectionServer

SANDBOX_APP_ID = "cli_sandbox00000001"
SANDBOX_APP_SECRET = "sandbox-app-secret-0001"
SANDBOX_ENCRYPT_KEY = "sandbox-encrypt-key-0001"
SANDBOX_VERIFICATION_TOKEN = "sandbox-verification-token-0001"
SANDBOX_TENANT_KEY = "sandbox_tenant_0001"
DEFAULT_CHAT_ID = "oc_sandbox_default_chat"
DEFAULT_USER_OPEN_ID = "ou_sandbox_user_0001"
DEFAULT_USER_NAME = "沙箱用户"
RECALLED_CONTENT = "This message was recalled"  # a recalled message's content in listings


@dataclass
class UserGrant:
    """A refresh token the sandbox issued, and what it stands for."""

    open_id: str
    scopes: str
    refresh_expires_at: float
    used: bool = False
    revoked: bool = False


@dataclass
class SandboxConfig:
    app_id: str = SANDBOX_APP_ID
    app_secret: str = SANDBOX_APP_SECRET
    encrypt_key: str = SANDBOX_ENCRYPT_KEY
    verification_token: str = SANDBOX_VERIFICATION_TOKEN
    webhook_url: str = ""
    tenant_token_lifetime: int = 7200
    user_token_lifetime: int = 7200
    refresh_token_lifetime: int = 30 * 24 * 3600  # fixed at authorisation; rotation keeps it
    redelivery_schedule: tuple[float, ...] = (15.0, 300.0, 3600.0, 21600.0)
    encrypt_events: bool = True
    seed: int = 20220101
    contract_today: date | None = None  # last day of the seeded contract records (None: today)
    # The app's subscription mode (Feishu's console: 订阅方式): events and card callbacks go to
    # the webhook, or over the long connection to one connected client (docs/sandbox.md).
    event_mode: str = "webhook"
    ws_ack_timeout: float = 3.0  # Feishu re-sends what is not acknowledged within 3 s


def churn_plan(value: Any) -> dict[str, int] | None:
    """`{"add": n, "delete": n, "pages"?: n}` validated (None or {} turns the fault off)."""
    if not value:
        return None
    if not isinstance(value, dict) or not set(value) <= {"add", "delete", "pages"}:
        raise ValueError("paging_churn: {\"add\": n, \"delete\": n, \"pages\"?: n}")
    plan = {key: int(value[key]) for key in ("add", "delete", "pages") if value.get(key) is not None}
    if any(n < 0 for n in plan.values()):
        raise ValueError("paging_churn: counts must not be negative")
    return None if plan.get("pages") == 0 else plan


@dataclass
class Faults:
    """Probabilities (0..1) applied to open-platform API calls, not to auth endpoints."""

    rate_limit: float = 0.0
    server_error: float = 0.0
    expire_tokens: bool = False  # every issued tenant token is treated as expired
    recall_cards: float = 0.0  # a card the app sends is recalled by a user right after (probability)
    # OAuth token endpoint: the next N refresh calls stall this long before being processed
    # (a slow network or a process killed mid-refresh), or answer HTTP 500 without rotating.
    slow_refresh_seconds: float = 0.0
    slow_refresh_count: int = 0
    refresh_server_errors: int = 0
    # Message sends (create, reply) throttled by IM: 230020 (this chat) or 11232 (the whole
    # service), HTTP 400, with `x-ogw-ratelimit-reset: throttle_reset_seconds` (None: no header).
    # Each fault below fires for the next `<name>_count` calls, then with probability `<name>`.
    throttle_chat: float = 0.0
    throttle_chat_count: int = 0
    throttle_tenant: float = 0.0
    throttle_tenant_count: int = 0
    throttle_reset_seconds: float | None = 1.0
    # What a gateway in front of every /open-apis endpoint (the token endpoints included) can do:
    # answer HTTP 502 with an HTML page, close the connection without an answer, or hold the
    # request `stall_seconds` (longer than the client's timeout) before processing it.
    html_502: float = 0.0
    html_502_count: int = 0
    reset: float = 0.0
    reset_count: int = 0
    stall: float = 0.0
    stall_count: int = 0
    stall_seconds: float = 5.0
    # Users edit a table while the app pages through it: after each records page that has more,
    # `add` rows are inserted at a random position and `delete` random rows removed (through the
    # same path as the edit endpoint, so subscribed apps get the change events); `pages` (if
    # given) limits how many pages churn. None: off. See sandbox/products/bitable.py.
    paging_churn: dict[str, int] | None = None

    def update(self, values: dict[str, Any]) -> None:
        for key in ("slow_refresh_count", "refresh_server_errors"):
            if key in values:
                setattr(self, key, max(0, int(values[key])))
        if "slow_refresh_seconds" in values:
            self.slow_refresh_seconds = max(0.0, float(values["slow_refresh_seconds"]))
        for key in ("rate_limit", "server_error", "recall_cards", *self.GATEWAY_FAULTS):
            if key in values:
                value = float(values[key])
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{key} must be between 0 and 1")
                setattr(self, key, value)
        if "expire_tokens" in values:
            self.expire_tokens = bool(values["expire_tokens"])
        self._update_gateway_faults(values)
        if "paging_churn" in values:
            self.paging_churn = churn_plan(values["paging_churn"])

    GATEWAY_FAULTS = ("throttle_chat", "throttle_tenant", "html_502", "reset", "stall")

    def _update_gateway_faults(self, values: dict[str, Any]) -> None:
        for key in self.GATEWAY_FAULTS:  # (their probabilities are set in `update`)
            if f"{key}_count" in values:
                setattr(self, f"{key}_count", max(0, int(values[f"{key}_count"])))
        if "stall_seconds" in values:
            self.stall_seconds = max(0.0, float(values["stall_seconds"]))
        if "throttle_reset_seconds" in values:
            reset = values["throttle_reset_seconds"]
            self.throttle_reset_seconds = None if reset is None else max(0.0, float(reset))

    def take(self, name: str, roll: Callable[[], float]) -> bool:
        """Whether gateway fault `name` fires for this call: while its count lasts (counting it
        down), else with its probability. Call under the state's lock."""
        count = getattr(self, f"{name}_count")
        if count > 0:
            setattr(self, f"{name}_count", count - 1)
            return True
        chance = getattr(self, name)
        return chance > 0 and roll() < chance


@dataclass
class Message:
    message_id: str
    chat_id: str
    msg_type: str
    content: str
    sender_type: str  # "user" or "app"
    sender_id: str
    parent_id: str = ""
    root_id: str = ""
    uuid: str | None = None
    create_time: int = field(default_factory=lambda: int(time.time() * 1000))
    versions: list[str] = field(default_factory=list)  # earlier contents of a patched card
    recalled: bool = False  # listed as deleted with fixed text; Feishu refuses to patch it
    update_time: int | None = None  # ms, the last patch
    patched_at: list[float] = field(default_factory=list)  # the last second's patches (5 QPS rule)

    def to_api(self, tenant_key: str) -> dict[str, Any]:
        """The message object as im/v1 returns it (a recalled one as `deleted` with the text
        Feishu's message list documents for it)."""
        return {
            "message_id": self.message_id,
            "root_id": self.root_id,
            "parent_id": self.parent_id,
            "msg_type": self.msg_type,
            "create_time": str(self.create_time),
            "update_time": str(self.update_time or self.create_time),
            "deleted": self.recalled,
            "updated": bool(self.versions),
            "chat_id": self.chat_id,
            "sender": {
                "id": self.sender_id,
                "id_type": "app_id" if self.sender_type == "app" else "open_id",
                "sender_type": self.sender_type,
                "tenant_key": tenant_key,
            },
            "body": {"content": RECALLED_CONTENT if self.recalled else self.content},
        }


class SandboxState:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.faults = Faults()
        self.lock = threading.RLock()
        self.random = random.Random(config.seed)
        self._ids = itertools.count(1)
        self.tenant_tokens: dict[str, float] = {}  # token → expiry (unix time)
        self.user_tokens: dict[str, tuple[str, float]] = {}  # access token → (open_id, expiry)
        self.refresh_tokens: dict[str, UserGrant] = {}
        self.auth_codes: dict[str, tuple[str, str, str, float]] = {}  # code → (open_id, scopes, uri, expiry)
        self.users: dict[str, str] = {DEFAULT_USER_OPEN_ID: DEFAULT_USER_NAME}
        self.refresh_log: list[dict[str, Any]] = []
        self._seed()
        self.subscriptions: set[str] = set()  # bitable app tokens subscribed to change events
        # Chats the app's bot is not a member of: Feishu never pushes their messages to the app
        # (a bot gets its 1:1 chats and @-mentions in its groups). Every other chat is the app's.
        self.chats_without_app: set[str] = {CONTRACT_CHAT_ID}
        # The app's role on a file: "manage" (owner/manager, the default), "edit" or "read".
        # Only managers may subscribe to a file's change events.
        self.file_roles: dict[str, str] = {}
        self.token_requests = 0
        self.messages: dict[str, Message] = {}
        self.bot_sent: list[Message] = []
        self.uploads: dict[str, tuple[str, bytes]] = {}  # file_key → (name, bytes) the bot uploaded
        self._uuid_index: dict[str, tuple[str, float]] = {}
        self.api_calls: list[dict[str, Any]] = []
        self.contract = ContractWorld(config.contract_today or date.today(), config.seed)
        self.coze = CozeWorld()
        self.ads = AdsWorld(seed=config.seed)  # the external ads platform (issue 17)
        if config.event_mode not in EVENT_MODES:
            raise ValueError(f"event_mode must be one of {', '.join(EVENT_MODES)}")
        if config.ws_ack_timeout <= 0:
            raise ValueError("ws_ack_timeout must be positive")
        # Its own generator, from the same seed: the server picks clients on its own thread, a
        # run's picks repeat for the same seed, and the state's own sequence of ids is unchanged.
        self.long_connection = LongConnectionServer(rng=random.Random(f"long-connection:{config.seed}"),
                                                    ack_timeout=config.ws_ack_timeout)
        self.sender = EventSender(
            SenderConfig(
                webhook_url=config.webhook_url,
                encrypt_key=config.encrypt_key,
                verification_token=config.verification_token,
                redelivery_schedule=config.redelivery_schedule,
                event_mode=config.event_mode,
            ),
            long_connection=self.long_connection,
        )

    @property
    def event_mode(self) -> str:
        """Where `sender.send` / `deliver_now` deliver: "webhook" or "websocket"."""
        return self.sender.config.event_mode

    @event_mode.setter
    def event_mode(self, mode: str) -> None:
        if mode not in EVENT_MODES:
            raise ValueError(f"event_mode must be one of {', '.join(EVENT_MODES)}")
        self.sender.config.event_mode = mode

    def _seed(self) -> None:
        self.apps, self.wiki_nodes = seed()
        self.spreadsheets, self.documents, guide_nodes = seed_documents()
        self.wiki_nodes.update({n.node_token: n for n in guide_nodes})

    def table(self, app_token: str, table_id: str):
        """A seeded bitable table (built on first use), or None."""
        app = self.apps.get(app_token)
        table = app.tables.get(table_id) if app else None
        if table is not None:
            table.ensure_built()
        return table

    def next_id(self, prefix: str) -> str:
        with self.lock:
            return f"{prefix}{next(self._ids):012d}{self.random.getrandbits(64):016x}"

    # -- tokens ----------------------------------------------------------------------

    def issue_tenant_token(self) -> tuple[str, int]:
        with self.lock:
            self.token_requests += 1
            token = self.next_id("t-sandbox")
            lifetime = self.config.tenant_token_lifetime
            self.tenant_tokens[token] = time.time() + lifetime
            return token, lifetime

    def tenant_token_state(self, token: str) -> str:
        """'valid', 'expired' or 'invalid'."""
        with self.lock:
            expiry = self.tenant_tokens.get(token)
        if expiry is None:
            return "invalid"
        if self.faults.expire_tokens or expiry <= time.time():
            return "expired"
        return "valid"

    def expire_tenant_tokens(self) -> int:
        """Make every tenant token issued so far expired (new ones are fine)."""
        with self.lock:
            for token in self.tenant_tokens:
                self.tenant_tokens[token] = 0.0
            return len(self.tenant_tokens)

    # -- user OAuth --------------------------------------------------------------------

    def issue_auth_code(self, open_id: str, scopes: str, redirect_uri: str) -> str:
        with self.lock:
            code = self.next_id("code-sandbox")
            self.auth_codes[code] = (open_id, scopes, redirect_uri, time.time() + 300)
            return code

    def issue_user_tokens(self, open_id: str, scopes: str, refresh_expires_at: float | None = None
                          ) -> dict[str, Any]:
        """An access token, plus a refresh token when offline_access was granted."""
        with self.lock:
            now = time.time()
            access = self.next_id("u-sandbox")
            self.user_tokens[access] = (open_id, now + self.config.user_token_lifetime)
            answer: dict[str, Any] = {"code": 0, "access_token": access, "token_type": "Bearer",
                                      "expires_in": self.config.user_token_lifetime, "scope": scopes}
            if "offline_access" in scopes.split():
                refresh = self.next_id("ur-sandbox")
                expires = refresh_expires_at or now + self.config.refresh_token_lifetime
                self.refresh_tokens[refresh] = UserGrant(open_id, scopes, expires)
                answer["refresh_token"] = refresh
                answer["refresh_token_expires_in"] = max(0, int(expires - now))
            return answer

    def user_token_state(self, token: str) -> str | None:
        """'valid' or 'expired' for a user access token the sandbox issued; None otherwise."""
        with self.lock:
            known = self.user_tokens.get(token)
        if known is None:
            return None
        return "valid" if known[1] > time.time() else "expired"

    def expire_user_tokens(self, open_id: str | None = None) -> int:
        with self.lock:
            hit = [t for t, (who, _) in self.user_tokens.items() if open_id in (None, who)]
            for token in hit:
                self.user_tokens[token] = (self.user_tokens[token][0], 0.0)
            return len(hit)

    def revoke_refresh_tokens(self, open_id: str | None = None) -> int:
        with self.lock:
            hit = [g for g in self.refresh_tokens.values() if open_id in (None, g.open_id)]
            for grant in hit:
                grant.revoked = True
            return len(hit)

    def log_refresh(self, grant_type: str, outcome: str, code: int) -> None:
        with self.lock:
            self.refresh_log.append({"grant_type": grant_type, "outcome": outcome, "code": code,
                                     "at": time.time()})

    # -- messages ----------------------------------------------------------------------

    def app_in_chat(self, chat_id: str) -> bool:
        """Whether `im.message.receive_v1` for this chat may reach the app (see chats_without_app)."""
        with self.lock:
            return chat_id not in self.chats_without_app

    def add_user_message(self, chat_id: str, user_open_id: str, text_content: str) -> Message:
        message = Message(self.next_id("om_"), chat_id, "text", text_content, "user", user_open_id)
        with self.lock:
            self.messages[message.message_id] = message
        return message

    def add_bot_message(self, *, chat_id: str, msg_type: str, content: str, uuid: str | None,
                        parent: Message | None = None) -> tuple[Message, bool]:
        """Store a message the bot sent. A repeated `uuid` within an hour returns the first
        message instead of sending again (Feishu's request de-duplication). (message, created)"""
        with self.lock:
            if uuid:
                known = self._uuid_index.get(uuid)
                if known and known[1] > time.time() - 3600:
                    return self.messages[known[0]], False
            message = Message(
                self.next_id("om_"), chat_id, msg_type, content, "app", self.config.app_id,
                parent_id=parent.message_id if parent else "",
                root_id=(parent.root_id or parent.message_id) if parent else "",
                uuid=uuid,
            )
            self.messages[message.message_id] = message
            self.bot_sent.append(message)
            if uuid:
                self._uuid_index[uuid] = (message.message_id, time.time())
            return message, True

    def record_call(self, method: str, path: str, status: int, code: int, fault: str = "") -> None:
        """`fault` names the gateway fault that shaped the answer (html_502, reset, stall)."""
        with self.lock:
            call = {"method": method, "path": path, "status": status, "code": code, "at": time.time()}
            if fault:
                call["fault"] = fault
            self.api_calls.append(call)

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.bot_sent.clear()
            self.uploads.clear()
            self._uuid_index.clear()
            self.api_calls.clear()
            self.token_requests = 0
            self.refresh_log.clear()
            self._seed()
            self.subscriptions.clear()
            self.file_roles.clear()
            self.faults = Faults()  # issued tokens stay valid: clients cache them, as with Feishu
            self.contract.cancel_timers()
            records = self.contract._records
            self.contract = ContractWorld(self.contract.today, self.config.seed, _records=records,
                                          _times=self.contract._times)
            self.coze = CozeWorld()
            self.ads = self.ads.fresh()  # no grants, calls or faults
            # The subscription mode and long-connection knobs go back to the configured ones;
            # connected clients stay connected (they are the bridge's, not the sandbox's).
            self.event_mode = self.config.event_mode
            self.long_connection.reset_knobs()
