"""/healthz and /metrics."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.queue import connect_redis
from tests.helpers import sender, text_message_event

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _samples(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    out = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_healthz_ok_and_503_when_redis_is_unreachable(client, services):
    ok = client.get("/healthz")
    assert ok.status_code == 200
    assert ok.get_json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
    original = services.redis
    services.redis = connect_redis("redis://127.0.0.1:1/0")
    try:
        down = client.get("/healthz")
    finally:
        services.redis = original
    assert down.status_code == 503
    assert down.get_json()["checks"]["redis"].startswith("error")


def test_metrics_count_received_duplicate_rejected_and_queue_depth(client, services):
    before = _samples(client)
    s = sender()
    doc = text_message_event(s)
    for _ in range(2):
        body, headers = s.wire(doc, encrypted=True)
        assert client.post("/webhook/event", data=body, headers=headers).status_code == 200
    client.post("/webhook/event", data=b"junk")
    after = _samples(client)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("feishu_bridge_events_received_total", event_type="im.message.receive_v1") == 1
    assert delta("feishu_bridge_events_duplicate_total", event_type="im.message.receive_v1") == 1
    assert delta("feishu_bridge_events_rejected_total", reason="not_json") == 1
    assert after[("feishu_bridge_queue_depth", (("queue", "default"),))] == 1
    assert after[("feishu_bridge_queue_depth", (("queue", "coze"),))] == 0
