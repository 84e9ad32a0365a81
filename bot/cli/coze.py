"""`feishu-bridge coze …`: Coze sync templates from the command line — the same operations as
`/api/v1/coze-sync-templates`, with progress for manual syncs and `--json` for scripts."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bot.cli.common import console, open_engine, open_services, settings_of

OPERATIONS = ("insert", "update", "delete")


def _fail(message: str) -> None:
    # click.echo, not the rich console: that one wraps long lines at 80 columns off a terminal
    click.echo(f"{click.style('error:', fg='red')} {message}", err=True)
    sys.exit(2)


def _guarded(action):
    """Validation problems are printed plainly (exit 2), never as a traceback."""
    from bot.coze.spec import SpecError
    from bot.coze.templates import TemplateNotFound

    try:
        return action()
    except SpecError as exc:
        _fail("; ".join(p.message for p in exc.problems))
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except TemplateNotFound as exc:
        _fail(str(exc.args[0]))


def _spec_values(title, table, workflow, api_url, api_key_stdin, fields, on, mapping) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in (
        ("config_title", title),
        ("table_name", table),
        ("coze_workflow_id", workflow),
        ("coze_api_url", api_url),
    ):
        if value is not None:
            values[key] = value
    if api_key_stdin:
        values["coze_api_key"] = sys.stdin.readline().strip()
    if fields is not None:
        values["selected_fields"] = [f.strip() for f in fields.split(",") if f.strip()]
    if on is not None:
        chosen = {o.strip() for o in on.split(",") if o.strip()}
        unknown = chosen - set(OPERATIONS)
        if unknown:
            raise click.BadParameter(
                f"unknown operation(s) {sorted(unknown)}; use {','.join(OPERATIONS)}", param_hint="--on"
            )
        values.update({f"sync_on_{op}": op in chosen for op in OPERATIONS})
    if mapping is not None:
        try:
            values["field_mapping"] = json.loads(mapping)
        except ValueError:
            raise click.BadParameter("not JSON", param_hint="--mapping") from None
    return values


def _template_options(func):
    options = [
        click.option("--title", help="config_title: a name people recognise."),
        click.option("--table", help="The table whose changes are sent."),
        click.option("--workflow", help="The Coze workflow id to call."),
        click.option("--api-url", help="Coze API base URL (default COZE_DEFAULT_API_URL)."),
        click.option(
            "--api-key-stdin",
            is_flag=True,
            help="Read the Coze API key from the first line of stdin "
            "(kept out of shell history; stored encrypted).",
        ),
        click.option("--fields", help="Comma-separated columns to send (default: all but binary ones)."),
        click.option("--on", help="Operations to sync, e.g. insert,update,delete (default insert,update)."),
        click.option("--mapping", help='field_mapping JSON, e.g. {"rename": {"customer_name": "name"}}.'),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group()
def coze() -> None:
    """Sync database tables to Coze workflows (templates, triggers, outbox, delivery).

    \b
    coze preview TABLE          fields, types and sample rows as Coze would get them
    coze create ...             a template: its triggers start writing the outbox at once
    coze list / show / update / delete
    coze sync UUID              send every (matching) row now, with progress
    coze status                 outbox backlog, dead letters, recent deliveries
    coze redrive [UUID]         send dead letters again
    """


@coze.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_templates(ctx: click.Context, as_json: bool) -> None:
    """List templates (keys masked)."""
    from sqlalchemy.orm import Session

    from bot.coze import templates
    from bot.tokens.secretbox import build_secret_box

    with open_engine(ctx) as engine, Session(engine) as session:  # reading needs no Redis
        box = build_secret_box(settings_of(ctx))  # after the check: it may create the key file
        rows = [templates.public(box, t) for t in templates.list_all(session)]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("uuid", "title", "table", "workflow", "ops", "enabled", "status", "last sync (UTC)")
    for r in rows:
        ops = ",".join(op for op in OPERATIONS if r[f"sync_on_{op}"])
        table.add_row(
            r["uuid"],
            r["config_title"],
            r["table_name"],
            r["coze_workflow_id"],
            ops,
            "yes" if r["enabled"] else "no",
            r["status"],
            r["last_sync_time"] or "-",
        )
    Console().print(table)


@coze.command("show")
@click.argument("template_uuid")
@click.pass_context
def show(ctx: click.Context, template_uuid: str) -> None:
    """One template as JSON, with its installed triggers and outbox counts."""
    from bot.coze import outbox, templates

    def action():
        with open_services(ctx) as services, services.sessions() as session:
            template = templates.get(session, template_uuid)
            config = templates.public(services.secret_box, template, session)
            return {"config": config, "outbox": outbox.counts(services.engine, template.id)}

    click.echo(json.dumps(_guarded(action), ensure_ascii=False, indent=2))


@coze.command("create")
@_template_options
@click.pass_context
def create(ctx, title, table, workflow, api_url, api_key_stdin, fields, on, mapping, as_json) -> None:
    """Create a template and install its triggers."""
    from bot.coze import templates
    from bot.coze.spec import TemplateCreate

    values = _spec_values(title, table, workflow, api_url, api_key_stdin, fields, on, mapping)

    def action():
        with open_services(ctx) as services:
            template = templates.create(services, TemplateCreate.model_validate(values))
            return templates.public(services.secret_box, template)

    config = _guarded(action)
    if as_json:
        click.echo(json.dumps(config, ensure_ascii=False, indent=2))
    else:
        console.print(f"created {config['uuid']} ({config['table_name']} → {config['coze_workflow_id']})")


@coze.command("update")
@click.argument("template_uuid")
@_template_options
@click.option("--enable/--disable", "enabled", default=None, help="Disabling drops the triggers.")
@click.pass_context
def update(
    ctx, template_uuid, title, table, workflow, api_url, api_key_stdin, fields, on, mapping, as_json, enabled
) -> None:
    """Change a template; its triggers are replaced in the same transaction."""
    from bot.coze import templates
    from bot.coze.spec import TemplateFields

    values = _spec_values(title, table, workflow, api_url, api_key_stdin, fields, on, mapping)
    if enabled is not None:
        values["enabled"] = enabled

    def action():
        with open_services(ctx) as services:
            changed = templates.update(services, template_uuid, TemplateFields.model_validate(values))
            return templates.public(services.secret_box, changed)

    config = _guarded(action)
    click.echo(json.dumps(config, ensure_ascii=False, indent=2) if as_json else f"updated {template_uuid}")


@coze.command("delete")
@click.argument("template_uuid")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def delete(ctx, template_uuid: str, yes: bool) -> None:
    """Delete a template, its triggers and its undelivered outbox rows."""
    from bot.coze import templates

    if not yes:
        click.confirm(f"Delete template {template_uuid} and its undelivered changes?", abort=True)

    def action():
        with open_services(ctx) as services:
            templates.delete(services, template_uuid)

    _guarded(action)
    console.print(f"deleted {template_uuid}")


@coze.command("preview")
@click.argument("table_name")
@click.option("--fields", help="Comma-separated columns (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def preview(ctx, table_name: str, fields: str | None, as_json: bool) -> None:
    """A table's fields with types, and sample rows mapped as Coze would receive them."""
    from bot.coze import templates

    selected = [f.strip() for f in fields.split(",")] if fields else None

    def action():
        with open_services(ctx) as services:
            return templates.preview(services, table_name, selected)

    result = _guarded(action)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return
    out = Console()
    fields_table = Table("field", "type", "database type")
    for f in result["available_fields"]:
        fields_table.add_row(f["name"], f["type"], f["db_type"])
    out.print(fields_table)
    out.print_json(json.dumps(result["sample_data"], ensure_ascii=False, default=str))


@coze.command("sync")
@click.argument("template_uuid")
@click.option("--batch-size", default=100, show_default=True, help="Rows queued per transaction.")
@click.option(
    "--filter",
    "filter_items",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="Only rows where COLUMN equals VALUE (repeatable; VALUE is JSON if it parses).",
)
@click.option("--where", "where_json", help='Filters as JSON: [["balance", ">", 100], …].')
@click.option("--inline", is_flag=True, help="Do the work in this process (no workers needed).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow progress until done.")
@click.option("--json", "as_json", is_flag=True, help="Print the final counts as JSON.")
@click.pass_context
def sync(ctx, template_uuid, batch_size, filter_items, where_json, inline, wait, as_json) -> None:
    """Send every matching row of the template's table to Coze, through the outbox."""
    from bot.coze import manual, schedule
    from bot.coze.dispatch import drain

    filters: Any = None
    if where_json:
        try:
            filters = json.loads(where_json)
        except ValueError:
            raise click.BadParameter("not JSON", param_hint="--where") from None
    elif filter_items:
        filters = {}
        for item in filter_items:
            column, sep, raw = item.partition("=")
            if not sep:
                raise click.BadParameter(f"{item!r} is not COLUMN=VALUE", param_hint="--filter")
            try:
                filters[column] = json.loads(raw)
            except ValueError:
                filters[column] = raw

    with open_services(ctx) as services:
        if inline:
            sync_row = _guarded(lambda: manual.create(services, template_uuid, batch_size, filters))
            manual.queue_rows(services, sync_row.id)
        else:
            sync_row = _guarded(
                lambda: schedule.start_manual_sync(services, template_uuid, batch_size, filters)
            )
        state = manual.progress(services, sync_row.id)
        if wait:
            columns = (TextColumn("coze sync"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console, disable=as_json) as bar:
                task = bar.add_task("sync", total=state["total_records"] or None)
                while state["status"] not in ("done", "failed"):
                    if inline:
                        drain(services, budget=1.0)
                    else:
                        time.sleep(0.5)
                    state = manual.progress(services, sync_row.id)
                    bar.update(
                        task,
                        total=state["total_records"] or None,
                        completed=state["records_synced"] + state["records_failed"],
                    )
    if as_json:
        click.echo(json.dumps(state, ensure_ascii=False, indent=2))
    elif state["status"] == "done":
        console.print(
            f"同步完成，成功同步 {state['records_synced']} 条记录 (of {state['total_records']}; "
            f"{state['records_failed']} dead-lettered)"
        )
    else:
        console.print(
            f"manual sync {sync_row.id}: {state['status']}, {state['records_synced']} delivered so far"
        )
    if state["status"] == "failed" or state["records_failed"]:
        sys.exit(1)


@coze.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx, as_json: bool) -> None:
    """Outbox backlog per template, dead letters and the latest deliveries."""
    from sqlalchemy import select

    from bot.coze import outbox, templates
    from bot.models import CozeDelivery

    with open_services(ctx) as services, services.sessions() as session:
        rows = []
        for t in templates.list_all(session):
            rows.append(
                {
                    "uuid": t.uuid,
                    "config_title": t.config_title,
                    "table_name": t.table_name,
                    "status": t.status,
                    "status_detail": t.status_detail,
                    **outbox.counts(services.engine, t.id),
                }
            )
        recent = session.scalars(select(CozeDelivery).order_by(CozeDelivery.id.desc()).limit(10)).all()
        deliveries = [
            {
                "template_uuid": d.template_uuid,
                "op": d.op,
                "row_key": d.row_key,
                "ok": d.ok,
                "error": d.error,
                "execute_id": d.execute_id,
                "logid": d.logid,
                "at": d.created_at.isoformat(),
            }
            for d in recent
        ]
    if as_json:
        click.echo(
            json.dumps({"templates": rows, "recent_deliveries": deliveries}, ensure_ascii=False, indent=2)
        )
        return
    table = Table("template", "table", "status", "pending", "claimed", "delivered", "dead")
    for r in rows:
        table.add_row(
            r["config_title"],
            r["table_name"],
            r["status"],
            str(r["pending"]),
            str(r["claimed"]),
            str(r["delivered"]),
            str(r["dead"]),
        )
    Console().print(table)


@coze.command("redrive")
@click.argument("template_uuid", required=False)
@click.pass_context
def redrive(ctx, template_uuid: str | None) -> None:
    """Send dead-lettered changes again (all templates, or one)."""
    from bot.coze import outbox, templates
    from bot.coze.schedule import wake_dispatcher

    with open_services(ctx) as services:
        template_id = None
        if template_uuid:
            with services.sessions() as session:
                template_id = _guarded(lambda: templates.get(session, template_uuid)).id
        count = outbox.redrive(services.engine, template_id)
        wake_dispatcher(services)
    console.print(f"re-queued {count} dead letter(s)")


@coze.command("dispatch")
@click.option("--seconds", default=30.0, show_default=True, help="Stop after this long.")
@click.pass_context
def dispatch(ctx, seconds: float) -> None:
    """Deliver due outbox rows from this process (workers do this on their own)."""
    from bot.coze.dispatch import drain

    with open_services(ctx) as services:
        totals = drain(services, budget=seconds)
    click.echo(json.dumps(totals))
