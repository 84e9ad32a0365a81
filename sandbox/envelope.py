"""Feishu's response shapes: `{"code": 0, "msg": "success", "data": …}` and its error codes."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

# Open-platform error codes the sandbox speaks (see docs/sandbox.md for their sources).
INVALID_TENANT_TOKEN = 99991663
INVALID_USER_TOKEN = 99991668
TOKEN_EXPIRED = 99991677
RATE_LIMITED = 99991400
INVALID_APP_CREDENTIALS = 10014
IM_INVALID_PARAM = 230001
IM_BOT_NOT_IN_CHAT = 230002
IM_RESOURCE_MISMATCH = 234003  # assumption: resource key not in the message
IM_RESOURCE_DENIED = 234004  # assumption: no permission to download the resource
# OAuth v2 token endpoint (flat `{code, error, error_description}` answers; assumed codes,
# see docs/sandbox.md).
OAUTH_CLIENT_INVALID = 20002
OAUTH_CODE_INVALID = 20003
OAUTH_CODE_EXPIRED = 20004
OAUTH_REFRESH_INVALID = 20026
OAUTH_REFRESH_EXPIRED = 20037
OAUTH_SERVER_ERROR = 20050
OAUTH_REFRESH_REVOKED = 20064
OAUTH_REFRESH_USED = 20073
# Bitable and wiki (assumed codes, see docs/sandbox.md).
BITABLE_BAD_REQUEST = 1254000
BITABLE_APP_NOT_FOUND = 1254040
BITABLE_TABLE_NOT_FOUND = 1254041
WIKI_NODE_NOT_FOUND = 131005
DRIVE_FILE_NOT_FOUND = 1061002
SHEETS_NOT_FOUND = 90215
SHEETS_BAD_RANGE = 90202
DOCX_NOT_FOUND = 1770002
INTERNAL_ERROR = 1500  # assumption: generic server-side failure, sent with HTTP 500


def ok(data: Any = None) -> Response:
    return jsonify(code=0, msg="success", data=data if data is not None else {})


def fail(code: int, msg: str, http_status: int = 400, headers: dict[str, str] | None = None):
    response = jsonify(code=code, msg=msg, error={"log_id": "sandbox"})
    response.status_code = http_status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
