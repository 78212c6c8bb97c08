"""Reductions in stages add in a fixed order: the same input gives bit-identical output
however DuckDB's threads split the work (issue 14, fix 7)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import REPO
from profiling_support import no_embeddings

from cellstore.engine.warehouse import offline_connection

RUNS = 6


def treatment_profiles(rng: np.random.Generator) -> pa.Table:
    """10 (source, post-processing) groups × 103 treatments × 32 features: ~200k pairs."""
    rows = []
    for source in ("a", "b"):
        for variant in ("none", "standardize", "robustize", "whitening", "tvn"):
            for i in range(103):
                rows.append(
                    {
                        "feature_source": source,
                        "postprocessing": variant,
                        "compound": f"c{i % 40}",
                        "concentration": float(i),
                        "moa": f"m{i % 12}",
                        "batch": f"Week{i % 4}",
                        "n_wells": 3,
                        "features": rng.normal(size=32).astype(np.float32).tolist(),
                    }
                )
    table = pa.Table.from_pylist(rows)
    return table.set_column(
        table.schema.get_field_index("features"),
        "features",
        table.column("features").cast(pa.list_(pa.float32())),
    )


def cell_features(rng: np.random.Generator, n: int = 300_000) -> pa.Table:
    """More cells than one DuckDB row group (122,880), so aggregation runs on several threads."""
    wells = rng.integers(0, 20, size=n)
    return pa.table(
        {
            "image_id": [f"i{w}" for w in wells],
            "cell_id": [f"cell{k:07d}" for k in range(n)],
            "plate": ["P1"] * n,
            "well": [f"W{w:02d}" for w in wells],
            "Nuclei_Area": (rng.normal(size=n) * 1e3).astype(np.float32),
            "Cells_Intensity": rng.random(size=n).astype(np.float32),
            "Cytoplasm_Texture": (rng.normal(size=n) * 1e-3).astype(np.float32),
        }
    )


def distinct_results(tables: dict[str, pa.Table], sql_file: str) -> int:
    """How many different results `RUNS` runs of the SQL stage give on one input."""
    con = offline_connection()
    con.execute("set threads = 4")
    for name, table in tables.items():
        con.register(f"{name}_arrow", table)
        # native tables have row groups DuckDB's threads split between them
        con.execute(f"create table {name} as select * from {name}_arrow")
    query = (REPO / "sql" / sql_file).read_text()
    digests = {
        con.execute(
            f"select md5(string_agg(md5(t::varchar), '' order by md5(t::varchar))) from ({query}) t"
        ).fetchone()[0]
        for _ in range(RUNS)
    }
    return len(digests)


@pytest.mark.parametrize("seed", [0])
def test_moa_neighbors_average_precision_is_order_stable(seed):
    tables = {"treatment_profiles": treatment_profiles(np.random.default_rng(seed))}
    assert distinct_results(tables, "moa_neighbors.sql") == 1


def test_well_profiles_means_are_order_stable():
    rng = np.random.default_rng(1)
    cells = cell_features(rng)
    wells = sorted(set(cells.column("well").to_pylist()))
    images = pa.table(
        {
            "plate": ["P1"] * len(wells),
            "well": wells,
            "batch": ["Week1"] * len(wells),
            "compound": ["DMSO"] * len(wells),
            "concentration": [0.0] * len(wells),
        }
    )
    external = pa.table(
        {
            "feature_source": pa.array([], pa.string()),
            "plate": pa.array([], pa.string()),
            "well": pa.array([], pa.string()),
            "batch": pa.array([], pa.string()),
            "compound": pa.array([], pa.string()),
            "concentration": pa.array([], pa.float64()),
            "feature_index": pa.array([], pa.int32()),
            "value": pa.array([], pa.float64()),
        }
    )
    moa = pa.table({"compound": ["DMSO"], "concentration": [0.0], "moa": ["DMSO"]})
    tables = {"cell_features": cells, "images": images, "external_profiles": external, "moa": moa}
    tables["embeddings"] = no_embeddings()
    assert distinct_well_profiles(tables) == 1


def distinct_well_profiles(tables: dict[str, pa.Table]) -> int:
    """How many different `well_profiles` the Python stage gives in `RUNS` runs on one input
    read through a 4-thread DuckDB connection (as the runner hands it over)."""
    import hashlib

    from cellstore.profiling.feature_sources import declared_sources
    from cellstore.profiling.well_profiles import build_well_profiles

    con = offline_connection()
    con.execute("set threads = 4")
    for name, table in tables.items():
        con.register(f"{name}_arrow", table)
        con.execute(f"create table {name} as select * from {name}_arrow")
    sources = declared_sources(REPO / "schemas")
    digests = set()
    for _ in range(RUNS):
        relations = {s.table: con.table(s.table) for s in sources}
        built = build_well_profiles(con.table("images"), con.table("moa"), relations, sources)
        profiles = built["well_profiles"].sort_by(
            [("feature_source", "ascending"), ("well", "ascending")]
        )
        digests.add(hashlib.sha256(repr(profiles.to_pylist()).encode()).hexdigest())
    return len(digests)
