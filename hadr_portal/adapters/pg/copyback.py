"""Copying tables back from a scratch instance into the live database: the "someone deleted rows" repair.

The scratch instance is a server paused in recovery at the chosen point (read-only). `tables_copy_back()` works
in the one order that cannot leave half a repair:

1. checks, before anything is written: each table exists on both sides with the same columns (names and types, in
   order); `missing` needs a primary key to tell missing rows apart, `replace` refuses a table that tables not
   being copied point at; a filter is one expression that passes the SQL guard (`where_refusal`) and runs on the
   scratch side only, as the role given there, in a READ ONLY transaction;
2. in one transaction on the live side: each scratch table streamed (`COPY … TO STDOUT`, binary) into a temporary
   table; the live tables locked, so that no application write slips between the safety copy, the change and the
   counts; a safety copy of each (`CREATE TABLE <safety_schema>.<table> AS TABLE <table>`); then the rows inserted:
   those missing by primary key (`missing`), or all of them after a TRUNCATE (`replace`), parents before the
   tables that point at them; the counts before and after.

Locks are waited for at most `LOCK_TIMEOUT` seconds: a session holding one (a long transaction, a migration) makes
the copy fail at once with that reason instead of hanging behind it while the application's own writes queue up
behind the copy. Any failure rolls everything back, the safety copies with it: the live database is as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import psycopg
from pglast import ast, parse_sql
from pglast.enums import SetOperation
from psycopg import sql

from hadr_portal.adapters.sqlguard import sql_refusal

from .connection import BackupFailed, PgConninfo, superuser_refusal
from .dbadmin import connect

CopyMode = Literal["missing", "replace"]
MODES: tuple[CopyMode, ...] = ("missing", "replace")
LOCK_TIMEOUT = 5.0
CONNECT_TIMEOUT = 10.0
FILTER_KIND = "copy-back filter"
_IDENTIFIER_BYTES = 63
# a SELECT wrapped around a filter has these and nothing else: the filter cannot add a UNION, an ORDER BY, a LIMIT
_OTHER_CLAUSES = (
    "distinctClause",
    "intoClause",
    "groupClause",
    "havingClause",
    "windowClause",
    "valuesLists",
    "sortClause",
    "limitOffset",
    "limitCount",
    "lockingClause",
    "withClause",
)


class CopyBackRefused(ValueError):
    """The copy cannot run as asked (a table, its columns, a filter); nothing was touched."""


class CopyBackFailed(Exception):
    """The copy started and failed; its transaction was rolled back, so the live database is as it was."""


@dataclass(frozen=True)
class TableCopy:
    """What one table's copy did: rows read from the scratch instance, rows in the live table before and after,
    rows inserted, and where its safety copy is (`schema.table`)."""

    table: str
    rows_read: int
    rows_before: int
    rows_after: int
    rows_copied: int
    safety_table: str

    def as_data(self) -> dict[str, Any]:
        return asdict(self)


def table_name_parse(name: str) -> tuple[str, str]:
    """(schema, table) of `table` or `schema.table`, as the catalog spells them (a bare name is in `public`)."""
    parts = name.strip().split(".")
    if not 1 <= len(parts) <= 2 or not all(part.strip() for part in parts):
        raise CopyBackRefused(f"{name!r} is not a table name: write table or schema.table")
    return ("public", parts[0].strip()) if len(parts) == 1 else (parts[0].strip(), parts[1].strip())


def _quoted(schema: str, table: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))


def _filter_select(schema: str, table: str, expression: str) -> str:
    # the newline ends a trailing -- comment before anything the query is wrapped in
    return f"SELECT 1 FROM {_quoted(schema, table)} WHERE {expression}\n"


def where_refusal(table: str, expression: str) -> str:
    """Why `expression` may not filter the rows of `table` copied back, or "" when it may. It is read as
    `SELECT 1 FROM table WHERE <expression>`, which must pass the SQL guard and be nothing more than that."""
    schema, name = table_name_parse(table)
    if not expression.strip():
        return f"the {FILTER_KIND} for {schema}.{name} is empty"
    text = _filter_select(schema, name, expression)
    refusal = sql_refusal(text, kind=FILTER_KIND)
    if refusal:
        return refusal
    statement = parse_sql(text)[0].stmt  # the guard parsed it already: one SELECT
    assert isinstance(statement, ast.SelectStmt)
    clauses = [clause for clause in _OTHER_CLAUSES if getattr(statement, clause, None)]
    if statement.op != SetOperation.SETOP_NONE or clauses or len(statement.fromClause or ()) != 1:
        return (
            f"a {FILTER_KIND} is one condition on the table's rows (what follows WHERE), e.g. "
            "created_at >= '2025-01-31 14:00'; no UNION, ORDER BY, LIMIT or GROUP BY"
        )
    return ""


@dataclass
class _Table:
    schema: str
    name: str
    live_oid: int = 0
    columns: tuple[str, ...] = ()  # copied: every column but generated ones
    expression: str = ""
    temporary: str = ""
    rows_read: int = 0
    rows_before: int = 0
    safety: str = ""

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def column_list(self) -> sql.Composed:
        return sql.SQL(", ").join(sql.Identifier(column) for column in self.columns)


_RELATION = (
    "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s"
)
_COLUMNS = (
    "SELECT attname, format_type(atttypid, atttypmod), attgenerated <> '' FROM pg_attribute"
    " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
)
_PRIMARY_KEY = "SELECT 1 FROM pg_constraint WHERE conrelid = %s AND contype = 'p'"


def tables_copy_back(
    source: PgConninfo,
    live: PgConninfo,
    *,
    tables: Sequence[str],
    mode: CopyMode,
    where: Mapping[str, str] | None,
    safety_schema: str,
    statement_timeout: float = 3600,
    on_step: Callable[[str], None] | None = None,
) -> list[TableCopy]:
    """Copy `tables` from `source` (the scratch instance, as a read role) into `live` (as a role that may write
    there), `mode` "missing" or "replace", each table filtered by its expression in `where` ("missing" only).
    The counts per table, in the order asked. Raises CopyBackRefused (nothing touched) or CopyBackFailed
    (rolled back). `on_step` hears what is being done, for a log."""
    plan = _plan_parse(tables, mode, where)
    run = _CopyBack(plan, mode, safety_schema, statement_timeout, on_step or (lambda _message: None))
    limits = {"statement_timeout": str(int(statement_timeout * 1000)), "lock_timeout": str(int(LOCK_TIMEOUT * 1000))}
    try:
        live_conn = connect(live, timeout=CONNECT_TIMEOUT, **limits)
    except BackupFailed as exc:
        raise CopyBackFailed(f"the live database: {exc}") from None
    with live_conn:
        try:
            source_conn = connect(source, timeout=CONNECT_TIMEOUT, default_transaction_read_only="on", **limits)
        except BackupFailed as exc:
            raise CopyBackFailed(f"the scratch instance: {exc}") from None
        with source_conn:
            if any(table.expression for table in plan) and (refusal := superuser_refusal(source_conn, FILTER_KIND)):
                raise CopyBackRefused(f"the scratch instance {refusal}")
            return run.execute(live_conn, source_conn)


def copy_back_plan(tables: Sequence[str], *, mode: str, where: Mapping[str, str] | None) -> dict[str, str]:
    """What a copy-back would copy, checked before anything connects: each table as `schema.table`, in the order
    given, with its filter ("" for none). Raises CopyBackRefused (a name, the mode, a filter)."""
    return {table.label: table.expression for table in _plan_parse(tables, mode, where)}


def _plan_parse(tables: Sequence[str], mode: str, where: Mapping[str, str] | None) -> list[_Table]:
    if mode not in MODES:
        raise CopyBackRefused(f"unknown mode {mode!r}: missing (insert the rows that are gone) or replace")
    if not tables:
        raise CopyBackRefused("name at least one table to copy back")
    plan: list[_Table] = []
    for name in tables:
        schema, table = table_name_parse(name)
        if any((entry.schema, entry.name) == (schema, table) for entry in plan):
            raise CopyBackRefused(f"{schema}.{table} is listed twice")
        plan.append(_Table(schema, table))
    for name, expression in (where or {}).items():
        if not expression.strip():
            continue
        key = table_name_parse(name)
        entry = next((entry for entry in plan if (entry.schema, entry.name) == key), None)
        if entry is None:
            raise CopyBackRefused(f"a filter is given for {'.'.join(key)}, which is not among the tables to copy back")
        if mode == "replace":
            raise CopyBackRefused("replace copies whole tables: a filter is only for missing rows")
        if refusal := where_refusal(entry.label, expression):
            raise CopyBackRefused(f"{entry.label}: {refusal}")
        entry.expression = expression.strip()
    return plan


class _CopyBack:
    """One run: the checks and the copy, remembering the step it is at for the error message."""

    def __init__(
        self,
        plan: list[_Table],
        mode: CopyMode,
        safety_schema: str,
        statement_timeout: float,
        on_step: Callable[[str], None],
    ) -> None:
        self.plan, self.mode, self.safety_schema = plan, mode, safety_schema
        self.statement_timeout, self.on_step = statement_timeout, on_step
        self.step = "checking the tables"

    def _at(self, step: str) -> None:
        self.step = step
        self.on_step(step[0].upper() + step[1:] + ".")

    def execute(self, live: psycopg.Connection[Any], source: psycopg.Connection[Any]) -> list[TableCopy]:
        try:
            with live.transaction():
                with source.transaction():
                    source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    self._check(live, source)
                    order = _insert_order(live, self.plan)
                    for table in order:
                        self._stream(live, source, table)
                # the scratch side's transaction ends here: what follows needs only the live side
                copies = self._change(live, order)
        except psycopg.errors.LockNotAvailable:
            raise CopyBackFailed(
                f"{self.step}: another session holds a lock on it (a long transaction or a migration?). The copy "
                f"waits at most {LOCK_TIMEOUT:g} s for a lock, so that it never hangs behind the application. "
                "Nothing was changed; try again once that session is done."
            ) from None
        except psycopg.errors.QueryCanceled:
            raise CopyBackFailed(
                f"{self.step}: took longer than the statement timeout ({self.statement_timeout:g} s). "
                "Nothing was changed."
            ) from None
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CopyBackFailed(f"{self.step}: {first}. Nothing was changed (rolled back).") from None
        by_label = {copy.table: copy for copy in copies}
        return [by_label[table.label] for table in self.plan]

    def _check(self, live: psycopg.Connection[Any], source: psycopg.Connection[Any]) -> None:
        for table in self.plan:
            self.step = f"checking {table.label}"
            live_oid = _relation(live, table, "the live database")
            source_oid = _relation(source, table, "the scratch instance")
            live_columns = live.execute(_COLUMNS, [live_oid]).fetchall()
            source_columns = source.execute(_COLUMNS, [source_oid]).fetchall()
            if difference := _columns_difference(live_columns, source_columns):
                raise CopyBackRefused(
                    f"{table.label} has other columns live than on the scratch instance ({difference}): "
                    "it changed since that point; copy it by hand"
                )
            table.live_oid = live_oid
            table.columns = tuple(name for name, _type, generated in live_columns if not generated)
            if self.mode == "missing" and not live.execute(_PRIMARY_KEY, [live_oid]).fetchone():
                raise CopyBackRefused(
                    f"{table.label} has no primary key, so missing rows cannot be told from present ones: "
                    "copy it with replace (the whole table), or add a primary key"
                )
        if self.mode == "replace":
            copied = [table.live_oid for table in self.plan]
            rows = live.execute(
                "SELECT DISTINCT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint"
                " WHERE contype = 'f' AND confrelid = ANY(%s::oid[]) AND NOT conrelid = ANY(%s::oid[]) ORDER BY 1",
                [copied, copied],
            ).fetchall()
            if rows:
                pointing = ", ".join(f"{child} → {parent}" for child, parent in rows)
                raise CopyBackRefused(
                    f"other tables point at the tables to replace ({pointing}): replace them too (add them to the "
                    "list), or copy the missing rows only"
                )

    def _stream(self, live: psycopg.Connection[Any], source: psycopg.Connection[Any], table: _Table) -> None:
        self._at(f"reading {table.label} from the scratch instance")
        table.temporary = f"hadr_copy_back_{self.plan.index(table)}"
        temporary = sql.Identifier(table.temporary)
        live.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                temporary, table.column_list, table.identifier
            )
        )
        select = sql.SQL("SELECT {} FROM {}").format(table.column_list, table.identifier)
        if table.expression:
            if refusal := where_refusal(table.label, table.expression):  # checked again right before it runs
                raise CopyBackRefused(f"{table.label}: {refusal}")
            select += sql.SQL(" WHERE ") + sql.SQL(table.expression) + sql.SQL("\n")
        reading = sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(select)
        writing = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(temporary, table.column_list)
        with source.cursor() as out_cursor, live.cursor() as in_cursor:
            with out_cursor.copy(reading) as out, in_cursor.copy(writing) as into:
                for block in out:
                    into.write(block)
            table.rows_read = max(0, in_cursor.rowcount)

    def _change(self, live: psycopg.Connection[Any], order: list[_Table]) -> list[TableCopy]:
        # missing: readers go on, writers wait for the commit; replace: what TRUNCATE takes anyway
        lock = "ACCESS EXCLUSIVE" if self.mode == "replace" else "SHARE ROW EXCLUSIVE"
        for table in self.plan:
            self._at(f"locking {table.label} in the live database")
            live.execute(sql.SQL("LOCK TABLE {} IN " + lock + " MODE").format(table.identifier))
        self._at(f"making safety copies in schema {self.safety_schema}")
        live.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.safety_schema)))
        for table in self.plan:
            self.step = f"making the safety copy of {table.label}"
            table.safety = _safety_name(live, self.safety_schema, table)
            with live.cursor() as cursor:
                cursor.execute(
                    sql.SQL("CREATE TABLE {} AS TABLE {}").format(
                        sql.Identifier(self.safety_schema, table.safety), table.identifier
                    )
                )
                table.rows_before = cursor.rowcount
        if self.mode == "replace":
            self._at("emptying " + ", ".join(table.label for table in self.plan))
            live.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(table.identifier for table in self.plan)))
        copies = []
        for table in order:
            self._at(f"inserting into {table.label}")
            statement = sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
                table.identifier, table.column_list, table.column_list, sql.Identifier(table.temporary)
            )
            if self.mode == "missing":
                statement += sql.SQL(" ON CONFLICT DO NOTHING")
            with live.cursor() as cursor:
                cursor.execute(statement)
                copied = cursor.rowcount
            self.step = f"counting the rows of {table.label}"
            row = live.execute(sql.SQL("SELECT count(*) FROM {}").format(table.identifier)).fetchone()
            copies.append(
                TableCopy(
                    table=table.label,
                    rows_read=table.rows_read,
                    rows_before=table.rows_before,
                    rows_after=int(row[0]) if row else 0,
                    rows_copied=copied,
                    safety_table=f"{self.safety_schema}.{table.safety}",
                )
            )
        self.step = "committing"
        return copies


def _relation(conn: psycopg.Connection[Any], table: _Table, side: str) -> int:
    row = conn.execute(_RELATION, [table.schema, table.name]).fetchone()
    if row is None:
        raise CopyBackRefused(f"{table.label} does not exist in {side}")
    if row[1] not in ("r", "p"):
        raise CopyBackRefused(f"{table.label} is not a table in {side} (a view or another kind of relation)")
    return int(row[0])


def _columns_difference(live: list[tuple[Any, ...]], source: list[tuple[Any, ...]]) -> str:
    """The first difference between two tables' (name, type, generated) columns, in words; "" when they match."""
    for position, (here, there) in enumerate(zip(live, source, strict=False), start=1):
        if here[:2] != there[:2]:
            return f"column {position} is {here[0]} {here[1]} live, {there[0]} {there[1]} on the scratch instance"
        if here[2] != there[2]:
            return f"{here[0]} is generated on one side only"
    if len(live) != len(source):
        longer, side = (live, "live") if len(live) > len(source) else (source, "on the scratch instance")
        extra = ", ".join(str(column[0]) for column in longer[min(len(live), len(source)) :])
        return f"only {side}: {extra}"
    return ""


def _insert_order(live: psycopg.Connection[Any], plan: list[_Table]) -> list[_Table]:
    """The tables with each one after the tables it points at (a foreign key is checked as each INSERT ends)."""
    oids = [table.live_oid for table in plan]
    edges = live.execute(
        "SELECT conrelid, confrelid FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY(%s::oid[])"
        " AND confrelid = ANY(%s::oid[]) AND conrelid <> confrelid",
        [oids, oids],
    ).fetchall()
    parents = {
        table.live_oid: {int(parent) for child, parent in edges if int(child) == table.live_oid} for table in plan
    }
    order: list[_Table] = []
    pending = list(plan)
    while pending:
        ready = [table for table in pending if parents[table.live_oid] <= {done.live_oid for done in order}]
        chosen = ready[0] if ready else pending[0]  # a cycle: the database says which key fails, if one does
        order.append(chosen)
        pending.remove(chosen)
    return order


def _safety_name(live: psycopg.Connection[Any], schema: str, table: _Table) -> str:
    """The table's name in the safety schema (schema.table for a table outside `public`), with _2, _3 … when an
    earlier copy-back of the same restore used it already; within PostgreSQL's 63 bytes."""
    base = table.name if table.schema == "public" else f"{table.schema}.{table.name}"
    number = 1
    while True:
        suffix = "" if number == 1 else f"_{number}"
        name = base.encode()[: _IDENTIFIER_BYTES - len(suffix)].decode(errors="ignore") + suffix
        if not live.execute(_RELATION, [schema, name]).fetchone():
            return name
        number += 1
