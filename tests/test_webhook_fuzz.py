"""Property test: whatever arrives at the webhook, a client mistake is never answered 5xx."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.crypto import encrypt, sign
from sandbox.state import SANDBOX_ENCRYPT_KEY, SANDBOX_VERIFICATION_TOKEN

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

KEYS = ["encrypt", "schema", "header", "event", "type", "challenge", "token", "uuid", "ts"]
HEADER_NAMES = ["X-Lark-Request-Timestamp", "X-Lark-Request-Nonce", "X-Lark-Signature"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
envelope_like = st.fixed_dictionaries(
    {}, optional={k: json_values | st.dictionaries(st.sampled_from(
        ["event_id", "event_type", "token", "app_id"]), json_values, max_size=4) for k in KEYS}
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=70)
headers = st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=3)


def _encrypted(doc) -> bytes:
    return json.dumps({"encrypt": encrypt(json.dumps(doc), SANDBOX_ENCRYPT_KEY)}).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    envelope_like.map(lambda d: json.dumps(d).encode()),
    envelope_like.map(_encrypted),
    st.text(max_size=60).map(lambda t: json.dumps({"encrypt": t}).encode()),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=bodies, hdrs=headers)
def test_malformed_requests_get_4xx(client, body, hdrs):
    response = client.post("/webhook/event", data=body, headers=hdrs, content_type="application/json")
    assert 400 <= response.status_code < 500, (response.status_code, body, hdrs)
    assert response.get_json()["msg"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=envelope_like, encrypted=st.booleans())
def test_correctly_signed_junk_is_never_5xx(client, doc, encrypted):
    """Signed with the real key (so it gets past the signature), but shaped at random."""
    if isinstance(doc.get("header"), dict):
        doc["header"]["token"] = SANDBOX_VERIFICATION_TOKEN
    body = _encrypted(doc) if encrypted else json.dumps(doc).encode()
    hdrs = {"X-Lark-Request-Timestamp": "1700000000", "X-Lark-Request-Nonce": "n0nce"}
    hdrs["X-Lark-Signature"] = sign("1700000000", "n0nce", SANDBOX_ENCRYPT_KEY, body)
    response = client.post("/webhook/event", data=body, headers=hdrs, content_type="application/json")
    assert response.status_code < 500, (response.status_code, doc)
    if response.status_code == 200 and doc.get("type") != "url_verification":
        assert response.get_json()["msg"] in {"success", "duplicate"}
