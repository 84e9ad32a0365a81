"""The export endpoint's browser session: stored sealed, shown masked, probed on request."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.export.contract import Answer, ContractClient
from bot.export.curl import ExportAuth
from bot.masking import register_secrets
from bot.models import ExportAuth as ExportAuthRow
from bot.models import utcnow
from bot.tokens.secretbox import SecretBox


class NoExportAuth(RuntimeError):
    """No curl was stored yet."""

    def __init__(self) -> None:
        super().__init__("no export auth stored: run `feishu-bridge export auth --from-curl FILE`")


@dataclass(frozen=True)
class AuthStatus:
    fingerprint: str
    updated_at: str
    probe_ok: bool | None
    probe_detail: str | None
    masked: dict


def fingerprint(auth: ExportAuth) -> str:
    return hashlib.sha256(auth.to_json().encode()).hexdigest()[:12]


def _secrets_of(auth: ExportAuth) -> list[str]:
    return [
        *auth.cookies.values(),
        *(v for k, v in auth.headers.items() if "csrf" in k or k == "authorization"),
    ]


def store(engine: Engine, box: SecretBox, auth: ExportAuth) -> str:
    register_secrets(_secrets_of(auth))
    with Session(engine) as session, session.begin():
        row = session.get(ExportAuthRow, 1)
        if row is None:
            row = ExportAuthRow(id=1)
            session.add(row)
        row.sealed = box.seal(auth.to_json())
        row.fingerprint = fingerprint(auth)
        row.updated_at = utcnow()
        row.probed_at = row.probe_ok = row.probe_detail = None
    return fingerprint(auth)


def load(engine: Engine, box: SecretBox) -> ExportAuth:
    with Session(engine) as session:
        sealed = session.scalar(select(ExportAuthRow.sealed).where(ExportAuthRow.id == 1))
    if sealed is None:
        raise NoExportAuth
    auth = ExportAuth.from_json(box.open(sealed))
    register_secrets(_secrets_of(auth))
    return auth


def probe(engine: Engine, box: SecretBox, client: ContractClient) -> tuple[bool, str]:
    reply = client.probe(load(engine, box))
    ok = reply.answer is Answer.OK
    detail = "session works" if ok else f"{reply.answer.value}: {reply.detail}"
    with Session(engine) as session, session.begin():
        row = session.get(ExportAuthRow, 1)
        if row is not None:
            row.probed_at, row.probe_ok, row.probe_detail = utcnow(), ok, detail
    return ok, detail


def status(engine: Engine, box: SecretBox) -> AuthStatus | None:
    with Session(engine) as session:
        row = session.get(ExportAuthRow, 1)
        if row is None:
            return None
        auth = ExportAuth.from_json(box.open(row.sealed))
        return AuthStatus(
            row.fingerprint, row.updated_at.isoformat(), row.probe_ok, row.probe_detail, auth.masked()
        )
