"""`--where` conditions on a dataset's rows, as a pyarrow filter (pushed into the Parquet scan).

A condition is `column OP value`, OP one of = != < <= > >= (the last four on number columns
only). Conditions are ANDed: several `--where`, or several in one separated by commas, e.g.
`keep=true,scenario=rain`. A column is a top-level column holding one text, number or boolean
(scenario, edit_id, keep, error_stage, sample_index, ...), a score as `scores.<name>`, or
`outcome` (kept | rejected | failed, as counted by dataset.stats). `null` is a missing value
(`error=null`); `!=` keeps rows where the column is missing. A quoted value may hold commas
(`prompt="Add a car, then rain"`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pyarrow as pa

from .. import storage
from ..config import SCORES
from ..errors import UserError
from .schema import LATER_COLUMNS, SCHEMA, SCHEMA_VERSION, fill_later, readable_columns

OUTCOMES = ("kept", "rejected", "failed")
# `=` last: the two-character operators must be tried first
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(!=|<=|>=|=|<|>)\s*(.*?)\s*$")
_ORDER_OPS = ("<", "<=", ">", ">=")
# conditions one filter holds (after the merge of a column's exclusions): Arrow crashed at 10,000, held 6,000
MAX_CONDITIONS = 1000
# one condition of a comma-separated list: quoted text may hold commas
_PART = re.compile(r"""(?:[^,"']|"[^"]*"|'[^']*')+""")


class WhereError(UserError):
    """A --where expression that cannot be read, or names a column the dataset does not have."""


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    # a str, bool, int or float of the column's type; None means null
    value: object


def _scalar(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t)


def column_types() -> dict[str, pa.DataType]:
    """Every column a condition may name, with its Arrow type (`outcome` is text)."""
    columns = {f.name: f.type for f in SCHEMA if _scalar(f.type)}
    columns.update({f"scores.{name}": pa.float32() for name in SCORES}, outcome=pa.string())
    return columns


def _value(text: str, column: str, t: pa.DataType, where: str) -> object:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.lower() == "null":
        return None
    if column == "outcome":
        if text not in OUTCOMES:
            raise WhereError(f"--where {where!r}: outcome is one of {', '.join(OUTCOMES)}")
        return text
    if pa.types.is_boolean(t):
        if text.lower() not in ("true", "false"):
            raise WhereError(f"--where {where!r}: {column} is true or false")
        return text.lower() == "true"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        try:
            value = int(text) if pa.types.is_integer(t) else float(text)
        except ValueError:
            kind = "a whole number" if pa.types.is_integer(t) else "a number"
            raise WhereError(f"--where {where!r}: {column} is {kind}, not {text!r}") from None
        if pa.types.is_integer(t) and not -(2 ** (t.bit_width - 1)) <= value < 2 ** (t.bit_width - 1):
            raise WhereError(f"--where {where!r}: {column} is a {t.bit_width}-bit whole number; {text} is out of "
                             "its range")
        if isinstance(value, float) and math.isnan(value):
            raise WhereError(f"--where {where!r}: nan is never equal, less or greater than anything; a missing "
                             f"value is {column}=null")
        return value
    return text


def _split(expr: str) -> list[str]:
    """The comma-separated conditions of one --where, quotes kept whole."""
    parts = _PART.findall(expr)
    if ",".join(parts) != expr:  # an unclosed quote, or an empty condition (a,,b)
        raise WhereError(f"--where {expr!r}: an unclosed quote or an empty condition between commas")
    return parts


def parse_where(exprs: list[str]) -> list[Condition]:
    """Conditions from --where arguments; a WhereError says which part is wrong and what would be right."""
    types, conditions = column_types(), []
    for expr in exprs:
        for part in _split(expr):
            match = _CONDITION.match(part)
            if not match:
                raise WhereError(f"--where {part.strip()!r}: expected column=value (or !=, <, <=, >, >=), "
                                 "e.g. keep=true or scenario=rain")
            column, op, text = match.groups()
            if column not in types:
                raise WhereError(f"--where {part.strip()!r}: unknown column {column!r}; one of: "
                                 f"{', '.join(sorted(types))}")
            value = _value(text, column, types[column], part.strip())
            numeric = pa.types.is_integer(types[column]) or pa.types.is_floating(types[column])
            if op in _ORDER_OPS and (not numeric or value is None):
                raise WhereError(f"--where {part.strip()!r}: {op} compares numbers; {column} takes = or !=")
            conditions.append(Condition(column, op, value))
    return conditions


def _field(column: str):
    import pyarrow.compute as pc

    return pc.field(*column.split(".", 1))


def _outcome(value: str):
    import pyarrow.compute as pc

    failed = pc.field("error_stage").is_valid()
    if value == "failed":
        return failed
    return ~failed & (pc.field("keep") == (value == "kept"))


def _expression(c: Condition):
    if c.column == "outcome":
        matched = _outcome(c.value)
        return matched if c.op == "=" else ~matched
    field = _field(c.column)
    if c.value is None:
        return field.is_null() if c.op == "=" else field.is_valid()
    if c.op == "!=":
        return (field != c.value) | field.is_null()
    return {"=": field == c.value, "<": field < c.value, "<=": field <= c.value, ">": field > c.value,
            ">=": field >= c.value}[c.op]


def to_filter(conditions: list[Condition] | None):
    """The pyarrow dataset filter that ANDs the conditions (None: every row; conditions None: no row). `!=` conditions on one column
    become one "not in" test, so a list of thousands of excluded ids is one expression; what remains is
    limited: Arrow flattens and re-chains ANDs recursively, and thousands of them overflow its stack (a
    segfault at 10,000), however the tree is built."""
    import pyarrow.compute as pc

    if conditions is None:  # decided: no row matches
        return pc.scalar(False)
    excluded: dict[str, list] = {}
    rest = []
    for c in dict.fromkeys(conditions):  # a condition said twice is one
        if c.op == "!=" and c.value is not None and c.column != "outcome":
            excluded.setdefault(c.column, []).append(c.value)
        else:
            rest.append(_expression(c))
    for column, values in excluded.items():
        field = _field(column)
        rest.append(_expression(Condition(column, "!=", values[0])) if len(values) == 1
                    else ~field.isin(values) | field.is_null())
    if len(rest) > MAX_CONDITIONS:
        raise WhereError(f"--where: {len(rest)} conditions, more than the {MAX_CONDITIONS} one scan can take; "
                         "exclusions of one column (column!=a,column!=b,...) count as one")
    expr = None
    for e in rest:
        expr = e if expr is None else expr & e
    return expr


def _decide_later(conditions: list[Condition], present) -> list[Condition] | None:
    """The conditions left once those on a LATER_COLUMN the shards lack are decided on the value all of their
    rows have (schema.LATER_COLUMNS); None when one of those matches no row."""
    left = []
    for c in conditions:
        if c.column in LATER_COLUMNS and c.column not in present:
            # the later columns hold text, which parse_where compares with = and != only
            if (LATER_COLUMNS[c.column] == c.value) != (c.op == "="):
                return None
        else:
            left.append(c)
    return left


def scan(dataset, where: list[str], columns: list[str], batch_rows: int, echo=print, default: list[str] = ()):
    """An iterator over the matching rows of a dataset's readable shards, a list of dicts at a time (the
    filter is pushed into the scan, so memory stays bounded); `default` applies when no --where is given.
    The expression and the shards are checked here, before the caller writes anything."""
    from .sink import damage_notes

    conditions = parse_where(list(where or default))
    shards, notes = damage_notes(storage.path(dataset))
    for note in notes:
        echo(note)
    if not shards:
        raise UserError(f"{dataset}: no complete shards under data/: nothing to read")
    data = storage.parquet_dataset(shards)
    expr = to_filter(_decide_later(conditions, data.schema.names))
    columns = readable_columns(columns, data.schema.names)
    missing = [c for c in columns if not c.startswith("__") and c not in data.schema.names]
    if missing:
        raise UserError(f"{dataset}: the shards have no column(s) {', '.join(missing)}: written by an older "
                        f"chronoedit-sim (dataset schema before {SCHEMA_VERSION}); rerun the scenarios into a new output")
    batches = data.to_batches(columns=columns, filter=expr, batch_size=batch_rows, batch_readahead=1,
                              fragment_readahead=1)
    return (fill_later(batch.to_pylist()) for batch in batches)
