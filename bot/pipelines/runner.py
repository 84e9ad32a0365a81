"""One pipeline run, end to end: claim it, fetch every day not fetched yet (each day's rows are
stored as they come, so a killed run resumes where it was), then — under the table's write
lock — read the table once, plan all days together, write in batches, read back, repair,
verify; store the counts and the summary, post the result card.

Failures: a definition the table or the source cannot serve (a missing field, a column the table
lacks, a key given twice, a callable outside PIPELINE_MODULES …) fails the run at once; anything
else (Feishu or the source's API down, a lost lock) is retried — the run goes back to `queued`
and its job is queued again after PIPELINE_RETRY_SECONDS × attempts — until
PIPELINE_MAX_ATTEMPTS, then it fails. A failed run alerts the admin chat; its own chat gets a
failure card. A table another run is writing re-queues the run without counting an attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from bot.masking import scrub
from bot.pipelines import alerts, runs, schedule, sources, store, summary, target, values, writer
from bot.pipelines.context import FetchContext, ProviderTokensMissing, source_logger, token_source
from bot.pipelines.plan import DuplicateKey, Existing
from bot.pipelines.spec import PipelineSpec, SpecError
from bot.pipelines.target import Table, TableBusy
from bot.pipelines.verify import group_name, verify
from bot.services import Services
from bot.tokens.provider_tokens import ProviderNotConfigured
from bot.tokens.store import NotAuthorized, ReauthRequired

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # phase ("fetch" or "write"), done, total (0: unknown)
OpenTable = Callable[[Services, PipelineSpec], Table]
# A token the user must fix (log in again, declare the provider) is not helped by a retry.
PERMANENT = (SpecError, values.ValueProblem, DuplicateKey, sources.SourceError, store.PipelineNotFound,
             ProviderTokensMissing, ProviderNotConfigured, NotAuthorized, ReauthRequired)


@dataclass(frozen=True)
class Outcome:
    run_id: int
    state: str  # succeeded, failed, queued (to be retried), skipped (not ours to run)
    text: str


def bitable(services: Services, spec: PipelineSpec) -> Table:
    return target.BitableTable(services.feishu, spec.target.app_token, spec.target.table_id)


def run_pipeline(services: Services, run_id: int, *, progress: Progress | None = None,
                 open_table: OpenTable | None = None) -> Outcome:
    """Run (or resume) one run. Never raises for the run's own failure: the run row says how it
    ended (and so does the result)."""
    settings = services.settings
    if not runs.claim(services.engine, run_id, stale_seconds=settings.pipeline_stale_seconds):
        return Outcome(run_id, "skipped", "finished, or another worker is running it")
    status = runs.status(services.engine, run_id)
    if status.attempts > settings.pipeline_max_attempts:
        return _failed(services, status, f"gave up after {settings.pipeline_max_attempts} attempts; "
                                         f"the last said: {status.error or 'nothing (its worker died)'}")
    table: Table | None = None
    try:
        info = store.get(services.engine, status.pipeline, box=services.secret_box)  # the real URL
        table = (open_table or bitable)(services, info.spec)
        return _run(services, status, info.spec, table, progress or (lambda phase, done, total: None))
    except PERMANENT as exc:
        return _failed(services, status, str(exc), calls=table.calls if table else 0)
    except TableBusy as exc:
        delay = max(30.0, settings.pipeline_lock_wait_seconds)
        runs.requeue(services.engine, run_id, str(exc), delay_seconds=delay, count_attempt=False)
        schedule.enqueue_run(services, run_id, delay_seconds=delay)
        return Outcome(run_id, "queued", str(exc))
    except Exception as exc:
        log.exception("pipeline run failed", extra={"run_id": run_id, "pipeline": status.pipeline})
        error = scrub(f"{type(exc).__name__}: {exc}")  # stored, carded and alerted: no registered secret
        if status.attempts >= settings.pipeline_max_attempts:
            return _failed(services, status, error, calls=table.calls if table else 0)
        delay = settings.pipeline_retry_seconds * status.attempts
        runs.requeue(services.engine, run_id, error, delay_seconds=delay)
        schedule.enqueue_run(services, run_id, delay_seconds=delay)
        return Outcome(run_id, "queued", f"will retry: {error}")


def _run(services: Services, status: runs.RunStatus, spec: PipelineSpec, table: Table,
         progress: Progress) -> Outcome:
    engine, settings = services.engine, services.settings
    zone = ZoneInfo(settings.pipeline_timezone)
    before = table.calls

    def calls() -> int:
        return table.calls - before

    fields = table.fields()
    problems = values.check_target(fields, key=spec.key, partition=spec.partition, group_by=spec.group_by,
                                   sum_fields=spec.sum_fields)
    if problems:
        raise SpecError(problems)
    days = _fetch_days(services, status.id, spec, fields, zone, progress)
    incoming = [row for day in days for row in day.rows or []]
    runs.heartbeat(engine, status.id, fetched=len(incoming), calls=calls())

    day_of = (partial(values.partition_day, field=fields[spec.partition], zone=zone)
              if spec.partition else None)
    scope = writer.Scope(spec.partition, {d.day for d in days} if spec.partition else None, day_of,
                         _keep(spec, days, day_of))
    names = list(dict.fromkeys([*spec.fields_read(), *(column for row in incoming for column in row)]))
    wrote = [0]

    def written(n: int) -> None:
        wrote[0] += n
        runs.heartbeat(engine, status.id, calls=calls())
        progress("write", wrote[0], 0)

    with target.write_lock(services.redis, spec.target.app_token, spec.target.table_id,
                           ttl=settings.pipeline_lock_ttl_seconds,
                           wait=settings.pipeline_lock_wait_seconds) as lock:
        result = writer.write(table, fields, incoming, spec.key, scope, lock, names=names,
                              reread_delay=settings.pipeline_reread_delay_seconds, progress=written)
    runs.mark_written(engine, status.id)

    expected, failed = _expectations(spec, days)
    check = verify(incoming, [r.fields for r in result.final or []], group_by=spec.group_by,
                   sum_fields=spec.sum_fields, expected_groups=expected, failed_groups=failed)
    kept = result.kept if spec.delete_missing else 0  # an upsert-only pipeline keeps all: not news
    counts = summary.Counts(len(incoming), result.created, result.updated, result.deleted, calls(),
                            result.rounds, kept)
    per_day = {d.day.isoformat(): len(d.rows or []) for d in days}
    doc = summary.summary_doc(spec.name, status.date_from, status.date_to, counts, check, label=spec.label,
                              grouped=bool(spec.group_by), rows_per_day=per_day)
    stored = {k: v for k, v in asdict(counts).items() if k not in ("rounds", "kept")}
    if not check.ok:
        runs.fail(engine, status.id, "校验不一致：" + "；".join(check.mismatches(spec.label)), stored, doc)
        store.mark_run(engine, spec.name, status.id, "failed")
        alerts.not_verified(engine, status.id, spec.name, check.mismatches(spec.label))
    else:
        runs.succeed(engine, status.id, stored, doc)
        store.mark_run(engine, spec.name, status.id, "succeeded",
                       covered=status.date_to if spec.partition else None)
    _post(services, status, spec.chat_id, summary.result_card(doc), "result")
    return Outcome(status.id, "succeeded" if check.ok else "failed", summary.result_text(doc))


def _fetch_days(services: Services, run_id: int, spec: PipelineSpec, fields: dict[str, values.FieldInfo],
                zone: ZoneInfo, progress: Progress) -> list[runs.RunDay]:
    """Fetch and store every day not fetched yet (a resumed run skips the others); return all."""
    import requests

    engine = services.engine
    days = runs.days(engine, run_id)
    http = requests.Session()
    try:
        for done, day in enumerate(days, 1):
            if day.state == "pending":
                ctx = FetchContext(spec.name, day.day, http, source_logger(spec.name, day.day), spec.provider,
                                   tokens=lambda: token_source(services),
                                   alive=lambda: runs.heartbeat(engine, run_id))
                result = sources.fetch(services, spec, ctx)
                cells = values.convert_rows(result.rows, fields, zone, label=day.day.isoformat())
                if spec.partition:
                    cells = values.stamp_day(cells, fields[spec.partition], day.day, zone)
                runs.store_day(engine, run_id, day.day, cells, {"expected_groups": result.expected_groups,
                                                                "failed_groups": result.failed_groups})
            progress("fetch", done, len(days))
    finally:
        http.close()
    return runs.days(engine, run_id)


def _keep(spec: PipelineSpec, days: list[runs.RunDay],
          day_of: Callable[[Any], date | None] | None) -> Callable[[Existing], bool] | None:
    """Which records the run must not delete though the source did not give them: every one
    when the pipeline only upserts; else those of a group the source could not fetch that day,
    and those of a day it gave no rows for at all (unless `delete_when_empty`) — a failure at the
    source is not a reason to empty the table. A mirror's run has one day: the whole table's."""
    if not spec.delete_missing:
        return lambda record: True
    failed = {(d.day, g) for d in days for g in (d.detail.get("failed_groups") or {})}
    failed_days = {day for day, _ in failed}
    empty = set() if spec.delete_when_empty else {d.day for d in days if not d.rows}
    if not failed and not empty:
        return None
    only_day = days[0].day if len(days) == 1 else None

    def keep(record: Existing) -> bool:
        day = day_of(record.fields.get(spec.partition)) if day_of else only_day
        if day in empty:
            return True
        if day not in failed_days:
            return False
        if not spec.group_by:  # the failed group's rows cannot be told apart: keep the day's
            return True
        return (day, group_name(record.fields.get(spec.group_by))) in failed

    return keep


def _expectations(spec: PipelineSpec, days: list[runs.RunDay]) -> tuple[list[str], dict[str, str]]:
    """The groups the run should have (the spec's and the source's), and those the source could
    not fetch, with why (the day named when the run covers several)."""
    expected = list(spec.expected_groups)
    failed: dict[str, str] = {}
    for day in days:
        expected += day.detail.get("expected_groups") or []
        for group, why in (day.detail.get("failed_groups") or {}).items():
            failed[group] = why if len(days) == 1 else f"{day.day.isoformat()} {why}"
    return list(dict.fromkeys(expected)), failed


def _failed(services: Services, status: runs.RunStatus, error: str, *, calls: int = 0) -> Outcome:
    runs.fail(services.engine, status.id, error, {"calls": calls} if calls else None)
    try:
        store.mark_run(services.engine, status.pipeline, status.id, "failed")
        chat_id = store.get(services.engine, status.pipeline).spec.chat_id
    except store.PipelineNotFound:
        chat_id = None
    alerts.run_failed(services.engine, status.id, status.pipeline, error)
    _post(services, status, chat_id,
          summary.failure_card(status.pipeline, status.id, status.date_from, status.date_to, error), "failed")
    return Outcome(status.id, "failed", error)


def _post(services: Services, status: runs.RunStatus, chat_id: str | None, card: dict[str, Any],
          kind: str) -> None:
    """The card to the pipeline's chat; a refusal is alerted, the run's outcome stands."""
    if not chat_id:
        return
    from bot.feishu import FeishuAPIError
    from bot.im import send_card

    try:
        send_card(services.feishu, chat_id, card, uuid=f"pipeline-run-{status.id}-{kind}")
    except FeishuAPIError as exc:
        log.warning("pipeline result card not sent", extra={"run_id": status.id, "chat_id": chat_id})
        alerts.card_not_sent(services.engine, status.id, status.pipeline, chat_id, str(exc))
