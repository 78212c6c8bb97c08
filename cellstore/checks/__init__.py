"""Data-quality contracts: `schemas/<table>.yml` checked against tables before they commit.

Engines: DuckDB SQL runs schema drift, not_null, unique, row_count, finite / nonzero_norm /
vector_dim, relationship, row_accounting and free `sql` checks (exact, streaming). Great
Expectations 1.x runs range, accepted_values and match on pandas batches (imported lazily).
"""

from .contract import CheckSpec, SchemaError, TableContract, load_contract, normalize_type
from .evaluate import contracted_tables, run_table_checks
from .results import RESULTS_TABLE, CheckResult, ensure_results_table, record_check_results

__all__ = [
    "RESULTS_TABLE",
    "CheckResult",
    "CheckSpec",
    "SchemaError",
    "TableContract",
    "contracted_tables",
    "ensure_results_table",
    "load_contract",
    "normalize_type",
    "record_check_results",
    "run_table_checks",
]
