"""`feishu-bridge export …`: the contract export from the command line.

Runs are carried out by the workers (`feishu-bridge up`, or `worker` + `cron`); these commands
create, watch, resume and merge them. State lives in the database, so any of them can be run
again at any time, from any machine that shares the database and Redis.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as ProgressBar
from rich.table import Table

from bot.cli.common import console, open_engine, open_services, parse_day, settings_of

if TYPE_CHECKING:  # the commands import what they use: `--help` and `status` stay fast
    from bot.export.progress import Progress


@click.group()
def export() -> None:
    """Bulk-export Feishu Contract cooperation records past the 1000-row cap.

    \b
    1. export auth --from-curl FILE   store the browser session copied from DevTools
    2. export run                     export 2022-01-01..today in adaptive windows
    3. export status / resume / retry follow it, continue it after a pause or crash
    4. export merge                   one workbook + CSV + table, with a validation report
    """


@export.command("auth")
@click.option(
    "--from-curl",
    "curl_file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="A file holding the export request copied as cURL (bash or cmd), or - for stdin.",
)
@click.option("--probe/--no-probe", default=True, show_default=True, help="Check that the session works.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def export_auth(ctx: click.Context, curl_file, probe: bool, as_json: bool) -> None:
    """Store the export endpoint's session (from a curl), or show the stored one, masked."""
    from bot.export import auth as store
    from bot.export.curl import CurlError, parse_curl, problems

    with open_services(ctx) as services:
        if curl_file is not None:
            try:
                parsed = parse_curl(curl_file.read())
            except CurlError as exc:
                raise click.ClickException(f"cannot use that curl: {exc}") from None
            found = problems(parsed)
            if found:
                raise click.ClickException("the curl lacks what the export needs: " + "; ".join(found))
            store.store(services.engine, services.secret_box, parsed)
        if probe:
            try:
                store.probe(services.engine, services.secret_box, services.contract)
            except store.NoExportAuth as exc:
                raise click.ClickException(str(exc)) from None
        status = store.status(services.engine, services.secret_box)
    if status is None:
        raise click.ClickException("no export auth stored: run `feishu-bridge export auth --from-curl FILE`")
    doc = {
        "fingerprint": status.fingerprint,
        "updated_at": status.updated_at,
        "probe_ok": status.probe_ok,
        "probe": status.probe_detail,
        **status.masked,
    }
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        console.print(f"export auth {status.fingerprint} (stored {status.updated_at[:19]} UTC)")
        console.print(f"  url: {status.masked['url']}")
        for name, value in {**status.masked["headers"], **status.masked["cookies"]}.items():
            console.print(f"  {name}: {value}")
        if status.probe_ok is not None:
            console.print(("  ✓ " if status.probe_ok else "  ✗ ") + (status.probe_detail or ""))
    if status.probe_ok is False:
        sys.exit(1)


@export.command("run")
@click.option("--from", "start", default=None, help="First day (default: EXPORT_RANGE_START, 2022-01-01).")
@click.option("--to", "end", default=None, help="Last day, inclusive (default: today).")
@click.option("--cap", type=int, default=None, help="Rows per export the endpoint allows (default 1000).")
@click.option("--initial-days", type=int, default=None, help="Length of the first window (default 7).")
@click.option("--fill", type=float, default=None, help="Aim windows at this share of the cap (default 0.9).")
@click.option(
    "--finer-bounds/--dates-only",
    default=None,
    help="Whether the endpoint takes datetime bounds (lets one busy day be split).",
)
@click.option("--keyword", default=None, help="The export's keyword filter.")
@click.option("--tab", "search_tab", type=int, default=None, help="searchTabEnumCode (default 0).")
@click.option("--concurrency", type=int, default=None, help="Windows exported at once (default 3).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Show progress until the run ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the final status as JSON.")
@click.pass_context
def export_run(
    ctx: click.Context, start: str | None, end: str | None, as_json: bool, wait: bool, **overrides
) -> None:
    """Start a run: windows are planned, exported, caught, downloaded and checked by the workers."""
    from bot.export import runner
    from bot.export.auth import NoExportAuth, load
    from bot.export.options import RunOptions
    from bot.export.progress import progress

    settings = settings_of(ctx)
    first = parse_day(start, "--from") or date.fromisoformat(settings.export_range_start)
    last = parse_day(end, "--to") or date.today()
    if last < first:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    with open_services(ctx) as services:
        try:
            load(services.engine, services.secret_box)
        except NoExportAuth as exc:
            raise click.ClickException(str(exc)) from None
        options = RunOptions.from_settings(settings, **overrides)
        try:
            run_id = runner.create_run(
                services.engine,
                datetime.combine(first, datetime.min.time()),
                datetime.combine(last + timedelta(days=1), datetime.min.time()),
                options,
            )
        except (runner.RunConflict, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        _kick(services, run_id)
        console.print(
            f"export run {run_id}: {first} .. {last}, cap {options.cap}, {options.concurrency} at a time"
        )
        if wait:
            _watch(services, run_id, as_json)
        elif as_json:
            click.echo(json.dumps(progress(services.engine, run_id).as_json(), ensure_ascii=False, indent=2))


def _kick(services, run_id: int) -> None:
    from rq import Worker

    from bot.export.schedule import schedule_plan

    if not Worker.all(connection=services.redis):
        console.print(
            "[yellow]no workers are running: the run starts when `feishu-bridge up` (or `worker`) "
            "does[/yellow]"
        )
    schedule_plan(services, run_id)


def _watch(services, run_id: int, as_json: bool, poll: float = 0.5) -> None:
    from bot.export.progress import progress

    columns = [
        TextColumn("[bold]export[/bold]"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn(
            "{task.fields[windows]} windows · {task.fields[records]} records · {task.fields[calls]} calls"
        ),
        TimeRemainingColumn(),
    ]
    with ProgressBar(*columns, console=console, disable=as_json) as bar:
        task = bar.add_task("export", total=1000, windows="0", records=0, calls=0)
        while True:
            status = progress(services.engine, run_id)
            bar.update(
                task,
                completed=status.fraction * 1000,
                records=status.records,
                calls=status.calls,
                windows=f"{status.windows_done}/{status.total_windows}",
            )
            if status.status != "running":
                break
            time.sleep(poll)
    _print_status(status, as_json)
    if status.status == "paused":
        sys.exit(3)


def _print_status(status: Progress, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(status.as_json(), ensure_ascii=False, indent=2))
        return
    out = Console()
    out.print(
        f"run {status.run}: [bold]{status.status}[/bold]  {status.range[0][:10]} .. "
        f"{status.range[1][:10]} (end exclusive)"
    )
    if status.pause_reason:
        out.print(
            f"  paused: {status.pause_reason}  → new curl: `export auth --from-curl FILE`, then "
            "`export resume`"
        )
    out.print(
        f"  {status.records} records in {status.windows.get('verified', 0)} verified windows · "
        f"{status.calls} export calls · {round(status.fraction * 100, 1)}% of the range"
    )
    out.print("  windows: " + ", ".join(f"{k}={v}" for k, v in sorted(status.windows.items())))
    if status.eta_seconds is not None:
        out.print(f"  ETA: {timedelta(seconds=status.eta_seconds)}")
    for problem in status.problems:
        out.print(
            f"  [red]window {problem.window}[/red] {problem.start} .. {problem.end}: "
            f"{problem.state} — {problem.reason}  (retry: `export retry {problem.window}`)"
        )


def _run_id(engine, run: int | None) -> int:
    from bot.export import runner

    found = run or runner.active_run_id(engine) or runner.latest_run_id(engine)
    if found is None:
        raise click.ClickException("no export run yet: start one with `feishu-bridge export run`")
    return found


@export.command("status")
@click.option("--run", "run", type=int, default=None, help="Run id (default: the active or latest run).")
@click.option("--windows", "show_windows", is_flag=True, help="List every window.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def export_status(ctx: click.Context, run: int | None, show_windows: bool, as_json: bool) -> None:
    """Where the run stands: windows by state, records, calls, ETA, problems."""
    from bot.export.progress import progress, window_list

    with open_engine(ctx) as engine:  # reading needs no Redis
        run_id = _run_id(engine, run)
        status = progress(engine, run_id)
        windows = window_list(engine, run_id) if show_windows else None
    if as_json:
        click.echo(
            json.dumps(
                {**status.as_json(), **({"window_list": windows} if windows is not None else {})},
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    _print_status(status, False)
    if windows:
        table = Table("id", "start", "end", "state", "attempts", "rows", "file / reason")
        for w in windows:
            table.add_row(
                str(w["id"]),
                w["start"],
                w["end"],
                w["state"],
                str(w["attempts"]),
                str(w["rows"] or ""),
                Path(w["file"]).name if w["file"] else (w["reason"] or ""),
            )
        Console().print(table)


@export.command("resume")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Show progress until the run ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the final status as JSON.")
@click.pass_context
def export_resume(ctx: click.Context, wait: bool, as_json: bool) -> None:
    """Continue the active run (after a pause for auth, or a crash): nothing is redone twice."""
    from bot.export import auth as store
    from bot.export import runner

    with open_services(ctx) as services:
        run_id = runner.active_run_id(services.engine)
        if run_id is None:
            raise click.ClickException("no active run to resume (see `export status`)")
        try:
            ok, detail = store.probe(services.engine, services.secret_box, services.contract)
        except store.NoExportAuth as exc:
            raise click.ClickException(str(exc)) from None
        if not ok:
            raise click.ClickException(
                f"the stored session does not work ({detail}): copy a new curl and run "
                "`feishu-bridge export auth --from-curl FILE`"
            )
        runner.resume(services.engine, run_id)
        _kick(services, run_id)
        console.print(f"export run {run_id} resumed")
        if wait:
            _watch(services, run_id, as_json)


@export.command("retry")
@click.argument("window", type=int)
@click.pass_context
def export_retry(ctx: click.Context, window: int) -> None:
    """Export WINDOW (an id from `export status --windows`) again."""
    from bot.export import runner

    with open_services(ctx) as services:
        run_id = _run_id(services.engine, None)
        try:
            runner.retry_window(services.engine, run_id, window)
        except runner.RunConflict as exc:
            raise click.ClickException(str(exc)) from None
        _kick(services, run_id)
    console.print(f"window {window} queued again")


@export.command("cancel")
@click.pass_context
def export_cancel(ctx: click.Context) -> None:
    """Stop the active run (its files and state stay; `export run` can start a new one)."""
    from bot.export import runner

    with open_services(ctx) as services:
        run_id = runner.active_run_id(services.engine)
        if run_id is None:
            raise click.ClickException("no active run")
        runner.cancel(services.engine, run_id)
    console.print(f"export run {run_id} cancelled")


@export.command("merge")
@click.option("--run", "run", type=int, default=None, help="Run id (default: the latest run).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory (default: the export archive directory).",
)
@click.option(
    "--spot-check",
    "spot",
    type=int,
    default=50,
    show_default=True,
    help="Random records re-read from their source files.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the validation report as JSON.")
@click.pass_context
def export_merge(ctx: click.Context, run: int | None, out_dir: Path | None, spot: int, as_json: bool) -> None:
    """Merge the run's files: workbook (+ validation sheet), CSV, the contract_cooperation_records table."""
    from bot.export.limits import WorkbookLimits
    from bot.export.merge import build_outputs

    settings = settings_of(ctx)
    with open_services(ctx) as services:
        run_id = _run_id(services.engine, run)
        started = time.perf_counter()
        outputs = build_outputs(
            services.engine,
            run_id,
            out_dir or settings.effective_archive_dir,
            id_column=settings.export_id_column,
            time_column=settings.export_time_column,
            spot_sample=spot,
            limits=WorkbookLimits.from_settings(settings),
        )
        seconds = time.perf_counter() - started
    report = json.loads(outputs.report.read_text(encoding="utf-8"))
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_report(report)
        console.print(
            f"{outputs.records} records in {seconds:.1f}s → {outputs.workbook}\n  {outputs.csv}\n"
            f"  {outputs.report}"
        )
    if not outputs.ok:
        sys.exit(1)


@export.command("verify")
@click.option("--run", "run", type=int, default=None, help="Run id (default: the latest run).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def export_verify(ctx: click.Context, run: int | None, as_json: bool) -> None:
    """Check the merged table against the run's files (ids and values) and the validation report."""
    from bot.export.limits import WorkbookLimits
    from bot.export.verify import verify_run

    settings = settings_of(ctx)
    with open_services(ctx) as services:
        result = verify_run(
            services.engine,
            _run_id(services.engine, run),
            id_column=settings.export_id_column,
            time_column=settings.export_time_column,
            limits=WorkbookLimits.from_settings(settings),
        )
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        console.print(("✓ " if result["ok"] else "✗ ") + result["summary"])
    if not result["ok"]:
        sys.exit(1)


def _print_report(report: dict) -> None:
    totals = report["totals"]
    out = Console()
    out.print(
        f"{'✓' if report['ok'] else '✗'} {totals['records']} records from {totals['files']} files "
        f"({totals['rows_read']} rows read, {totals['duplicates_removed']} duplicates removed); "
        f"{report['export_calls']} export calls"
    )
    for key in ("coverage_gaps", "not_exported"):
        if report[key]:
            out.print(f"  [red]{key.replace('_', ' ')}[/red]: {report[key]}")
    if report["columns"]["differences"]:
        out.print(f"  column differences: {report['columns']['differences']}")
    spot = report["spot_check"]
    out.print(f"  spot check: {spot['sampled']} records, {len(spot['mismatches'])} mismatches")


@export.command("login")
@click.option("--headless", is_flag=True, help="No visible window (for automation; the QR cannot be seen).")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait for the scan.")
@click.pass_context
def export_login(ctx: click.Context, headless: bool, timeout: float) -> None:
    """Log the download browser into the web messenger once (scan the QR code with Feishu mobile)."""
    from bot.export.messenger import login

    settings = settings_of(ctx)
    console.print(f"opening {settings.export_messenger_url} — scan the QR code with the Feishu app")
    if not login(settings, headless=headless, timeout=timeout):
        raise click.ClickException("not logged in before the timeout")
    console.print(f"✓ logged in; the profile is kept in {settings.effective_browser_profile}")
