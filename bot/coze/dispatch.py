"""Delivering the outbox: one round claims due rows, maps each to its workflow's parameters,
calls Coze in parallel (the rows of one round are distinct table rows, so order is kept) and
records the answers; `drain` runs rounds for a time budget (the dispatch job, `coze dispatch`)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bot import callables
from bot.coze import manual, mapping, outbox, schedule
from bot.coze.client import CozeClients, ErrorKind, Outcome
from bot.coze.keys import open_key
from bot.coze.spec import FieldMapping
from bot.models import CozeTemplate
from bot.services import Services


@dataclass(frozen=True)
class Route:
    """What the dispatcher needs from a template, with the key opened and the callable loaded."""

    uuid: str
    workflow_id: str
    api_url: str
    api_key: str
    kinds: dict[str, str]
    mapping: FieldMapping | None
    custom: Callable[[dict[str, Any]], dict[str, Any]] | None

    def parameters(self, row: outbox.Claimed) -> dict[str, Any]:
        record = mapping.record_for(
            row.op, mapping.load_values(row.old_values), mapping.load_values(row.new_values), self.kinds
        )
        return mapping.to_parameters(row.op, record, self.mapping, self.custom)


def load_routes(services: Services, template_ids: set[int]) -> dict[int, Route]:
    with services.sessions() as session:
        templates = session.scalars(select(CozeTemplate).where(CozeTemplate.id.in_(template_ids))).all()
    routes = {}
    for t in templates:
        field_mapping = FieldMapping.model_validate_json(t.field_mapping) if t.field_mapping else None
        custom = callables.load(field_mapping.callable) if field_mapping and field_mapping.callable else None
        routes[t.id] = Route(
            t.uuid,
            t.coze_workflow_id,
            t.coze_api_url,
            open_key(services.secret_box, t.coze_api_key),
            json.loads(t.field_kinds),
            field_mapping,
            custom,
        )
    return routes


def deliver(clients: CozeClients, route: Route, row: outbox.Claimed) -> Outcome:
    if not route.api_key:
        return Outcome(False, 0, kind=ErrorKind.AUTH, error="the template has no coze_api_key")
    try:
        parameters = route.parameters(row)
    except Exception as exc:  # a custom mapping that raised: the row cannot be sent as is
        return Outcome(False, 0, kind=ErrorKind.BAD_REQUEST, error=f"field mapping failed: {exc!r}"[:500])
    return clients.run(route.api_url, route.api_key, route.workflow_id, parameters)


def run_round(services: Services, clients: CozeClients, pool: ThreadPoolExecutor) -> dict[str, int]:
    """Claim up to COZE_BATCH_SIZE rows, deliver them, record the answers. Returns counts
    (`claimed` 0 means nothing was due)."""
    settings = services.settings
    token, rows = outbox.claim(services.engine, settings.coze_batch_size)
    if not rows:
        return {"claimed": 0}
    routes = load_routes(services, {r.template_id for r in rows})
    rows = [r for r in rows if r.template_id in routes]  # a template deleted meanwhile took its rows along
    outcomes = list(pool.map(lambda row: deliver(clients, routes[row.template_id], row), rows))
    results = [
        outbox.Result(row, routes[row.template_id].uuid, routes[row.template_id].workflow_id, outcome)
        for row, outcome in zip(rows, outcomes, strict=True)
    ]
    counts = outbox.record(
        services.engine,
        token,
        results,
        max_attempts=settings.coze_max_attempts,
        base=settings.coze_backoff_seconds,
        cap=settings.coze_backoff_max_seconds,
    )
    return {"claimed": len(rows), **counts}


DISPATCH_BUDGET_SECONDS = 50.0  # then hand over to a fresh job, so one job never hogs a worker


def drain(services: Services, budget: float = DISPATCH_BUDGET_SECONDS) -> dict[str, int]:
    """Dispatch rounds until nothing is due or the budget is spent; then settle finished manual
    syncs and make sure someone comes back: at once if rows are left, when the next is due else."""
    settings = services.settings
    outbox.free_stale_claims(services.engine, settings.coze_claim_lease_seconds)
    totals: Counter[str] = Counter()
    deadline = time.monotonic() + budget
    more = False
    with ThreadPoolExecutor(settings.coze_dispatch_threads, thread_name_prefix="coze") as pool:
        while time.monotonic() < deadline:
            counts = run_round(services, services.coze_clients, pool)
            if not counts["claimed"]:
                more = False
                break
            totals.update(counts)
            more = True
    manual.settle_delivering(services)
    if more:
        schedule.wake_dispatcher(services)
    else:
        schedule.wake_when_due(services)
    return dict(totals)
