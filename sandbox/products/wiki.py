"""Wiki: resolving a node token to the document it holds (`wiki.v2.space.get_node`)."""

from __future__ import annotations

from flask import Blueprint, request

from sandbox import envelope
from sandbox.guard import open_api, state

bp = Blueprint("sandbox_wiki", __name__)


@bp.get("/open-apis/wiki/v2/spaces/get_node")
@open_api
def get_node():
    token = request.args.get("token", "")
    obj_type = request.args.get("obj_type", "wiki")
    nodes = state().wiki_nodes
    if obj_type == "wiki":
        node = nodes.get(token)
    else:  # looking a document up by its own token
        node = next((n for n in nodes.values() if n.obj_token == token and n.obj_type == obj_type), None)
    if node is None:
        return envelope.fail(envelope.WIKI_NODE_NOT_FOUND, "node not found")
    return envelope.ok({"node": node.to_api()})


@bp.get("/open-apis/wiki/v2/spaces/<space_id>/nodes")
@open_api
def list_nodes(space_id: str):
    """Children of `parent_node_token` (or the space's top level), one page."""
    parent = request.args.get("parent_node_token", "")
    items = [n.to_api() for n in state().wiki_nodes.values()
             if n.space_id == space_id and n.parent_node_token == parent]
    return envelope.ok({"items": items, "has_more": False, "page_token": ""})
