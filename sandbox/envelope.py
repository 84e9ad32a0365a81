"""Feishu's response shapes: `{"code": 0, "msg": "success", "data": …}` and its error codes."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

# Open-platform error codes the sandbox speaks (see docs/sandbox.md for their sources).
TOKEN_MISSING = 99991661  # no (or an empty) Authorization: Bearer header: "Need a token"
INVALID_TENANT_TOKEN = 99991663
INVALID_USER_TOKEN = 99991668
TOKEN_EXPIRED = 99991677
RATE_LIMITED = 99991400
IM_CHAT_THROTTLED = 230020  # message sends: "This operation triggers the frequency limit." (HTTP 400)
IM_SERVICE_THROTTLED = 11232  # "create message service trigger rate limit" (generic code table)
INVALID_APP_CREDENTIALS = 10014
IM_INVALID_PARAM = 230001
IM_BOT_NOT_IN_CHAT = 230002
# Message patch refusals (HTTP 400), from the error table of im-v1/message-card/patch.md.
IM_MESSAGE_RECALLED = 230011  # "The message is recalled."
IM_PATCH_FREQUENCY_LIMIT = 230020  # "This operation triggers the frequency limit." (5 QPS a message)
IM_PATCH_TOO_OLD = 230031  # "Message can only be modified within 14 days after sending."
IM_RESOURCE_MISMATCH = 234003  # "File not in message." (HTTP 400)
IM_RESOURCE_APP_NOT_IN_CHAT = 234004  # "App not in chat." (HTTP 400)
IM_RESOURCE_RESTRICTED = 234038  # downloads refused in restricted (保密/防泄密) mode (HTTP 400)
# OAuth v2 token endpoint (flat `{code, error, error_description}` answers; assumed codes,
# see docs/sandbox.md).
OAUTH_CLIENT_INVALID = 20002
OAUTH_CODE_INVALID = 20003
OAUTH_CODE_EXPIRED = 20004
OAUTH_GRANT_UNSUPPORTED = 20036
OAUTH_CODE_USED = 20065
OAUTH_REDIRECT_MISMATCH = 20071
OAUTH_REFRESH_INVALID = 20026
OAUTH_REFRESH_EXPIRED = 20037
OAUTH_SERVER_ERROR = 20050
OAUTH_REFRESH_REVOKED = 20064
OAUTH_REFRESH_USED = 20073
# Bitable and wiki (assumed codes, see docs/sandbox.md).
BITABLE_BAD_REQUEST = 1254000  # WrongRequestJson
BITABLE_BAD_PAGE_SIZE = 1254011  # "Page size must greater than 0."
BITABLE_APP_NOT_FOUND = 1254040
BITABLE_TABLE_NOT_FOUND = 1254041
WIKI_NODE_NOT_FOUND = 131005
DRIVE_SUBSCRIBE_PARAM_ERROR = 1069602  # drive-v1 subscribe's error table
DRIVE_SUBSCRIBE_FORBIDDEN = 1069603  # HTTP 403: no manage rights on the document
DRIVE_SUBSCRIBE_NOT_FOUND = 1069604
SHEETS_NOT_FOUND = 1310214  # v3: "SpreadSheet Not Found"
SHEETS_V2_NOT_FOUND = 90214  # v2: "SpreadSheetNotFound"
SHEETS_V2_SHEET_NOT_FOUND = 90215  # v2: "SheetIdNotFound"
SHEETS_BAD_RANGE = 90202  # v2: "validate RangeVal fail"
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
