"""The operator dashboard at `/`: one page behind the admin token (login form, then a
server-side session whose random id is the cookie), panels re-rendered on the server every few
seconds, and RQ's own dashboard (rq-dashboard) mounted at `/rq` behind the same login and a
same-origin check on everything that changes state."""

from __future__ import annotations

import hmac
from functools import wraps

from flask import (
    Blueprint,
    Flask,
    Response,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from bot.web import app_services, sessions
from bot.web.policy import safe_next, same_origin

bp = Blueprint("dashboard", __name__, template_folder="templates")
REFRESH_MS = 2000
# rq-dashboard 0.9's read-only GET views; any other GET under /rq (e.g. /rq/requeue/<queue>,
# which requeues every failed job) is treated as state-changing.
RQ_READ_ONLY = frozenset({"favicon", "static", "queues_overview", "workers_overview", "jobs_overview",
                          "job_view", "list_queues", "list_jobs", "job_info", "list_workers"})


def _admin_token() -> str:
    return app_services().settings.admin_token.get_secret_value()


def logged_in() -> bool:
    return sessions.valid(app_services().redis, request.cookies.get(sessions.COOKIE), _admin_token())


def login_required(view):
    @wraps(view)
    def guarded(*args, **kwargs):
        if not logged_in():
            if request.path.startswith("/dashboard/") or request.accept_mimetypes.best == "application/json":
                return {"code": 401, "msg": "log in at /login"}, 401
            return redirect(url_for("dashboard.login", next=request.path))
        return view(*args, **kwargs)

    return guarded


def client_id() -> str:
    """Who a failure counts against: the peer address (behind a proxy, the proxy's)."""
    return request.remote_addr or "unknown"


def throttled(kind: str) -> Response | None:
    """A 429 when this client has failed `kind` too often lately, else None."""
    settings = app_services().settings
    wait = sessions.retry_after(app_services().redis, kind, client_id(), settings.login_max_failures)
    if wait is None:
        return None
    answer = jsonify(code=429, msg=f"too many failed attempts; retry in {wait} s")
    answer.status_code, answer.headers["Retry-After"] = 429, str(wait)
    return answer


def record_failure(kind: str) -> None:
    settings = app_services().settings
    sessions.record_failure(app_services().redis, kind, client_id(), settings.login_failure_window_seconds)


def cross_site_refusal() -> tuple[dict, int] | None:
    """403 for a request our own pages did not send (CSRF), else None."""
    if same_origin(request.headers, request.host):
        return None
    return {"code": 403, "msg": "cross-site request refused"}, 403


def _start_session(target: str) -> Response:
    settings = app_services().settings
    lifetime = settings.session_lifetime_seconds
    answer = redirect(safe_next(target))
    session_id = sessions.create(app_services().redis, _admin_token(), lifetime)
    answer.set_cookie(sessions.COOKIE, session_id, max_age=lifetime, httponly=True, samesite="Lax",
                      secure=request.is_secure or settings.force_https)
    return answer


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if not _admin_token():
        error = "The dashboard is disabled: set ADMIN_TOKEN."
    elif request.method == "POST":
        refusal = cross_site_refusal() or throttled("login")
        if refusal is not None:
            return refusal
        given = request.form.get("token", "")
        if hmac.compare_digest(given.encode(), _admin_token().encode()):
            sessions.revoke(app_services().redis, request.cookies.get(sessions.COOKIE))
            return _start_session(request.args.get("next", "/"))
        record_failure("login")
        error = "Wrong admin token."
    return render_template("login.html", error=error), (401 if error and request.method == "POST" else 200)


@bp.post("/logout")
def logout():
    refusal = cross_site_refusal()
    if refusal is not None:
        return refusal
    sessions.revoke(app_services().redis, request.cookies.get(sessions.COOKIE))
    answer = redirect(url_for("dashboard.login"))
    answer.delete_cookie(sessions.COOKIE, httponly=True, samesite="Lax")
    return answer


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
        if request.blueprint != rq_dashboard.blueprint.name:
            return None
        if not logged_in():
            return redirect(url_for("dashboard.login", next=request.path))
        endpoint = (request.endpoint or "").rpartition(".")[2]
        if request.method not in ("GET", "HEAD", "OPTIONS") or endpoint not in RQ_READ_ONLY:
            return cross_site_refusal()
        return None

    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/rq")
