"""What a stage file imports: `from cellstore.stage import stage, Parts, StageContext`."""

from cellstore.engine.stage import RESERVED_PARAMS, Parts, StageContext, StageSpec, stage

__all__ = ["RESERVED_PARAMS", "Parts", "StageContext", "StageSpec", "stage"]
