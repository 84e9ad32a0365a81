"""The dashboard behind the admin token: refused without a session, a login form that takes
the token, panels with live figures, rq-dashboard at /rq behind the same login."""

from __future__ import annotations

TOKEN = "admin-token-for-tests-0001-0123456789abcdef"
SAME_ORIGIN = {"Origin": "http://localhost"}  # a browser's form post from our own page


def test_unauthenticated_access_is_refused(client):
    page = client.get("/")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    assert client.get("/dashboard/panels").status_code == 401
    rq = client.get("/rq/")
    assert rq.status_code == 302 and "/login" in rq.headers["Location"]
    wrong = client.post("/login", data={"token": "not-the-token"}, headers=SAME_ORIGIN)
    assert wrong.status_code == 401 and b"Wrong admin token" in wrong.data
    assert client.get("/dashboard/panels").status_code == 401


def test_login_shows_the_panels_and_rq_dashboard(client):
    answer = client.post("/login?next=/", data={"token": TOKEN}, headers=SAME_ORIGIN)
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    for marker in (
        b"Cache sources",
        b"<h2>Tokens</h2>",
        b"<h2>Pipelines</h2>",
        b"Contract export",
        b"Coze sync",
        b"Failed job",
        b'id="fig-export-records"',
        b"/dashboard/panels",
    ):
        assert marker in page.data, marker
    assert TOKEN.encode() not in page.data
    assert client.get("/dashboard/panels").status_code == 200
    assert client.get("/rq/").status_code == 200
    client.post("/logout", headers=SAME_ORIGIN)
    assert client.get("/dashboard/panels").status_code == 401


def test_open_redirects_are_not_followed(client):
    answer = client.post("/login?next=//evil.example.com/", data={"token": TOKEN}, headers=SAME_ORIGIN)
    assert answer.headers["Location"] == "/"
