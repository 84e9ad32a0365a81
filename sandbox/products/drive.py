"""Drive: subscribing to a file's events (bitables only send change events once subscribed).

Only the file's owner or a manager ("可管理") may subscribe (drive-v1/file/subscribe.md); a
file shared read-only or for editing is refused with `1069603` forbidden (HTTP 403).
"""

from __future__ import annotations

from flask import Blueprint, request

from sandbox import envelope
from sandbox.guard import open_api, state

bp = Blueprint("sandbox_drive", __name__)

MANAGE = "manage"


@bp.post("/open-apis/drive/v1/files/<file_token>/subscribe")
@open_api
def subscribe(file_token: str):
    st = state()
    if request.args.get("file_type") != "bitable":
        return envelope.fail(envelope.DRIVE_SUBSCRIBE_PARAM_ERROR, "param error")
    if file_token not in st.apps:
        return envelope.fail(envelope.DRIVE_SUBSCRIBE_NOT_FOUND, "document not found")
    with st.lock:
        role = st.file_roles.get(file_token, MANAGE)
        if role != MANAGE:
            return envelope.fail(
                envelope.DRIVE_SUBSCRIBE_FORBIDDEN,
                f"forbidden: only the file's owner or a manager may subscribe (the app can {role})", 403)
        st.subscriptions.add(file_token)
    return envelope.ok({})
