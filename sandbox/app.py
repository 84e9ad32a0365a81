"""The sandbox's Flask app factory."""

from __future__ import annotations

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from sandbox.ads_control import bp as ads_control_bp
from sandbox.control import bp as control_bp
from sandbox.products import (
    ads,
    auth,
    authen,
    bitable,
    contract,
    coze,
    docx,
    drive,
    im,
    messenger,
    sheets,
    wiki,
    ws_endpoint,
)
from sandbox.state import SandboxConfig, SandboxState
from sandbox.ws_control import bp as long_connection_bp


def create_sandbox_app(config: SandboxConfig | None = None) -> Flask:
    state = SandboxState(config or SandboxConfig())
    app = Flask("feishu_sandbox")
    app.extensions["sandbox"] = state
    products = (ads, auth, authen, bitable, contract, coze, docx, drive, im, messenger, sheets, wiki,
                ws_endpoint)
    for bp in (*(p.bp for p in products), control_bp, ads_control_bp, long_connection_bp):
        app.register_blueprint(bp)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # Feishu's gateway answers unknown paths with a JSON body too.
        return jsonify(code=exc.code, msg=exc.description), exc.code

    return app
