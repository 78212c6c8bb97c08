"""What a stage file imports: `from cellstore.stage import stage, Parts, TableFiles`."""

from cellstore.engine.stage import (
    RESERVED_PARAMS,
    Parts,
    StageContext,
    StageSpec,
    TableFiles,
    stage,
)

__all__ = ["RESERVED_PARAMS", "Parts", "StageContext", "StageSpec", "TableFiles", "stage"]
