"""The operator dashboard at `/`: one page behind the admin token (login form, then a signed
session cookie), panels re-rendered on the server every few seconds, and RQ's own dashboard
(rq-dashboard) mounted at `/rq` behind the same login."""

from __future__ import annotations

import hashlib
import hmac
from functools import wraps

from flask import (
    Blueprint,
    Flask,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from bot.web import app_services

bp = Blueprint("dashboard", __name__, template_folder="templates")
REFRESH_MS = 2000


def _admin_token() -> str:
    return app_services().settings.admin_token.get_secret_value()


def session_key(admin_token: str) -> bytes:
    """The cookie-signing key, derived from the admin token: changing the token logs everyone
    out, and no extra secret has to be configured."""
    key = admin_token.encode() or b"unset"
    return hmac.new(key, b"feishu-bridge dashboard session", hashlib.sha256).digest()


def logged_in() -> bool:
    token = _admin_token()
    return bool(token) and session.get("admin") == hashlib.sha256(token.encode()).hexdigest()[:16]


def login_required(view):
    @wraps(view)
    def guarded(*args, **kwargs):
        if not logged_in():
            if request.path.startswith("/dashboard/") or request.accept_mimetypes.best == "application/json":
                return {"code": 401, "msg": "log in at /login"}, 401
            return redirect(url_for("dashboard.login", next=request.path))
        return view(*args, **kwargs)

    return guarded


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if not _admin_token():
        error = "The dashboard is disabled: set ADMIN_TOKEN."
    elif request.method == "POST":
        given = request.form.get("token", "")
        if hmac.compare_digest(given.encode(), _admin_token().encode()):
            session.clear()
            session["admin"] = hashlib.sha256(given.encode()).hexdigest()[:16]
            session.permanent = True
            target = request.args.get("next", "/")
            return redirect(target if target.startswith("/") and not target.startswith("//") else "/")
        error = "Wrong admin token."
    return render_template("login.html", error=error), (401 if error and request.method == "POST" else 200)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("dashboard.login"))


@bp.get("/")
@login_required
def index():
    return render_template("dashboard.html", refresh_ms=REFRESH_MS, **_panels_context())


@bp.get("/dashboard/panels")
@login_required
def panels():
    return render_template("panels.html", **_panels_context())


def _panels_context() -> dict:
    from bot.overview import overview

    services = app_services()
    return {"o": overview(services, detail=True)}


def mount_rq_dashboard(app: Flask, redis_url: str) -> None:
    """rq-dashboard at /rq, only for a logged-in admin."""
    import rq_dashboard
    from rq_dashboard.web import setup_rq_connection

    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    setup_rq_connection(app)

    @app.before_request
    def _rq_requires_login():
        if request.blueprint == rq_dashboard.blueprint.name and not logged_in():
            return redirect(url_for("dashboard.login", next=request.path))
        return None

    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/rq")
