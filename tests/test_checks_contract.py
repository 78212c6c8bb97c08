"""Contract files: the YAML format of schemas/README.md, parsed and validated."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from cellstore.checks import SchemaError, load_contract, normalize_type
from cellstore.checks.contract import types_match

REPO = Path(__file__).resolve().parents[1]


def write(folder: Path, table: str, text: str) -> Path:
    path = folder / f"{table}.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_readme_example_is_a_valid_contract(tmp_path):
    readme = (REPO / "schemas" / "README.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)
    contract = load_contract(write(tmp_path, "crops", example))
    names = [c.name for c in contract.checks]
    # The grain's implied checks come first; explicit declarations are not duplicated.
    assert names[0] == "not_null(nucleus_id)"
    assert names.count("not_null(image_id)") == 1
    assert names.count("unique(image_id, nucleus_id)") == 1
    assert "vector_dim(embedding, 128)" in names
    assert "finite(/^(Cells|Cytoplasm|Nuclei)_/)" in names
    assert "relationship(compound, concentration -> moa)" in names
    assert {c.engine for c in contract.checks if c.kind == "range"} == {"gx"}
    assert {c.engine for c in contract.checks if c.kind == "unique"} == {"sql"}
    assert contract.sample_keys == ("image_id", "nucleus_id")


def test_every_contract_in_the_repo_parses():
    paths = sorted((REPO / "schemas").glob("*.yml"))
    for path in paths:
        contract = load_contract(path)
        assert contract.table == path.stem
        assert contract.columns or contract.groups


@pytest.mark.parametrize(
    ("declared", "normal"),
    [
        ("text", "VARCHAR"),
        ("string", "VARCHAR"),
        ("int", "INTEGER"),
        ("real[]", "FLOAT[]"),
        ("timestamptz", "TIMESTAMP WITH TIME ZONE"),
        ("double", "DOUBLE"),
        ("STRUCT(a INT, b TEXT)", "STRUCT(A INTEGER,B VARCHAR)"),
    ],
)
def test_type_aliases_normalize_to_describe_spelling(declared, normal):
    assert normalize_type(declared) == normal


def test_decimal_without_precision_matches_any_precision():
    assert types_match("DECIMAL", "DECIMAL(18,3)")
    assert not types_match("DECIMAL(10,2)", "DECIMAL(18,3)")
    assert not types_match("BIGINT", "INTEGER")


BASE = """\
table: t
columns:
  - {name: id, type: BIGINT, role: key}
  - {name: label, type: VARCHAR, role: label}
  - {name: v, type: "FLOAT[]", role: feature}
"""


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ("checks: [{unique: [nope]}]", "nope not declared"),
        ("checks: [{frobnicate: {}}]", "unknown table check 'frobnicate'"),
        ("checks: [{row_count: {}}]", "give min and/or max"),
        ("checks: [{row_count: {min: -1}}]", "non-negative integer"),
        ("checks: [{relationship: {columns: [id]}}]", "to: <table>"),
        ("checks: [{row_accounting: {rejected: r}}]", "exactly one of input"),
        ("checks: [{sql: {name: x}}]", "query"),
        ("checks: [{unique: [id], severity: fatal}]", "severity must be 'error' or 'warn'"),
        ("grain: [missing]", "missing not declared"),
        ("colums: []", "unknown key(s) colums"),
    ],
)
def test_invalid_table_checks_name_file_and_problem(tmp_path, extra, complaint):
    path = write(tmp_path, "t", BASE + extra + "\n")
    with pytest.raises(SchemaError) as info:
        load_contract(path)
    assert str(path) in str(info.value)
    assert complaint in str(info.value)


@pytest.mark.parametrize(
    ("column", "complaint"),
    [
        ("{name: c, type: VARCHAR, role: meta, checks: [{range: {min: 0}}]}", "range needs"),
        ("{name: c, type: DOUBLE, role: meta, checks: [{range: {}}]}", "give min and/or max"),
        ("{name: c, type: DOUBLE, role: meta, checks: [vector]}", "needs a numeric list column"),
        ("{name: c, type: 'VARCHAR[]', role: meta, checks: [finite]}", "finite needs a numeric"),
        ("{name: c, type: VARCHAR, role: meta, checks: [finite]}", "finite needs"),
        ("{name: c, type: DOUBLE, role: meta, checks: [{range: {min: 0, mostly: 2}}]}", "mostly"),
        ("{name: c, type: DOUBLE, role: meta, checks: [{range: {min: 0, minn: 1}}]}", "no option"),
        ("{name: c, type: VARCHAR, role: boss}", "role must be one of"),
        ("{name: c, role: meta}", "'type' is required"),
        ("{name: c, type: VARCHAR, role: meta, checks: [{match: {regex: '('}}]}", "invalid"),
    ],
)
def test_invalid_column_checks_name_the_column(tmp_path, column, complaint):
    path = write(tmp_path, "t", f"table: t\ncolumns:\n  - {column}\n")
    with pytest.raises(SchemaError, match=re.escape(complaint)):
        load_contract(path)


def test_table_name_must_match_file_name(tmp_path):
    path = write(tmp_path, "other", BASE)
    with pytest.raises(SchemaError, match="does not match the file name other.yml"):
        load_contract(path)


def test_vector_check_expands_to_finite_nonzero_and_dim(tmp_path):
    text = BASE.replace("role: feature}", "role: feature, checks: [{vector: {dim: 4}}]}")
    contract = load_contract(write(tmp_path, "t", text))
    kinds = [(c.kind, c.options.get("dim")) for c in contract.checks]
    assert kinds == [("finite", None), ("nonzero_norm", None), ("vector_dim", 4)]


def test_file_severity_is_the_default_and_checks_override_it(tmp_path):
    text = BASE.replace(
        "role: label}",
        "role: label, checks: [not_null, {accepted_values: {values: [a], severity: error}}]}",
    )
    contract = load_contract(write(tmp_path, "t", "severity: warn\n" + text))
    severities = {c.name: c.severity for c in contract.checks}
    assert severities == {"not_null(label)": "warn", "accepted_values(label)": "error"}
