"""Metadata CSV reading and value parsing: line endings, quoting, number spellings."""

from __future__ import annotations

import csv
import gzip
import io
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellstore.sources.csvfile import MetadataError, parse_csv_text, read_csv
from cellstore.sources.values import parse_concentration, parse_int

LINE_ENDINGS = ["\r\n", "\r", "\n"]
QUOTING = [csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]

# Field text as it appears in compound names: commas, quotes, slashes, spaces, unicode.
field_text = st.text(
    alphabet=st.sampled_from(list("abcXYZ019 -,/'\"()µ")), min_size=1, max_size=12
).filter(lambda s: s.strip() == s and s.strip())


def write_csv(rows: list[list[str]], line_ending: str, quoting: int, trailing: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_ending, quoting=quoting)
    writer.writerows(rows)
    text = buffer.getvalue()
    return text if trailing else text.removesuffix(line_ending)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.lists(field_text, min_size=3, max_size=3), min_size=1, max_size=8),
    line_ending=st.sampled_from(LINE_ENDINGS),
    quoting=st.sampled_from(QUOTING),
    trailing=st.booleans(),
)
def test_csv_rows_survive_any_line_ending_and_quoting(rows, line_ending, quoting, trailing):
    text = write_csv([["a", "b", "c"], *rows], line_ending, quoting, trailing)
    assert parse_csv_text(text) == [["a", "b", "c"], *rows]


def test_cr_only_file_is_not_one_line(tmp_path: Path):
    path = tmp_path / "moa.csv"
    path.write_bytes(b"compound,concentration,moa\rtaxol,0.3,Microtubule stabilizers\rDMSO,0,DMSO")
    table = read_csv(path, ["compound", "concentration", "moa"])
    assert table.rows == [["taxol", "0.3", "Microtubule stabilizers"], ["DMSO", "0", "DMSO"]]


def test_gzipped_file_with_bom_reads_like_plain(tmp_path: Path):
    text = '\ufeffcompound,moa\r\n"ICI-182,780",Other\r\n'
    plain, packed = tmp_path / "a.csv", tmp_path / "b.csv.gz"
    plain.write_text(text, encoding="utf-8", newline="")
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    a, b = read_csv(plain, ["compound"]), read_csv(packed, ["compound"])
    assert a.header == b.header == ("compound", "moa")
    assert a.rows == b.rows == [["ICI-182,780", "Other"]]


def test_missing_required_column_names_file_and_column(tmp_path: Path):
    path = tmp_path / "BBBC021_v1_moa.csv"
    path.write_text("compound,moa\ntaxol,Microtubule stabilizers\n")
    with pytest.raises(MetadataError) as error:
        read_csv(path, ["compound", "concentration", "moa"])
    assert str(path) in str(error.value)
    assert "'concentration'" in str(error.value)


@pytest.mark.parametrize(
    "content",
    [b"\x1f\x8b\x08garbage", b"\xff\xfe\xfa not utf-8", b""],
    ids=["broken-gzip", "not-utf8", "empty"],
)
def test_unreadable_csv_is_one_clear_error(tmp_path: Path, content: bytes):
    path = tmp_path / ("image.csv.gz" if content.startswith(b"\x1f\x8b") else "image.csv")
    path.write_bytes(content)
    with pytest.raises(MetadataError) as error:
        read_csv(path, ["TableNumber"])
    assert str(path) in str(error.value)


def test_unterminated_quote_is_an_error_naming_the_file(tmp_path: Path):
    path = tmp_path / "image.csv"
    path.write_text('compound,moa\n"taxol,Microtubule stabilizers\n')
    with pytest.raises(MetadataError, match="image.csv"):
        read_csv(path, ["compound"])


@settings(max_examples=300, deadline=None)
@given(mantissa=st.integers(1, 9999), exponent=st.integers(-8, 3))
def test_concentration_spellings_of_one_value_agree(mantissa: int, exponent: int):
    value = Decimal(mantissa).scaleb(exponent)
    plain = f"{value:f}"
    spellings = [
        f"{mantissa}e{exponent}",
        plain,  # 0.0003
        plain + ("000" if "." in plain else ".000"),  # trailing zeros: 0.0003000
        f"{float(value):e}",  # 3.000000e-04
        repr(float(value)),
        f'"{value:f}"',
        f"  {float(value)!r} ",
    ]
    parsed = {parse_concentration(text) for text in spellings}
    assert len(parsed) == 1
    assert parsed.pop() == pytest.approx(float(value), rel=1e-12)


def test_concentration_rounding_noise_meets_the_clean_value():
    assert parse_concentration("0.30000000000000004") == parse_concentration("0.3")
    assert parse_concentration("3e-4") == parse_concentration("0.000300") == 0.0003
    assert parse_concentration("-0") == 0.0


@pytest.mark.parametrize("text", ["", "abc", "nan", "inf", "-1", "1,5"])
def test_bad_concentrations_are_rejected(text: str):
    with pytest.raises(ValueError):
        parse_concentration(text)


def test_integers_accept_float_spelling_but_not_fractions():
    assert parse_int('"4"') == 4
    assert parse_int("4.0") == 4
    with pytest.raises(ValueError):
        parse_int("4.5")
    with pytest.raises(ValueError):
        parse_int("four")
