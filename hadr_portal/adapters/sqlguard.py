"""The SQL guard: a user-written query (a funnel's, a restore verification's) is parsed by PostgreSQL's own
parser (pglast) and refused unless it is one plain SELECT over the application's tables, calling only
allowlisted built-in functions.

`sql_refusal(sql, kind=...)` returns why the query is refused ("" when it may run); `sql_check()` raises
`SqlRefused` with that reason. The reason names the function, operator, table or statement kind, in words an
operator can act on. Checked when the query is saved and again right before it runs; the query still runs
under a read role, in a READ ONLY transaction, with a statement timeout — the guard is one layer, not the only.

Refused:

- anything but one statement, and any statement but SELECT (VALUES and WITH … SELECT are SELECTs)
- SELECT INTO (it creates a table), FOR UPDATE / FOR SHARE (they lock rows), a data-modifying WITH
- a function not in `ALLOWED_FUNCTIONS`, a schema-qualified function outside pg_catalog, and the
  set-returning functions of `DENIED_SET_RETURNING` (they read the server's files, settings or other databases)
- system catalogs (`pg_*`, `pg_catalog.*`, `information_schema.*`: a role with pg_read_all_data can read
  pg_authid's password hashes), operators not in `ALLOWED_OPERATORS`, and syntax the guard does not know
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError

# Built-in functions a read-only report may call, by what they are for (names as pg_catalog spells them;
# syntax such as EXTRACT, TRIM, SUBSTRING … FROM, AT TIME ZONE and OVERLAPS is parsed into these names).
FUNCTION_GROUPS: dict[str, tuple[str, ...]] = {
    group: tuple(names.split())
    for group, names in {
        "aggregates": "count sum avg min max bool_and bool_or every array_agg string_agg json_agg jsonb_agg"
        " json_object_agg jsonb_object_agg bit_and bit_or stddev stddev_pop stddev_samp variance var_pop var_samp"
        " percentile_cont percentile_disc mode corr covar_pop covar_samp",
        "window": "row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value",
        "date/time": "date_trunc date_part date_bin extract now clock_timestamp statement_timestamp"
        " transaction_timestamp age make_date make_time make_timestamp make_timestamptz make_interval to_timestamp"
        " to_date to_char timezone isfinite justify_days justify_hours justify_interval overlaps",
        "string": "lower upper initcap length char_length character_length octet_length bit_length substring substr"
        " position strpos btrim ltrim rtrim lpad rpad left right concat concat_ws replace translate split_part"
        " reverse repeat starts_with overlay normalize format md5 to_hex regexp_replace regexp_match"
        " regexp_matches regexp_like regexp_count regexp_substr similar_to_escape string_to_array array_to_string",
        "math": "round abs ceil ceiling floor trunc sign sqrt cbrt power pow exp ln log log10 mod div pi"
        " width_bucket gcd lcm",
        "casts": "date text int2 int4 int8 float4 float8 numeric timestamp timestamptz",
        "arrays and JSON": "array_length array_lower array_upper cardinality array_position unnest to_json to_jsonb"
        " json_build_object jsonb_build_object json_build_array jsonb_build_array json_array_length"
        " jsonb_array_length json_typeof jsonb_typeof json_extract_path_text jsonb_extract_path_text"
        " json_array_elements jsonb_array_elements json_array_elements_text jsonb_array_elements_text",
        "series": "generate_series",
    }.items()
}
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(name for names in FUNCTION_GROUPS.values() for name in names)
# Conditional expressions (COALESCE, NULLIF, GREATEST, LEAST, CASE) are syntax, always allowed.

# Set-returning functions that read the server rather than the application's data: never allowed, whatever
# the allowlist says (named apart so that the refusal says why).
DENIED_SET_RETURNING: frozenset[str] = frozenset(
    "pg_ls_dir pg_ls_logdir pg_ls_waldir pg_ls_tmpdir pg_ls_archive_statusdir pg_ls_logicalsnapdir"
    " pg_ls_logicalmapdir pg_ls_replslotdir pg_read_file pg_read_binary_file pg_stat_file"
    " pg_logical_slot_get_changes pg_logical_slot_peek_changes pg_logical_slot_get_binary_changes"
    " pg_logical_slot_peek_binary_changes pg_show_all_settings pg_hba_file_rules pg_ident_file_mappings pg_config"
    " pg_stat_get_activity pg_get_keywords pg_options_to_table pg_timezone_names dblink dblink_fetch"
    " dblink_get_result dblink_get_notify query_to_xml table_to_xml cursor_to_xml".split()
)

# Built-in operators: comparison, arithmetic, text matching, arrays, JSON, ranges.
ALLOWED_OPERATORS: frozenset[str] = frozenset(
    "= <> != < > <= >= + - * / % ^ || ~~ !~~ ~~* !~~* ~ ~* !~ !~* @> <@ && -> ->> #> #>> ? ?| ?& |/ ||/ @ & | #"
    " << >>".split()
)
_RANGE_OPERATORS = {"BETWEEN", "NOT BETWEEN", "BETWEEN SYMMETRIC", "NOT BETWEEN SYMMETRIC"}

SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})

# Syntax the guard knows to be harmless by itself (what it contains is checked too).
_PLAIN_NODES: tuple[type[ast.Node], ...] = (
    ast.RawStmt,
    ast.SelectStmt,
    ast.ResTarget,
    ast.ColumnRef,
    ast.A_Star,
    ast.A_Const,
    ast.Integer,
    ast.Float,
    ast.String,
    ast.Boolean,
    ast.BitString,
    ast.ParamRef,
    ast.BoolExpr,
    ast.NullTest,
    ast.BooleanTest,
    ast.CaseExpr,
    ast.CaseWhen,
    ast.CoalesceExpr,
    ast.MinMaxExpr,
    ast.SubLink,
    ast.RangeSubselect,
    ast.RangeFunction,
    ast.JoinExpr,
    ast.Alias,
    ast.SortBy,
    ast.WindowDef,
    ast.GroupingSet,
    ast.GroupingFunc,
    ast.WithClause,
    ast.CommonTableExpr,
    ast.CTESearchClause,
    ast.CTECycleClause,
    ast.SQLValueFunction,
    ast.A_Indirection,
    ast.A_Indices,
    ast.A_ArrayExpr,
    ast.RowExpr,
    ast.CollateClause,
    ast.NamedArgExpr,
    ast.TypeCast,
)
_DATA_MODIFYING = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)
# psycopg's placeholders (%(since)s, %s) are $n parameters to the server, and %% is a literal %.
_PLACEHOLDER = re.compile(r"%\(\w+\)[sbt]|%[sbt]|%%")


class SqlRefused(ValueError):
    """A user-written query that may not run; the message says what is refused and what is allowed."""


def _allowed_summary() -> str:
    groups = ", ".join(f"{group} ({', '.join(names[:3])} …)" for group, names in FUNCTION_GROUPS.items())
    return f"{groups}; the README lists them all (Security → Database roles)"


def sql_check(sql: str, *, kind: str = "query", placeholders: bool = False) -> None:
    """Raise SqlRefused unless `sql` is one SELECT the guard allows. With `placeholders`, psycopg's `%(name)s`
    and `%s` are read as the parameters they become."""
    reason = sql_refusal(sql, kind=kind, placeholders=placeholders)
    if reason:
        raise SqlRefused(reason)


def sql_refusal(sql: str, *, kind: str = "query", placeholders: bool = False) -> str:
    """Why `sql` may not run as a `kind` (e.g. "funnel query"), or "" when it may."""
    text = _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else "$1", sql) if placeholders else sql
    try:
        statements = parse_sql(text)
    except ParseError as exc:
        return f"the {kind} is not valid SQL: {exc}"
    if len(statements) != 1:
        return f"a {kind} must be one SELECT statement; this has {len(statements) or 'no'} statements"
    statement = statements[0].stmt
    if not isinstance(statement, ast.SelectStmt):
        return f"a {kind} must be a SELECT; {_statement_word(statement)} is not allowed"
    for node in _walk(statements[0]):
        reason = _node_refusal(node, kind)
        if reason:
            return reason
    return ""


def _walk(node: ast.Node) -> Iterator[ast.Node]:
    yield node
    for attribute in node:
        yield from _nodes_in(getattr(node, attribute, None))


def _nodes_in(value: Any) -> Iterator[ast.Node]:
    if isinstance(value, ast.Node):
        yield from _walk(value)
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _nodes_in(item)


def _statement_word(node: object) -> str:
    words = {
        "InsertStmt": "INSERT",
        "UpdateStmt": "UPDATE",
        "DeleteStmt": "DELETE",
        "MergeStmt": "MERGE",
        "ExplainStmt": "EXPLAIN",
        "CopyStmt": "COPY",
        "DoStmt": "DO",
        "CallStmt": "CALL",
        "VariableSetStmt": "SET",
        "TransactionStmt": "a transaction command",
    }
    name = type(node).__name__
    return words.get(name, re.sub(r"(?<!^)(?=[A-Z])", " ", name.removesuffix("Stmt")).upper())


def _names(items: Any) -> list[str]:
    return [item.sval for item in items or () if isinstance(item, ast.String) and item.sval is not None]


def _node_refusal(node: ast.Node, kind: str) -> str:
    if isinstance(node, ast.SelectStmt):
        if node.intoClause is not None:
            return f"SELECT INTO creates a table: not allowed in a {kind}"
        if node.lockingClause:
            return f"FOR UPDATE / FOR SHARE locks rows: not allowed in a {kind}"
        return ""
    if isinstance(node, _DATA_MODIFYING):
        return f"a data-modifying WITH ({_statement_word(node)}) is not allowed in a {kind}"
    if isinstance(node, ast.FuncCall):
        return _function_refusal(_names(node.funcname), kind)
    if isinstance(node, ast.A_Expr):
        return _operator_refusal(_names(node.name), kind)
    if isinstance(node, ast.TypeName):
        names = _names(node.names)
        if len(names) > 1 and names[0] != "pg_catalog":
            return f"the type {'.'.join(names)} is not allowed in a {kind}: only built-in types"
        return ""
    if isinstance(node, ast.RangeVar):
        return _relation_refusal(node, kind)
    if isinstance(node, _PLAIN_NODES):
        return ""
    return f"{_syntax_word(node)} is not allowed in a {kind}"


def _function_refusal(names: list[str], kind: str) -> str:
    shown = ".".join(names) or "?"
    if len(names) > 2 or (len(names) == 2 and names[0] != "pg_catalog"):
        return f"{shown} is not allowed in a {kind}: only built-in functions (pg_catalog) may be called"
    name = names[-1] if names else ""
    if name in DENIED_SET_RETURNING:
        return (
            f"{name} is not allowed in a {kind}: it reads the server (files, settings, sessions or other "
            "databases), not the application's data"
        )
    if name not in ALLOWED_FUNCTIONS:
        return f"{name} is not allowed in a {kind}; allowed functions: {_allowed_summary()}"
    return ""


def _operator_refusal(names: list[str], kind: str) -> str:
    if not names:
        return ""
    if len(names) > 1 and names[0] != "pg_catalog":
        return f"the operator {'.'.join(names)} is not allowed in a {kind}: only built-in operators"
    operator = names[-1]
    if operator in ALLOWED_OPERATORS or operator in _RANGE_OPERATORS:
        return ""
    return f"the operator {operator} is not allowed in a {kind}"


def _relation_refusal(node: ast.RangeVar, kind: str) -> str:
    name = ".".join(part for part in (node.catalogname, node.schemaname, node.relname) if part)
    if node.catalogname:
        return f"{name}: a {kind} reads its own database only"
    if (node.schemaname or "") in SYSTEM_SCHEMAS or (not node.schemaname and (node.relname or "").startswith("pg_")):
        return (
            f"{name} is a system catalog: not readable in a {kind} (it can hold password hashes and server "
            "details); query the application's tables"
        )
    return ""


def _syntax_word(node: ast.Node) -> str:
    return f"{type(node).__name__} syntax"
