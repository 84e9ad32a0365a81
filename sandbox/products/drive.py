"""Drive: subscribing to a file's events (bitables only send change events once subscribed)."""

from __future__ import annotations

from flask import Blueprint, request

from sandbox import envelope
from sandbox.guard import open_api, state

bp = Blueprint("sandbox_drive", __name__)


@bp.post("/open-apis/drive/v1/files/<file_token>/subscribe")
@open_api
def subscribe(file_token: str):
    st = state()
    if request.args.get("file_type") != "bitable" or file_token not in st.apps:
        return envelope.fail(envelope.DRIVE_FILE_NOT_FOUND, "file not found or not a bitable")
    with st.lock:
        st.subscriptions.add(file_token)
    return envelope.ok({})
