"""`feishu-bridge pipeline …`: pipelines that write other systems' data into bitables — define
them, run a day or a backfill here with a progress bar, and see how their runs went."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bot.cli.common import console, open_engine, open_services, parse_day


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"{click.style('error:', fg='red')} {message}", err=True)
    sys.exit(code)


def public_spec(spec: Any) -> dict[str, Any]:
    """The definition as shown: an SQL source's other-database URL with its password masked."""
    from bot.masking import mask_url

    doc = spec.model_dump(mode="json")
    source = doc.get("source") or {}
    if source.get("url"):
        source["url"] = mask_url(source["url"])
    return doc


def run_json(status: Any) -> dict[str, Any]:
    doc = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in vars(status).items()}
    doc["finished"] = status.finished
    return doc


@click.group()
def pipeline() -> None:
    """Pipelines: a source's rows upserted into a bitable table on a schedule, then verified.

    A pipeline is defined by a JSON document (see docs/pipelines.md): a source (a Python
    `fetch(ctx)` in PIPELINE_MODULES, or an SQL query), a target table, the key fields, an
    optional partition field (e.g. 日期: a run owns that day's rows) and a schedule
    ("daily 07:00", "every 15m"). The cron runs them when due; `pipeline run` runs one now.
    """


@pipeline.command("add")
@click.argument("spec_file", type=click.File("r", encoding="utf-8"))
@click.option("--replace", is_flag=True, help="Replace a pipeline of the same name.")
@click.pass_context
def pipeline_add(ctx: click.Context, spec_file, replace: bool) -> None:
    """Add a pipeline from a JSON definition (SPEC_FILE, or - for stdin)."""
    from bot.pipelines import store
    from bot.pipelines.spec import SpecError

    try:
        document = json.load(spec_file)
    except json.JSONDecodeError as exc:
        _fail(f"{spec_file.name} is not JSON ({exc}); see docs/pipelines.md for the format", 2)
    with open_services(ctx) as services:
        try:
            info = store.add(services, document, replace=replace)
        except SpecError as exc:
            _fail("the definition is not valid: " + "; ".join(exc.problems), 2)
        except store.PipelineExists as exc:
            _fail(f"{exc}; pass --replace to overwrite it", 2)
        except (store.TableTaken, store.MaskedPassword) as exc:
            _fail(str(exc), 2)
    console.print(f"pipeline {info.name}: {info.spec.schedule} → table {info.spec.target.table_id}")


@pipeline.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def pipeline_list(ctx: click.Context, as_json: bool) -> None:
    """Every pipeline, its schedule and its last run."""
    from bot.pipelines import store

    with open_engine(ctx) as engine:
        found = store.list_all(engine)
    if as_json:
        click.echo(json.dumps([{"name": p.name, "enabled": p.enabled, "schedule": p.spec.schedule,
                                "last_run_id": p.last_run_id, "last_run_state": p.last_run_state,
                                "last_run_at": p.last_run_at.isoformat() if p.last_run_at else None}
                               for p in found], ensure_ascii=False, indent=2))
        return
    if not found:
        console.print("No pipelines yet. Add one with `feishu-bridge pipeline add SPEC.json`.")
        return
    table = Table("name", "schedule", "source", "target", "last run")
    for p in found:
        source = p.spec.source.callable if p.spec.source.kind == "python" else "SQL"
        last = f"#{p.last_run_id} {p.last_run_state}" if p.last_run_id else "never"
        table.add_row(p.name + ("" if p.enabled else " (off)"), p.spec.schedule, source,
                      p.spec.target.table_id, last)
    console.print(table)


@pipeline.command("show")
@click.argument("name")
@click.pass_context
def pipeline_show(ctx: click.Context, name: str) -> None:
    """A pipeline's definition (JSON) and its recent runs."""
    from bot.pipelines import runs, store

    with open_engine(ctx) as engine:
        try:
            info = store.get(engine, name)
        except store.PipelineNotFound as exc:
            _fail(f"{exc}; `feishu-bridge pipeline list` shows them")
        recent = runs.recent(engine, name, limit=5)
    click.echo(json.dumps({"definition": public_spec(info.spec), "enabled": info.enabled,
                           "recent_runs": [run_json(r) for r in recent]}, ensure_ascii=False, indent=2))


@pipeline.command("remove")
@click.argument("name")
@click.pass_context
def pipeline_remove(ctx: click.Context, name: str) -> None:
    """Remove a pipeline (its past runs stay on record; the table is not touched)."""
    from bot.pipelines import store

    with open_engine(ctx) as engine:
        try:
            store.remove(engine, name)
        except store.PipelineNotFound as exc:
            _fail(f"{exc}; `feishu-bridge pipeline list` shows them")
    console.print(f"pipeline {name} removed")


@pipeline.command("run")
@click.argument("name")
@click.option("--date", "day", default=None, help="The day to fetch (default: yesterday).")
@click.option("--from", "first", default=None, help="First day of a backfill.")
@click.option("--to", "last", default=None, help="Last day of a backfill (inclusive).")
@click.option("--queue", "queued", is_flag=True, help="Hand the run to the workers, not run it here.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished run as JSON.")
@click.pass_context
def pipeline_run(ctx: click.Context, name: str, day: str | None, first: str | None, last: str | None,
                 queued: bool, as_json: bool) -> None:
    """Run a pipeline now, for a day or a range, here with a progress bar (the run is a database
    row: if this process dies, the cron resumes it)."""
    from bot.pipelines import runner, runs, store

    one, start, end = parse_day(day, "--date"), parse_day(first, "--from"), parse_day(last, "--to")
    if one and (start or end):
        raise click.UsageError("give --date, or --from and --to, not both")
    if (start is None) != (end is None):
        raise click.UsageError("a backfill needs both --from and --to")
    if start and end and end < start:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    dates = one or ((start, end) if start and end else None)
    with open_services(ctx) as services:
        try:
            if queued:
                run_id = runs.start(services, name, dates, "manual")
                console.print(f"run {run_id} queued; follow it with `feishu-bridge pipeline status {name}`")
                return
            run_id = runs.create(services.engine, name, runs.run_days(services, name, dates), "manual")
        except store.PipelineNotFound as exc:
            _fail(f"{exc}; `feishu-bridge pipeline list` shows them")
        except runs.RunActive as exc:
            _fail(f"{exc}; follow it with `feishu-bridge pipeline status {name}`")
        except ValueError as exc:
            _fail(str(exc), 2)
        with _bar(as_json) as (bar, task):
            def progress(phase: str, done: int, total: int) -> None:
                bar.update(task, description=phase, completed=done, total=total or None)

            runner.run_pipeline(services, run_id, progress=progress)
        status = runs.status(services.engine, run_id)
    _report(status, as_json)


def _bar(hidden: bool) -> Any:
    from contextlib import contextmanager

    @contextmanager
    def bar():
        columns = [TextColumn("[bold]{task.description:>6}[/bold]"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn()]
        with Progress(*columns, console=console, disable=hidden, transient=True) as progress:
            yield progress, progress.add_task("start", total=None)

    return bar()


def _report(status: Any, as_json: bool) -> None:
    from bot.pipelines.summary import result_text

    if as_json:
        click.echo(json.dumps(run_json(status), ensure_ascii=False, indent=2))
    elif status.state == "succeeded":
        console.print(f"run {status.id}: [green]succeeded[/green] — created {status.created}, updated "
                      f"{status.updated}, deleted {status.deleted} in {status.calls} Feishu calls")
        if status.summary:
            click.echo(result_text(status.summary))
    if status.state == "failed":
        _fail(f"run {status.id} of {status.pipeline} failed: {status.error}")
    if status.state != "succeeded":
        _fail(f"run {status.id} is {status.state}: {status.error or ''} — the workers retry it; "
              f"`feishu-bridge pipeline status {status.pipeline}` follows it")


@pipeline.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def pipeline_status(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Recent runs (of one pipeline, or all): state, days, rows written, errors."""
    from bot.pipelines import runs

    with open_engine(ctx) as engine:
        recent = runs.recent(engine, name, limit=20)
    if as_json:
        click.echo(json.dumps([run_json(r) for r in recent], ensure_ascii=False, indent=2))
        return
    if not recent:
        console.print("No pipeline runs yet.")
        return
    table = Table("run", "pipeline", "days", "state", "written", "calls", "error")
    for r in recent:
        written = f"+{r.created} ~{r.updated} -{r.deleted}"
        table.add_row(str(r.id), r.pipeline, f"{r.date_from} .. {r.date_to}", r.state, written, str(r.calls),
                      (r.error or "")[:80])
    console.print(table)
