"""A bitable table as a pipeline writes it: fields, every record (only the fields needed), and
batched creates, updates and deletes — each one gateway call (`services.feishu.call`), so
throttles (bitable's 1254290 too fast, 1254291 write conflict), 5xx and timeouts are retried
with backoff there, and every call is counted.

* `batch_create` carries a `client_token` (a uuid4 per batch, the same on every retry of it):
  a create the gateway retries after a timeout whose first attempt did land is not applied twice.
* Bitable takes one writer per table: `write_lock` is a Redis lock per (app_token, table_id),
  shared by every process, held for a run's whole write phase: renewed in the background while
  the run lives (one gateway call with its retries can outlast the TTL), and checked after each
  page read and before each batch (a batch is never sent by a run that lost it).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot.locks import Keeper, kept_alive
from bot.pipelines import plan as planning
from bot.pipelines.values import FieldInfo, fields_from_api

if TYPE_CHECKING:
    from redis import Redis

    from bot.feishu import Feishu

log = logging.getLogger(__name__)

RECORDS_PAGE = 500
FIELDS_PAGE = 100
LOCK_PREFIX = "fb:lock:bitable-write"
MAX_WRITE_SECONDS = 6 * 3600  # a run holds a table at most this long (a stuck one lets it go)


class Table(Protocol):
    """What the runner needs of a table (BitableTable here; an in-memory one in tests)."""

    calls: int

    def fields(self) -> dict[str, FieldInfo]: ...

    def read(self, names: list[str], alive: Callable[[], None] = ...) -> list[dict[str, Any]]: ...

    def create(self, rows: list[dict[str, Any]]) -> list[str]: ...

    def update(self, updates: list[planning.Update]) -> None: ...

    def delete(self, record_ids: list[str]) -> None: ...


class TableBusy(RuntimeError):
    """Another run holds the table's write lock; this run is re-queued, not failed."""


class LockLost(RuntimeError):
    """The write lock expired under us (a batch outlived PIPELINE_LOCK_TTL_SECONDS): another
    writer may have started, so this run stops writing."""


def _data(response: Any) -> dict[str, Any]:
    """The answer's `data` as Feishu sent it (values untouched by the SDK's models)."""
    return json.loads(response.raw.content).get("data") or {}


@dataclass
class BitableTable:
    feishu: Feishu
    app_token: str
    table_id: str
    calls: int = 0

    @property
    def where(self) -> str:
        return f"{self.app_token}/{self.table_id}"

    def _pages(self, operation: str, page: Callable[[str | None], Any],
               alive: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
        """Every item of a listing; `page(token)` makes one gateway call, `alive()` follows each."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            self.calls += 1
            data = _data(page(token))
            alive()
            items += data.get("items") or []
            if not data.get("has_more"):
                break
            token = data.get("page_token")
            if not token:
                raise RuntimeError(f"{operation} {self.where}: has_more without a page_token")
        total = data.get("total")
        if isinstance(total, int) and total != len(items):
            raise RuntimeError(f"{operation} {self.where}: got {len(items)} items but Feishu declared "
                               f"{total} (the table changed while it was read; the run will retry)")
        return items

    def fields(self) -> dict[str, FieldInfo]:
        from lark_oapi.api.bitable.v1 import ListAppTableFieldRequest

        operation = "bitable.v1.app_table_field.list"

        def page(token: str | None) -> Any:
            def request() -> ListAppTableFieldRequest:  # fresh per attempt: the SDK mutates requests
                b = (ListAppTableFieldRequest.builder().app_token(self.app_token).table_id(self.table_id)
                     .page_size(FIELDS_PAGE))
                return (b.page_token(token) if token else b).build()

            return self.feishu.call(operation, lambda client, option:
                                    client.bitable.v1.app_table_field.list(request(), option))

        return fields_from_api(self._pages(operation, page))

    def read(self, names: list[str], alive: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
        """Every record as {record_id, fields}, with only `names` (and no automatic fields);
        `alive()` after each page (a long read renews the write lock)."""
        from lark_oapi.api.bitable.v1 import ListAppTableRecordRequest

        operation = "bitable.v1.app_table_record.list"
        wanted = json.dumps(names, ensure_ascii=False)

        def page(token: str | None) -> Any:
            def request() -> ListAppTableRecordRequest:
                b = (ListAppTableRecordRequest.builder().app_token(self.app_token).table_id(self.table_id)
                     .page_size(RECORDS_PAGE).field_names(wanted).automatic_fields(False))
                return (b.page_token(token) if token else b).build()

            return self.feishu.call(operation, lambda client, option:
                                    client.bitable.v1.app_table_record.list(request(), option))

        return self._pages(operation, page, alive)

    def create(self, rows: list[dict[str, Any]]) -> list[str]:
        from lark_oapi.api.bitable.v1 import (
            AppTableRecord,
            BatchCreateAppTableRecordRequest,
            BatchCreateAppTableRecordRequestBody,
        )

        assert 0 < len(rows) <= planning.CREATE_BATCH
        client_token = str(uuid.uuid4())  # one per batch, the same on every retry of it

        def request() -> BatchCreateAppTableRecordRequest:  # fresh per attempt: the SDK mutates requests
            records = [AppTableRecord.builder().fields(dict(row)).build() for row in rows]
            body = BatchCreateAppTableRecordRequestBody.builder().records(records).build()
            return (BatchCreateAppTableRecordRequest.builder().app_token(self.app_token)
                    .table_id(self.table_id).client_token(client_token).request_body(body).build())

        self.calls += 1
        response = self.feishu.call("bitable.v1.app_table_record.batch_create", lambda client, option:
                                    client.bitable.v1.app_table_record.batch_create(request(), option))
        return [r.get("record_id", "") for r in _data(response).get("records") or []]

    def update(self, updates: list[planning.Update]) -> None:
        from lark_oapi.api.bitable.v1 import BatchUpdateAppTableRecordRequest

        assert 0 < len(updates) <= planning.UPDATE_BATCH
        # A plain dict body, not AppTableRecord: the SDK's models drop None values, and a None
        # here is how a cell is cleared (null in the JSON).
        body = {"records": [{"record_id": u.record_id, "fields": u.fields} for u in updates]}

        def request() -> BatchUpdateAppTableRecordRequest:
            return (BatchUpdateAppTableRecordRequest.builder().app_token(self.app_token)
                    .table_id(self.table_id).request_body(body).build())  # type: ignore[arg-type]

        self.calls += 1
        self.feishu.call("bitable.v1.app_table_record.batch_update", lambda client, option:
                         client.bitable.v1.app_table_record.batch_update(request(), option))

    def delete(self, record_ids: list[str]) -> None:
        from lark_oapi.api.bitable.v1 import (
            BatchDeleteAppTableRecordRequest,
            BatchDeleteAppTableRecordRequestBody,
        )

        assert 0 < len(record_ids) <= planning.DELETE_BATCH

        def request() -> BatchDeleteAppTableRecordRequest:
            body = BatchDeleteAppTableRecordRequestBody.builder().records(list(record_ids)).build()
            return (BatchDeleteAppTableRecordRequest.builder().app_token(self.app_token)
                    .table_id(self.table_id).request_body(body).build())

        self.calls += 1
        self.feishu.call("bitable.v1.app_table_record.batch_delete", lambda client, option:
                         client.bitable.v1.app_table_record.batch_delete(request(), option))


class TableLock:
    """The held write lock (renewed in the background: bot/locks.py); `renew()` restarts its
    TTL now, or raises LockLost."""

    def __init__(self, keeper: Keeper, name: str) -> None:
        self._keeper, self.name = keeper, name

    def renew(self) -> None:
        from redis.exceptions import LockError

        try:
            self._keeper.renew()
        except LockError as exc:
            raise LockLost(f"the write lock of {self.name} expired during the run (a call took longer "
                           "than PIPELINE_LOCK_TTL_SECONDS?); stopped writing") from exc


@contextmanager
def write_lock(redis: Redis, app_token: str, table_id: str, *, ttl: int, wait: float) -> Iterator[TableLock]:
    """Hold the table's write lock (every process takes the same key), or raise TableBusy after
    `wait` seconds. The TTL frees a lock whose holder was killed."""
    from redis.exceptions import LockError

    name = f"{app_token}/{table_id}"
    lock = redis.lock(f"{LOCK_PREFIX}:{app_token}:{table_id}", timeout=ttl, blocking_timeout=wait,
                      thread_local=False)
    if not lock.acquire():
        raise TableBusy(f"another run is writing table {name}; this run waits its turn")
    try:
        with kept_alive(lock, ttl, max_hold=MAX_WRITE_SECONDS) as keeper:
            yield TableLock(keeper, name)
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("a pipeline's table write lock expired before it was released", extra={"table": name})
