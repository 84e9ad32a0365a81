"""Docx documents: raw text and blocks (paginated)."""

from __future__ import annotations

from flask import Blueprint, request

from sandbox import envelope
from sandbox.guard import open_api, state

bp = Blueprint("sandbox_docx", __name__, url_prefix="/open-apis/docx/v1/documents/<document_id>")


@bp.get("/raw_content")
@open_api
def raw_content(document_id: str):
    doc = state().documents.get(document_id)
    if doc is None:
        return envelope.fail(envelope.DOCX_NOT_FOUND, "not found", 404)
    return envelope.ok({"content": doc.raw_content()})


@bp.get("/blocks")
@open_api
def list_blocks(document_id: str):
    doc = state().documents.get(document_id)
    if doc is None:
        return envelope.fail(envelope.DOCX_NOT_FOUND, "not found", 404)
    blocks = doc.blocks()
    size = min(max(int(request.args.get("page_size", 500) or 500), 1), 500)
    token = request.args.get("page_token", "")
    start = int(token[2:]) if token.startswith("pt") and token[2:].isdigit() else 0
    more = start + size < len(blocks)
    return envelope.ok({"items": blocks[start:start + size], "has_more": more,
                        "page_token": f"pt{start + size}" if more else ""})
