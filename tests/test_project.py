"""Dependency parsing of SQL stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellstore.engine.project import _tables_read
from cellstore.errors import CellstoreError


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("select * from a", {"a"}),
        ("with a as (select * from a) select * from a", {"a"}),
        (
            "with x as (select * from a), y as (select * from x join b using (k)) select * from y",
            {"a", "b"},
        ),
        (
            "select * from a where k in (select k from b) union all select * from lake.main.c",
            {"a", "b", "c"},
        ),
        ("select * from a join cellstore_meta.runs r on true", {"a"}),
        ("select * from read_parquet('x.parquet')", set()),
        (
            "select * from (with inner_cte as (select 1) select * from inner_cte) t, inner_cte",
            {"inner_cte"},
        ),
    ],
)
def test_tables_read_excludes_ctes_in_scope(query, expected):
    assert _tables_read(Path("q.sql"), query) == expected


def test_unparsable_sql_names_the_file():
    with pytest.raises(CellstoreError, match="q.sql: SQL does not parse"):
        _tables_read(Path("q.sql"), "select from from")
