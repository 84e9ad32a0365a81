"""The sandbox's world: credentials, issued tokens, chats and messages, fault knobs.

Held in memory behind one lock (the sandbox is a single process); deterministic ids and a
seeded random source so runs are reproducible.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.sender import EventSender, SenderConfig

SANDBOX_APP_ID = "cli_sandbox00000001"
SANDBOX_APP_SECRET = "sandbox-app-secret-0001"
SANDBOX_ENCRYPT_KEY = "sandbox-encrypt-key-0001"
SANDBOX_VERIFICATION_TOKEN = "sandbox-verification-token-0001"
SANDBOX_TENANT_KEY = "sandbox_tenant_0001"
DEFAULT_CHAT_ID = "oc_sandbox_default_chat"
DEFAULT_USER_OPEN_ID = "ou_sandbox_user_0001"


@dataclass
class SandboxConfig:
    app_id: str = SANDBOX_APP_ID
    app_secret: str = SANDBOX_APP_SECRET
    encrypt_key: str = SANDBOX_ENCRYPT_KEY
    verification_token: str = SANDBOX_VERIFICATION_TOKEN
    webhook_url: str = ""
    tenant_token_lifetime: int = 7200
    redelivery_schedule: tuple[float, ...] = (15.0, 300.0, 3600.0, 21600.0)
    encrypt_events: bool = True
    seed: int = 20220101


@dataclass
class Faults:
    """Probabilities (0..1) applied to open-platform API calls, not to auth endpoints."""

    rate_limit: float = 0.0
    server_error: float = 0.0
    expire_tokens: bool = False  # every issued tenant token is treated as expired

    def update(self, values: dict[str, Any]) -> None:
        for key in ("rate_limit", "server_error"):
            if key in values:
                value = float(values[key])
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{key} must be between 0 and 1")
                setattr(self, key, value)
        if "expire_tokens" in values:
            self.expire_tokens = bool(values["expire_tokens"])


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

    def to_api(self, tenant_key: str) -> dict[str, Any]:
        """The message object as im/v1 returns it."""
        return {
            "message_id": self.message_id,
            "root_id": self.root_id,
            "parent_id": self.parent_id,
            "msg_type": self.msg_type,
            "create_time": str(self.create_time),
            "update_time": str(self.create_time),
            "deleted": False,
            "updated": False,
            "chat_id": self.chat_id,
            "sender": {
                "id": self.sender_id,
                "id_type": "app_id" if self.sender_type == "app" else "open_id",
                "sender_type": self.sender_type,
                "tenant_key": tenant_key,
            },
            "body": {"content": self.content},
        }


class SandboxState:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.faults = Faults()
        self.lock = threading.RLock()
        self.random = random.Random(config.seed)
        self._ids = itertools.count(1)
        self.tenant_tokens: dict[str, float] = {}  # token → expiry (unix time)
        self.token_requests = 0
        self.messages: dict[str, Message] = {}
        self.bot_sent: list[Message] = []
        self._uuid_index: dict[str, tuple[str, float]] = {}
        self.api_calls: list[dict[str, Any]] = []
        self.sender = EventSender(
            SenderConfig(
                webhook_url=config.webhook_url,
                encrypt_key=config.encrypt_key,
                verification_token=config.verification_token,
                redelivery_schedule=config.redelivery_schedule,
            )
        )

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

    # -- messages ----------------------------------------------------------------------

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

    def record_call(self, method: str, path: str, status: int, code: int) -> None:
        with self.lock:
            self.api_calls.append({"method": method, "path": path, "status": status, "code": code,
                                   "at": time.time()})

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.bot_sent.clear()
            self._uuid_index.clear()
            self.api_calls.clear()
            self.token_requests = 0
            self.faults = Faults()  # issued tokens stay valid: clients cache them, as with Feishu
