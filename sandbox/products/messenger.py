"""The web messenger (li.feishu.cn/next/messenger), reduced to what the download fallback uses:
a QR login page, the contract bot's chat with its file messages, and 下载文件 buttons.

The QR code is "scanned" by `POST /sandbox/messenger/scan` (or at once with the `auto_scan`
contract fault knob); the page polls and, once approved, gets a session cookie.
"""

from __future__ import annotations

import html
import json
import secrets
from urllib.parse import quote

from flask import Blueprint, Response, make_response, redirect, request

from sandbox.contract import CONTRACT_CHAT_ID
from sandbox.guard import state

bp = Blueprint("sandbox_messenger", __name__)

COOKIE = "messenger_session"

LOGIN_PAGE = """<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>飞书 - 登录</title></head>
<body><div class="login"><h1>扫码登录</h1><div class="qr" data-qr="{qr}">[QR {qr}]</div>
<p>请使用飞书移动端扫描二维码</p></div>
<script>
setInterval(async () => {{
  const r = await fetch("/next/messenger/qr/{qr}", {{method: "POST"}});
  if ((await r.json()).scanned) location.reload();
}}, 200);
</script></body></html>"""


def _logged_in() -> bool:
    return request.cookies.get(COOKIE) in state().contract.messenger_sessions


@bp.get("/next/messenger")
@bp.get("/next/messenger/")
def messenger():
    world = state().contract
    if not _logged_in():
        qr = secrets.token_hex(6)
        with world.lock:
            world.qr_codes[qr] = world.faults.auto_scan
        return Response(LOGIN_PAGE.format(qr=qr), mimetype="text/html")
    chat = request.args.get("chat", "")
    return Response(_chat_page(chat), mimetype="text/html")


@bp.post("/next/messenger/qr/<qr>")
def qr_status(qr: str):
    world = state().contract
    with world.lock:
        scanned = world.qr_codes.get(qr, False)
    response = make_response(json.dumps({"scanned": scanned}))
    response.mimetype = "application/json"
    if scanned:
        session = secrets.token_hex(16)
        with world.lock:
            world.messenger_sessions.add(session)
            world.qr_codes.pop(qr, None)
        response.set_cookie(COOKIE, session, httponly=True, max_age=30 * 24 * 3600)
    return response


def _chat_page(chat: str) -> str:
    st = state()
    chats = f'<nav class="chat-list"><a href="?chat={CONTRACT_CHAT_ID}">飞书合同</a></nav>'
    items = []
    if chat:
        with st.lock:
            messages = sorted(
                (m for m in st.messages.values() if m.chat_id == chat and m.msg_type == "file"),
                key=lambda m: m.create_time,
            )
        for message in messages:
            name = json.loads(message.content).get("file_name", "")
            items.append(
                f'<div class="message" data-message-id="{html.escape(message.message_id)}">'
                f'<div class="card-title">协同操作记录导出完成</div>'
                f'<span class="file-name">{html.escape(name)}</span>'
                f'<a class="download" href="/next/messenger/download/{quote(message.message_id)}">'
                "下载文件</a>"
                "</div>"
            )
    return (
        '<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>飞书</title></head><body>'
        f'{chats}<main class="messages">{"".join(items)}</main></body></html>'
    )


@bp.get("/next/messenger/download/<message_id>")
def download(message_id: str):
    if not _logged_in():
        return redirect("/next/messenger")
    st = state()
    message = st.messages.get(message_id)
    if message is None or message.msg_type != "file":
        return Response("not found", status=404)
    key = json.loads(message.content)["file_key"]
    export_file = st.contract.files.get(key)
    if export_file is None:
        return Response("not found", status=404)
    response = Response(
        export_file.content, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(export_file.file_name)}"
    return response
