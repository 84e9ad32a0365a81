"""Fetching Feishu documents through the gateway: bitables (tables, fields, records at 500 per
page), spreadsheets (values in row chunks), docx documents and wiki nodes.

Records are taken from the raw response body, not the SDK's objects, so each field value is
kept as Feishu sent it (the store then gives each field type one shape: values.py). A table is
read as one consistent state even while users edit it between pages (snapshot.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from bot.caches import snapshot

if TYPE_CHECKING:
    from bot.feishu import Feishu

log = logging.getLogger(__name__)

RECORDS_PAGE = 500
RECORDS_OP = "bitable.v1.app_table_record.list"
BATCH_GET = 100
LIST_PAGE = 100

Page = Callable[[str | None], Any]  # page token → SDK response


@dataclass
class TableData:
    table_id: str
    name: str
    revision: int | None
    fields: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


def _data(response: Any) -> dict[str, Any]:
    return json.loads(response.raw.content)["data"]


def _server_ms(response: Any) -> int:
    """The server's clock when it answered (its `Date` header, to the second), so rows it stamped
    are compared with its own time; without one, ours less a margin for clock skew."""
    headers = getattr(response.raw, "headers", None) or {}
    date = next((v for k, v in headers.items() if k.lower() == "date"), None)
    if date:
        try:
            return int(parsedate_to_datetime(date).timestamp()) * 1000
        except (TypeError, ValueError):
            pass
    return int(time.time() * 1000) - snapshot.FRESH_SKEW_MS


@dataclass
class Fetcher:
    """Counts the API calls it makes, so syncs can report them against the floor."""

    feishu: Feishu
    as_user: str | None = None
    calls: int = 0

    def _walk(self, operation: str, page: Page) -> Iterator[tuple[Any, dict[str, Any]]]:
        """Every page of a listing as (response, data), following page tokens to the end."""
        token: str | None = None
        while True:
            self.calls += 1
            response = page(token)
            data = _data(response)
            yield response, data
            if not data.get("has_more"):
                return
            token = data.get("page_token")
            if not token:
                raise RuntimeError(f"{operation}: has_more without a page_token")

    def _pages(self, operation: str, page: Page, progress: Callable[[int], None] | None = None) -> list[dict]:
        """Every item of a listing, checked against the total Feishu declared."""
        items: list[dict] = []
        total = None
        for _, data in self._walk(operation, page):
            batch = data.get("items") or []
            items += batch
            if progress is not None:
                progress(len(batch))
            total = data.get("total")
        if isinstance(total, int) and total != len(items):
            raise RuntimeError(f"{operation}: got {len(items)} items but Feishu declared {total}")
        return items

    def _records_page(self, app_token: str, table_id: str, *, automatic_fields: bool = False,
                      field_names: list[str] | None = None) -> Page:
        """One page of a table's records from the list API, with these request options."""
        from lark_oapi.api.bitable.v1 import ListAppTableRecordRequest

        def page(token: str | None):
            def request() -> ListAppTableRecordRequest:  # fresh per attempt: the SDK mutates requests
                b = (ListAppTableRecordRequest.builder().app_token(app_token).table_id(table_id)
                     .page_size(RECORDS_PAGE))
                if automatic_fields:
                    b = b.automatic_fields(True)
                if field_names is not None:
                    b = b.field_names(json.dumps(field_names, ensure_ascii=False))
                return (b.page_token(token) if token else b).build()

            return self.feishu.call(RECORDS_OP, lambda client, option:
                                    client.bitable.v1.app_table_record.list(request(), option),
                                    as_user=self.as_user)

        return page

    def resolve_wiki(self, node_token: str) -> dict[str, Any]:
        from lark_oapi.api.wiki.v2 import GetNodeSpaceRequest

        self.calls += 1

        def request() -> GetNodeSpaceRequest:
            return GetNodeSpaceRequest.builder().token(node_token).obj_type("wiki").build()

        response = self.feishu.call(
            "wiki.v2.space.get_node",
            lambda client, option: client.wiki.v2.space.get_node(request(), option), as_user=self.as_user)
        return _data(response)["node"]

    def tables(self, app_token: str) -> list[dict[str, Any]]:
        from lark_oapi.api.bitable.v1 import ListAppTableRequest

        def page(token: str | None):
            def request() -> ListAppTableRequest:  # fresh per attempt: the SDK mutates requests
                b = ListAppTableRequest.builder().app_token(app_token).page_size(LIST_PAGE)
                return (b.page_token(token) if token else b).build()

            return self.feishu.call("bitable.v1.app_table.list", lambda client, option:
                                    client.bitable.v1.app_table.list(request(), option), as_user=self.as_user)

        return self._pages("bitable.v1.app_table.list", page)

    def fields(self, app_token: str, table_id: str) -> list[dict[str, Any]]:
        from lark_oapi.api.bitable.v1 import ListAppTableFieldRequest

        def page(token: str | None):
            def request() -> ListAppTableFieldRequest:
                b = (ListAppTableFieldRequest.builder().app_token(app_token).table_id(table_id)
                     .page_size(LIST_PAGE))
                return (b.page_token(token) if token else b).build()

            return self.feishu.call("bitable.v1.app_table_field.list", lambda client, option:
                                    client.bitable.v1.app_table_field.list(request(), option),
                                    as_user=self.as_user)

        return self._pages("bitable.v1.app_table_field.list", page)

    def records(self, app_token: str, table_id: str, progress: Callable[[int], None] | None = None
                ) -> list[dict[str, Any]]:
        """Every record of a table as one consistent state, though users may edit it between
        pages (snapshot.py): a table that holds still costs one pass; one that changed is read
        again, a few times at most, then reconciled with `batch_get`. A listing that stops short
        of its total on a table that holds still fails loudly, as it always did."""
        passes: list[snapshot.Pass] = []
        while True:
            previous = passes[-1].stamps() if passes else {}
            passes.append(self._record_pass(app_token, table_id, previous, None if passes else progress))
            verdict = snapshot.decide(passes)
            last = passes[-1]
            if verdict is snapshot.Verdict.ACCEPT:
                return list(last.records.values())
            if verdict is snapshot.Verdict.TRUNCATED:
                raise RuntimeError(f"{RECORDS_OP} {table_id}: got {len(last.records)} items but Feishu "
                                   f"declared {last.final_total}, twice, while the table held still")
            if verdict is snapshot.Verdict.RECONCILE:
                return self._reconciled(app_token, table_id, passes)
            log.info("table changed while being read; reading it again",
                     extra={"table": table_id, "pass": len(passes), "duplicates": last.duplicates,
                            "fresh": last.fresh, "totals": sorted(set(last.totals))})

    def _record_pass(self, app_token: str, table_id: str, previous: dict[str, Any],
                     progress: Callable[[int], None] | None) -> snapshot.Pass:
        """One listing of a table, every page, judged as it comes (duplicates, totals, fresh rows)."""
        one = snapshot.Pass(previous)
        for response, data in self._walk(RECORDS_OP, self._records_page(app_token, table_id,
                                                                         automatic_fields=True)):
            batch = data.get("items") or []
            one.add_page(batch, data.get("total"), _server_ms(response))
            if progress is not None:
                progress(len(batch))
        return one

    def _reconciled(self, app_token: str, table_id: str, passes: list[snapshot.Pass]) -> list[dict[str, Any]]:
        """The table never held still: every row the passes saw, those the last one did not show
        checked with batch_get. Rows that changed meanwhile are corrected by their change events."""
        merged, doubtful = snapshot.merge(passes)
        found, absent = self.batch_get(app_token, table_id, doubtful) if doubtful else ([], [])
        result = snapshot.reconcile(merged, found, absent)
        if problem := snapshot.shortfall(len(result), passes):
            raise RuntimeError(f"{RECORDS_OP} {table_id}: {problem}")
        log.warning("table kept changing while being read; reconciled",
                    extra={"table": table_id, "passes": len(passes), "records": len(result),
                           "declared": passes[-1].final_total, "checked": len(doubtful),
                           "gone": len(absent)})
        return list(result.values())

    def bitable(self, app_token: str, progress: Callable[[int], None] | None = None) -> list[TableData]:
        out = []
        for table in self.tables(app_token):
            data = TableData(table["table_id"], table["name"], table.get("revision"))
            data.fields = self.fields(app_token, data.table_id)
            data.records = self.records(app_token, data.table_id, progress)
            out.append(data)
        return out

    def batch_get(self, app_token: str, table_id: str, record_ids: list[str]
                  ) -> tuple[list[dict[str, Any]], list[str]]:
        """Current state of up to any number of records (100 per call): (found, absent ids)."""
        from lark_oapi.api.bitable.v1 import BatchGetAppTableRecordRequest, BatchGetAppTableRecordRequestBody

        found: list[dict[str, Any]] = []
        absent: list[str] = []
        for start in range(0, len(record_ids), BATCH_GET):
            chunk = record_ids[start:start + BATCH_GET]

            def request(ids=chunk) -> BatchGetAppTableRecordRequest:
                body = (BatchGetAppTableRecordRequestBody.builder().record_ids(ids).automatic_fields(True)
                        .build())
                return (BatchGetAppTableRecordRequest.builder().app_token(app_token).table_id(table_id)
                        .request_body(body).build())

            self.calls += 1
            data = _data(self.feishu.call("bitable.v1.app_table_record.batch_get", lambda client, option:
                                          client.bitable.v1.app_table_record.batch_get(request(), option),
                                          as_user=self.as_user))
            found += data.get("records") or []
            absent += (data.get("absent_record_ids") or []) + (data.get("forbidden_record_ids") or [])
        return found, absent

    def field_values(self, app_token: str, table_id: str, field_names: list[str]) -> list[dict[str, Any]]:
        """Every record with only the named fields (`field_names`): how formula and lookup
        columns, which change without events, are re-read without reading everything. No total
        check: rows may come and go meanwhile, and only the records already cached are updated."""
        page = self._records_page(app_token, table_id, field_names=field_names)
        return [item for _, data in self._walk(RECORDS_OP, page) for item in data.get("items") or []]

    def subscribe(self, file_token: str) -> None:
        """Ask Feishu to send this bitable's record/field change events to the app."""
        from lark_oapi.api.drive.v1 import SubscribeFileRequest

        def request() -> SubscribeFileRequest:
            return SubscribeFileRequest.builder().file_token(file_token).file_type("bitable").build()

        self.calls += 1
        self.feishu.call("drive.v1.file.subscribe",
                         lambda client, option: client.drive.v1.file.subscribe(request(), option),
                         as_user=self.as_user)

    # -- spreadsheets and documents (the same gateway, other products) ----------------------

    def sheets(self, token: str) -> list[dict[str, Any]]:
        from lark_oapi.api.sheets.v3 import QuerySpreadsheetSheetRequest

        def request() -> QuerySpreadsheetSheetRequest:
            return QuerySpreadsheetSheetRequest.builder().spreadsheet_token(token).build()

        self.calls += 1
        return _data(self.feishu.call("sheets.v3.spreadsheet_sheet.query", lambda client, option:
                                      client.sheets.v3.spreadsheet_sheet.query(request(), option),
                                      as_user=self.as_user))["sheets"]

    def sheet_values(self, token: str, sheet_id: str, rows: int, columns: int,
                     progress: Callable[[int], None] | None = None) -> list[list[Any]]:
        """Every cell, read in chunks of SHEET_CHUNK_ROWS rows (v2 values has no typed SDK method)."""
        import lark_oapi as lark
        from openpyxl.utils import get_column_letter

        last_column = get_column_letter(max(columns, 1))
        values: list[list[Any]] = []
        for first in range(1, max(rows, 0) + 1, SHEET_CHUNK_ROWS):
            last = min(rows, first + SHEET_CHUNK_ROWS - 1)
            uri = f"/open-apis/sheets/v2/spreadsheets/{token}/values/{sheet_id}!A{first}:{last_column}{last}"

            def request(u=uri) -> lark.BaseRequest:
                return (lark.BaseRequest.builder().http_method(lark.HttpMethod.GET).uri(u)
                        .token_types({lark.AccessTokenType.TENANT, lark.AccessTokenType.USER}).build())

            self.calls += 1
            data = _data(self.feishu.call("sheets.v2.values.get",
                                          lambda client, option: client.request(request(), option),
                                          as_user=self.as_user))
            chunk = data["valueRange"].get("values") or []
            values += chunk
            if progress is not None:
                progress(len(chunk))
        return values

    def document(self, document_id: str) -> tuple[str, list[dict[str, Any]]]:
        """(raw text, every block)."""
        from lark_oapi.api.docx.v1 import ListDocumentBlockRequest, RawContentDocumentRequest

        def raw() -> RawContentDocumentRequest:
            return RawContentDocumentRequest.builder().document_id(document_id).build()

        self.calls += 1
        content = _data(self.feishu.call("docx.v1.document.raw_content", lambda client, option:
                                         client.docx.v1.document.raw_content(raw(), option),
                                         as_user=self.as_user))["content"]

        def page(token: str | None):
            def request() -> ListDocumentBlockRequest:
                b = ListDocumentBlockRequest.builder().document_id(document_id).page_size(500)
                return (b.page_token(token) if token else b).build()

            return self.feishu.call("docx.v1.document_block.list", lambda client, option:
                                    client.docx.v1.document_block.list(request(), option),
                                    as_user=self.as_user)

        return content, self._pages("docx.v1.document_block.list", page)

    def wiki_children(self, space_id: str, node_token: str) -> list[dict[str, Any]]:
        from lark_oapi.api.wiki.v2 import ListSpaceNodeRequest

        def page(token: str | None):
            def request() -> ListSpaceNodeRequest:
                b = (ListSpaceNodeRequest.builder().space_id(space_id).parent_node_token(node_token)
                     .page_size(50))
                return (b.page_token(token) if token else b).build()

            return self.feishu.call("wiki.v2.space_node.list", lambda client, option:
                                    client.wiki.v2.space_node.list(request(), option), as_user=self.as_user)

        return self._pages("wiki.v2.space_node.list", page)


SHEET_CHUNK_ROWS = 2000

