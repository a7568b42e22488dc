"""dataset.where: --where expressions to a pyarrow filter. Pure Python and an in-memory table, milliseconds."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from chronoedit_sim.dataset.where import Condition, WhereError, parse_where, to_filter

ROWS = [
    {"job_id": "a", "scenario": "rain", "keep": True, "error_stage": None, "sample_index": 0, "scores": {"ssim": 0.9}},
    {"job_id": "b", "scenario": "rain", "keep": False, "error_stage": None, "sample_index": 1, "scores": {"ssim": 0.3}},
    {"job_id": "c", "scenario": "fog", "keep": False, "error_stage": "read", "sample_index": 0, "scores": None},
    {"job_id": "d", "scenario": "snow", "keep": True, "error_stage": None, "sample_index": 2, "scores": {"ssim": None}},
]


def matching(*exprs) -> list[str]:
    table = pa.Table.from_pylist(ROWS)
    return pads.dataset(table).to_table(columns=["job_id"], filter=to_filter(parse_where(list(exprs))))[
        "job_id"].to_pylist()


def test_conditions_are_typed_and_anded():
    assert parse_where(["keep=true, scenario = rain", "sample_index>=1"]) == [
        Condition("keep", "=", True), Condition("scenario", "=", "rain"), Condition("sample_index", ">=", 1)]
    assert parse_where(["scores.ssim<0.5", "error=null", 'scenario="rain"']) == [
        Condition("scores.ssim", "<", 0.5), Condition("error", "=", None), Condition("scenario", "=", "rain")]
    assert to_filter([]) is None


def test_filters_select_the_right_rows():
    assert matching() == ["a", "b", "c", "d"]
    assert matching("keep=true") == ["a", "d"]
    assert matching("keep=false", "scenario=rain") == ["b"]
    assert matching("scenario!=rain") == ["c", "d"]
    assert matching("error_stage!=read") == ["a", "b", "d"]  # != keeps missing values
    assert matching("error_stage=null") == ["a", "b", "d"] and matching("error_stage!=null") == ["c"]
    assert matching("scores.ssim>0.5") == ["a"] and matching("sample_index<=1,keep=false") == ["b", "c"]
    assert matching("outcome=kept") == ["a", "d"] and matching("outcome=rejected") == ["b"]
    assert matching("outcome=failed") == ["c"] and matching("outcome!=kept") == ["b", "c"]


@pytest.mark.parametrize("expr, message", [
    ("keep", "expected column=value (or !=, <, <=, >, >=), e.g. keep=true or scenario=rain"),
    ("colour=red", "unknown column 'colour'; one of: "),
    ("keep=yes", "keep is true or false"),
    ("sample_index=two", "sample_index is a whole number, not 'two'"),
    ("scores.ssim>high", "scores.ssim is a number, not 'high'"),
    ("scenario>rain", "> compares numbers; scenario takes = or !="),
    ("outcome=lost", "outcome is one of kept, rejected, failed"),
    ("source_image=x", "unknown column 'source_image'"),
    ("sample_index=99999999999999999999999", "sample_index is a 32-bit whole number; 99999999999999999999999 is out "
                                             "of its range"),
    ("scores.ssim<nan", "nan is never equal, less or greater than anything; a missing value is scores.ssim=null"),
])
def test_bad_expressions_say_what_is_wrong(expr, message):
    with pytest.raises(WhereError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        parse_where([expr])
    assert str(info.value).startswith(f"--where {expr!r}: ")


def test_a_quoted_value_may_hold_commas():
    assert parse_where(['prompt="Add a car, then rain",keep=true', "scenario='a,b'"]) == [
        Condition("prompt", "=", "Add a car, then rain"), Condition("keep", "=", True), Condition("scenario", "=", "a,b")]
    for bad in ('prompt="Add a car, then rain', "keep=true,,scenario=rain"):
        with pytest.raises(WhereError, match="an unclosed quote or an empty condition between commas"):
            parse_where([bad])


def test_ten_thousand_anded_conditions_are_one_exclusion_or_a_clear_error():
    """10,000 ANDed conditions segfaulted in Arrow (exit 139): a column's exclusions are one "not in" test, and
    more other conditions than a scan takes are refused in one line."""
    assert matching(",".join(f"sample_index!={i + 3}" for i in range(10_000)), "keep=true") == ["a", "d"]
    assert matching("sample_index!=1,sample_index!=2") == ["a", "c"]
    with pytest.raises(WhereError, match=r"^--where: 10000 conditions, more than the 1000 one scan can take"):
        matching(",".join(f"sample_index>={-i}" for i in range(10_000)))
