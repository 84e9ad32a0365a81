"""The DDL that makes a table's changes land in `coze_outbox`, for SQLite and PostgreSQL.

Triggers run inside the writer's transaction, so a change and its outbox row commit or roll
back together. Every name put into DDL here has been checked against the live schema and the
identifier pattern first, and is quoted by the dialect as well.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from bot.coze.schema_info import IDENTIFIER

OPERATIONS = ("insert", "update", "delete")
KEY_SEPARATOR = "\x1f"  # joins composite primary keys in row_key (same on both databases)


@dataclass(frozen=True)
class TriggerPlan:
    template_id: int
    table: str
    keys: tuple[str, ...]
    fields: tuple[str, ...]
    operations: tuple[str, ...]  # the enabled ones; empty (or a disabled template) → no triggers

    def __post_init__(self) -> None:
        for name in (self.table, *self.keys, *self.fields):
            if not IDENTIFIER.match(name):
                raise ValueError(f"not a plain identifier: {name!r}")
        if not all(op in OPERATIONS for op in self.operations):
            raise ValueError(f"unknown operation in {self.operations!r}")


def watched(plan: TriggerPlan) -> tuple[str, ...]:
    """The columns whose change writes an update row: the selected fields and the key — a key
    change must enter the outbox even when no selected field moved, or the row's later changes
    (filed under the new key) would not wait for those queued under the old one."""
    return tuple(dict.fromkeys((*plan.fields, *plan.keys)))


def trigger_name(template_id: int, op: str) -> str:
    return f"coze_sync_{int(template_id)}_{op}"


def sqlite_ddl(plan: TriggerPlan, quote, *, with_old_key: bool = True) -> list[str]:
    def doc(alias: str) -> str:
        pairs = ", ".join(f"'{f}', {alias}.{quote(f)}" for f in plan.fields)
        return f"json_object({pairs})"

    def key(alias: str) -> str:
        return " || char(31) || ".join(f"CAST({alias}.{quote(k)} AS TEXT)" for k in plan.keys)

    key_columns = "row_key, old_row_key," if with_old_key else "row_key,"
    statements = []
    for op in plan.operations:
        alias = "OLD" if op == "delete" else "NEW"
        old = doc("OLD") if op != "insert" else "NULL"
        new = doc("NEW") if op != "delete" else "NULL"
        when, old_key = "", "NULL, "
        if op == "update":
            when = " WHEN " + " OR ".join(f"OLD.{quote(f)} IS NOT NEW.{quote(f)}" for f in watched(plan))
            old_key = f"CASE WHEN {key('OLD')} IS NOT {key('NEW')} THEN {key('OLD')} END, "
        if not with_old_key:  # the shape before revision 0004, for its downgrade
            old_key = ""
        statements.append(
            f"CREATE TRIGGER {trigger_name(plan.template_id, op)} AFTER {op.upper()} ON {quote(plan.table)} "
            f"FOR EACH ROW{when} BEGIN "
            # created_at and next_attempt_at: the columns' CURRENT_TIMESTAMP defaults (UTC)
            f"INSERT INTO coze_outbox (template_id, op, {key_columns} old_values, new_values, status, "
            f"attempts) VALUES ({int(plan.template_id)}, '{op}', {key(alias)}, {old_key}{old}, {new}, "
            "'pending', 0); END"
        )
    return statements


def capture_function(template_id: int) -> str:
    return f"coze_capture_{int(template_id)}"


def postgresql_ddl(plan: TriggerPlan, quote, *, with_old_key: bool = True) -> list[str]:
    """A capture function generated for this template (explicit columns: much cheaper than
    filtering `to_jsonb(NEW)`). Inserts and deletes are captured per *statement* from the
    transition table (one INSERT … SELECT however many rows a statement touched, then one
    NOTIFY); updates per row, only when a selected column changed (`WHEN`, so no-op updates
    never enter PL/pgSQL), with a statement-level companion that wakes the dispatcher."""

    def doc(alias: str) -> str:
        return (
            "jsonb_build_object(" + ", ".join(f"'{f}', {alias}.{quote(f)}" for f in plan.fields) + ")::text"
        )

    def key(alias: str) -> str:
        return " || chr(31) || ".join(f"{alias}.{quote(k)}::text" for k in plan.keys)

    function = capture_function(plan.template_id)
    template = int(plan.template_id)
    key_columns = "row_key, old_row_key" if with_old_key else "row_key"  # before 0004: no old_row_key
    columns = (f"template_id, op, {key_columns}, old_values, new_values, status, attempts, "
               "next_attempt_at, created_at")
    no_key = "NULL, " if with_old_key else ""
    old_key = ""
    if with_old_key:  # set only when the update changed the key
        old_key = f"CASE WHEN {key('OLD')} IS DISTINCT FROM {key('NEW')} THEN {key('OLD')} END, "
    body = f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $coze$
DECLARE
    stamp timestamp := now() AT TIME ZONE 'utc';
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO coze_outbox ({columns})
        SELECT {template}, 'insert', {key("n")}, {no_key}NULL, {doc("n")}, 'pending', 0, stamp, stamp
          FROM coze_new AS n;
        IF FOUND THEN
            PERFORM pg_notify('coze_outbox', '{template}');
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO coze_outbox ({columns})
        SELECT {template}, 'delete', {key("o")}, {no_key}{doc("o")}, NULL, 'pending', 0, stamp, stamp
          FROM coze_old AS o;
        IF FOUND THEN
            PERFORM pg_notify('coze_outbox', '{template}');
        END IF;
    ELSE
        INSERT INTO coze_outbox ({columns})
        VALUES ({template}, 'update', {key("NEW")}, {old_key}{doc("OLD")}, {doc("NEW")}, 'pending', 0,
                stamp, stamp);
    END IF;
    RETURN NULL;
END
$coze$"""
    statements = [body]
    for op in plan.operations:
        name, table = trigger_name(plan.template_id, op), quote(plan.table)
        if op == "insert":
            statements.append(
                f"CREATE TRIGGER {name} AFTER INSERT ON {table} REFERENCING NEW TABLE AS coze_new "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
        elif op == "delete":
            statements.append(
                f"CREATE TRIGGER {name} AFTER DELETE ON {table} REFERENCING OLD TABLE AS coze_old "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
        else:
            changed = " OR ".join(f"OLD.{quote(f)} IS DISTINCT FROM NEW.{quote(f)}" for f in watched(plan))
            statements.append(
                f"CREATE TRIGGER {name} AFTER UPDATE ON {table} FOR EACH ROW WHEN ({changed}) "
                f"EXECUTE FUNCTION {function}()"
            )
            statements.append(
                f"CREATE TRIGGER {name}_wake AFTER UPDATE ON {table} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION coze_wake('{template}')"
            )
    return statements


def drop_ddl(dialect: str, template_id: int, table: str | None, quote) -> list[str]:
    names = [trigger_name(template_id, op) for op in OPERATIONS]
    if dialect == "postgresql":
        if table is None or not IDENTIFIER.match(table):
            return []
        return [
            f"DROP TRIGGER IF EXISTS {name}{suffix} ON {quote(table)}"
            for name in names
            for suffix in ("", "_wake")
        ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in names]


def replace_triggers(
    connection: Connection, template_id: int, old_table: str | None, plan: TriggerPlan | None,
    *, with_old_key: bool = True,
) -> None:
    """Drop the template's triggers (on its previous table) and install the planned ones, in
    the caller's transaction. `plan=None` only drops."""
    dialect = connection.dialect.name
    quote = connection.dialect.identifier_preparer.quote_identifier
    for table in {old_table, plan.table if plan else None} - {None}:
        for statement in drop_ddl(dialect, template_id, table, quote):
            connection.exec_driver_sql(statement)
    if dialect == "sqlite":
        for statement in drop_ddl(dialect, template_id, None, quote):
            connection.exec_driver_sql(statement)
    if plan is None or not plan.operations:
        if dialect == "postgresql":
            connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {capture_function(template_id)}()")
        return
    build = postgresql_ddl if dialect == "postgresql" else sqlite_ddl
    for statement in build(plan, quote, with_old_key=with_old_key):
        connection.exec_driver_sql(statement)


def installed_triggers(connection: Connection, template_id: int) -> list[str]:
    """The names of this template's triggers the database actually has (for status and tests)."""
    prefix = f"coze_sync_{int(template_id)}_"
    if connection.dialect.name == "postgresql":
        rows = connection.exec_driver_sql(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND substr(tgname, 1, 10) = 'coze_sync_'"
        )
    else:
        rows = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND substr(name, 1, 10) = 'coze_sync_'"
        )
    # the row triggers; PostgreSQL's statement-level wake-up companions are not listed
    return sorted(r[0] for r in rows if r[0].startswith(prefix) and not r[0].endswith("_wake"))
